"""Where things live, from the environment, with embedded defaults under ``.biotune/``.

Everything is read at call time (not import time) so tests and DAG runs can point a
process at another home by setting environment variables.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]


def home() -> Path:
    """BIOTUNE_HOME: Airflow home, MLflow store and (by default) the lake live here."""
    return Path(os.environ.get("BIOTUNE_HOME", REPO_ROOT / ".biotune")).resolve()


def lake() -> str:
    """BIOTUNE_LAKE: a local directory or an ``s3://bucket/prefix`` URL."""
    value = os.environ.get("BIOTUNE_LAKE", "")
    if value:
        return value.rstrip("/") if value.startswith("s3://") else str(Path(value).resolve())
    return str(home() / "lake")


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, defaulting to a SQLite store under the home."""
    value = os.environ.get("MLFLOW_TRACKING_URI")
    if value:
        return value
    return f"sqlite:///{home() / 'mlflow' / 'mlflow.db'}"


MLFLOW_CONN_ID = "mlflow_default"
_connection_applied = False


def mlflow_conn_id() -> str:
    return os.environ.get("BIOTUNE_MLFLOW_CONN_ID") or MLFLOW_CONN_ID


def apply_mlflow_connection() -> None:
    """In Airflow, MLflow's address and login may live in a connection (id ``BIOTUNE_MLFLOW_CONN_ID``,
    default ``mlflow_default``; type http: host, port, login, password). Copy it, once per process,
    into the MLFLOW_TRACKING_* variables the MLflow client reads; what the environment sets wins.
    Outside Airflow no connection resolver is registered (biotune.connections): nothing is looked up."""
    global _connection_applied
    if _connection_applied:
        return
    _connection_applied = True
    if os.environ.get("MLFLOW_TRACKING_USERNAME") or os.environ.get("MLFLOW_TRACKING_TOKEN"):
        return
    from biotune import connections

    conn_id = mlflow_conn_id()
    conn = connections.fields(conn_id)
    if not conn:
        return
    host = str(conn.get("host") or "").rstrip("/")
    if host and "://" not in host:
        host = f"{'https' if str(conn.get('conn_type') or '').lower() == 'https' else 'http'}://{host}"
    if host and conn.get("port"):
        host = f"{host}:{conn['port']}"
    if host and conn.get("schema"):
        host = f"{host}/{str(conn['schema']).strip('/')}"
    values = {"MLFLOW_TRACKING_URI": host, "MLFLOW_TRACKING_USERNAME": conn.get("login"),
              "MLFLOW_TRACKING_PASSWORD": conn.get("password")}
    applied = [k for k, v in values.items() if v and os.environ.setdefault(k, str(v)) == str(v)]
    log.info("MLflow: %s from the connection %r", ", ".join(applied) or "nothing", conn_id)


def artifact_root() -> str:
    """Where new MLflow experiments keep artifacts (embedded: a local folder)."""
    value = os.environ.get("BIOTUNE_MLFLOW_ARTIFACTS")
    if value:
        return value
    return (home() / "mlflow" / "artifacts").as_uri()


def specs_dir() -> Path:
    return Path(os.environ.get("BIOTUNE_SPECS", REPO_ROOT / "models"))


def expectations_dir() -> Path:
    return Path(os.environ.get("BIOTUNE_EXPECTATIONS", REPO_ROOT / "expectations"))


def pretrained_dir() -> Path:
    return Path(os.environ.get("BIOTUNE_PRETRAINED", REPO_ROOT / "models" / "pretrained"))


def drift_db_uri() -> str:
    """SQLAlchemy URI of the drift history table (SQLite by default)."""
    return os.environ.get("BIOTUNE_DRIFT_DB", f"sqlite:///{home() / 'drift.db'}")
