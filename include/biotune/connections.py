"""Named connections to outside services (a provider's API, an alert webhook): their fields
(``host``, ``login``, ``password``, ``extra``, ``conn_type``, ``port``, ``schema``) by connection id.

The library does not depend on Airflow: the Airflow glue registers a resolver that reads Airflow's
connections (its metadata database, secrets backends and ``AIRFLOW_CONN_<ID>`` variables) when it
is imported, in task processes and on the triggerer. Outside Airflow no resolver is registered and
callers fall back to the environment.
"""

from __future__ import annotations

from typing import Callable

Resolver = Callable[[str], "dict | None"]
_resolver: Resolver | None = None


def set_resolver(resolver: Resolver | None) -> None:
    """Install (or, with None, remove) the function that looks a connection up by id."""
    global _resolver
    _resolver = resolver


def fields(conn_id: str) -> dict | None:
    """The connection's fields from the registered resolver; None when there is none or it does not
    know ``conn_id`` (the caller then reads the environment)."""
    return _resolver(conn_id) if _resolver is not None else None
