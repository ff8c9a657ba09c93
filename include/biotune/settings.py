"""Where things live, from the environment, with embedded defaults under ``.biotune/``.

Everything is read at call time (not import time) so tests and DAG runs can point a
process at another home by setting environment variables.
"""

from __future__ import annotations

import os
from pathlib import Path

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
