"""MLflow credentials for a task from an Airflow connection.

The MLflow client reads MLFLOW_TRACKING_URI, MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD by
itself; `make up` and the stack put them in the components' environment. A deployment that keeps
secrets in Airflow instead names a connection in ``BIOTUNE_MLFLOW_CONN_ID`` (e.g. ``mlflow_default``,
type http: host, port, login, password); the listener below copies it into the task's environment
before the task runs. Credentials already in the environment win, and nothing is looked up when
``BIOTUNE_MLFLOW_CONN_ID`` is unset (the embedded default has no server to log in to).

Registered by plugins/biotune_mlflow.py; Airflow calls it in the task process.
"""

from __future__ import annotations

import logging
import os

from airflow.listeners import hookimpl

log = logging.getLogger(__name__)

CONN_ID_VARIABLE = "BIOTUNE_MLFLOW_CONN_ID"


def tracking_env(conn) -> dict[str, str]:
    """MLFLOW_TRACKING_* from a connection: host (with or without a scheme), port, schema as a path,
    login, password."""
    host = (conn.host or "").rstrip("/")
    if host and "://" not in host:
        scheme = "https" if (conn.conn_type or "").lower() == "https" else "http"
        host = f"{scheme}://{host}"
    if host and conn.port:
        host = f"{host}:{conn.port}"
    if host and conn.schema:
        host = f"{host}/{conn.schema.strip('/')}"
    env = {"MLFLOW_TRACKING_URI": host} if host else {}
    if conn.login:
        env["MLFLOW_TRACKING_USERNAME"] = conn.login
    if conn.password:
        env["MLFLOW_TRACKING_PASSWORD"] = conn.password
    return env


def apply_connection(conn_id: str | None = None) -> list[str]:
    """Set this process's MLFLOW_TRACKING_* from the connection ``conn_id`` (default: the one named by
    BIOTUNE_MLFLOW_CONN_ID). Returns the variables set; none when no connection is named or the
    environment already carries credentials."""
    conn_id = conn_id or os.environ.get(CONN_ID_VARIABLE)
    if not conn_id or os.environ.get("MLFLOW_TRACKING_USERNAME"):
        return []
    from airflow.sdk import BaseHook

    env = tracking_env(BaseHook.get_connection(conn_id))
    os.environ.update(env)
    from biotune import registry

    registry._READY_STORES.clear()  # a store probed before (anonymously) is probed again
    log.info("MLflow: %s from Airflow connection %r", ", ".join(sorted(env)), conn_id)
    return sorted(env)


@hookimpl
def on_task_instance_running(previous_state, task_instance):
    # Errors here are logged by Airflow and the task runs on; without credentials its first registry
    # call then fails with a RegistryConfigError naming these settings.
    apply_connection()
