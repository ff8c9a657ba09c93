"""MLflow credentials from an Airflow connection (BIOTUNE_MLFLOW_CONN_ID), as the task listener sets them."""

from __future__ import annotations

import json
import os

import pytest

from biotune_airflow import mlflow_conn

VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


@pytest.fixture
def clean_env(monkeypatch):
    for k in (*VARS, mlflow_conn.CONN_ID_VARIABLE):
        monkeypatch.delenv(k, raising=False)
    yield monkeypatch
    for k in VARS:  # apply_connection writes os.environ directly: undo it
        os.environ.pop(k, None)


def test_connection_sets_uri_and_credentials(clean_env):
    clean_env.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(
        {"conn_type": "http", "host": "mlflow.internal", "port": 5000, "login": "trainer", "password": "s3cret"}))
    clean_env.setenv(mlflow_conn.CONN_ID_VARIABLE, "mlflow_default")
    assert mlflow_conn.apply_connection() == sorted(VARS)
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://mlflow.internal:5000"
    assert (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]) == ("trainer", "s3cret")


def test_environment_wins_and_nothing_is_looked_up_unless_named(clean_env):
    assert mlflow_conn.apply_connection() == []  # no BIOTUNE_MLFLOW_CONN_ID: the embedded default
    clean_env.setenv(mlflow_conn.CONN_ID_VARIABLE, "missing_conn")
    clean_env.setenv("MLFLOW_TRACKING_USERNAME", "from-env")
    assert mlflow_conn.apply_connection() == []
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "from-env"


def test_listener_is_registered_by_the_plugin():
    import importlib
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins"))
    plugin = importlib.import_module("biotune_mlflow").BiotuneMlflowPlugin
    assert mlflow_conn in plugin.listeners and hasattr(mlflow_conn, "on_task_instance_running")
