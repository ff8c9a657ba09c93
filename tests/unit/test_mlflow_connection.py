"""MLflow's address and login from a connection (biotune.connections; in Airflow, Airflow's connections)."""

from __future__ import annotations

import os

import pytest

from biotune import connections, settings

VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
CONN = {"conn_type": "http", "host": "mlflow.internal", "port": 5000, "login": "trainer", "password": "s3cret",
        "schema": None, "extra": {}}


@pytest.fixture
def resolver(monkeypatch):
    saved = {k: os.environ.pop(k) for k in VARS if k in os.environ}
    monkeypatch.delenv("BIOTUNE_MLFLOW_CONN_ID", raising=False)
    monkeypatch.setattr(settings, "_connection_applied", False)
    asked: list[str] = []

    def lookup(conn_id):
        asked.append(conn_id)
        return {"mlflow_default": CONN, "mlflow_prod": {**CONN, "host": "https://mlflow.example.org"}}.get(conn_id)

    previous = connections._resolver  # biotune_airflow registers Airflow's when imported: put it back
    connections.set_resolver(lookup)
    yield asked
    connections.set_resolver(previous)
    for k in VARS:  # apply_mlflow_connection writes os.environ itself
        os.environ.pop(k, None)
    os.environ.update(saved)


def test_connection_sets_uri_and_login_once(resolver):
    settings.apply_mlflow_connection()
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://mlflow.internal:5000"
    assert (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]) == ("trainer", "s3cret")
    settings.apply_mlflow_connection()
    assert resolver == ["mlflow_default"]  # looked up once per process


def test_named_connection_and_the_environment_wins(resolver, monkeypatch):
    monkeypatch.setenv("BIOTUNE_MLFLOW_CONN_ID", "mlflow_prod")
    os.environ["MLFLOW_TRACKING_URI"] = "http://127.0.0.1:5000"
    settings.apply_mlflow_connection()
    assert resolver == ["mlflow_prod"]
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"  # set in the environment: kept
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "trainer"


def test_credentials_in_the_environment_skip_the_lookup(resolver, monkeypatch):
    os.environ["MLFLOW_TRACKING_USERNAME"] = "from-env"
    settings.apply_mlflow_connection()
    assert resolver == [] and os.environ["MLFLOW_TRACKING_USERNAME"] == "from-env"


def test_no_resolver_outside_airflow_looks_nothing_up(resolver):
    connections.set_resolver(None)
    settings.apply_mlflow_connection()
    assert not any(k in os.environ for k in VARS)
