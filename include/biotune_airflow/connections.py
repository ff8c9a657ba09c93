"""Airflow's connections for the library (biotune.connections), registered on import of biotune_airflow."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def airflow_connection(conn_id: str) -> dict | None:
    """The connection's fields as Airflow resolves it (secrets backends, ``AIRFLOW_CONN_<ID>``, the
    metadata database); None when Airflow does not know it."""
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:  # AirflowNotFoundException, or no way to reach Airflow from this process
        if type(exc).__name__ != "AirflowNotFoundException":
            log.warning("could not look up Airflow connection %r (%s): falling back to the environment",
                        conn_id, type(exc).__name__)
        return None
    return {"host": conn.host, "login": conn.login, "password": conn.password, "extra": conn.extra_dejson or {},
            "conn_type": conn.conn_type, "port": conn.port, "schema": conn.schema}
