"""The biotune page (plugins/biotune_ui.py): same login as the Airflow UI, models and drift rendered.

The app is served by FastAPI's TestClient; tokens are made and checked by Airflow's own
SimpleAuthManager with a test JWT secret. Models are registered in a temporary MLflow SQLite store
through biotune.registry, as the DAGs do.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from biotune import registry
from biotune.specs import ModelSpec

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "plugins"))


@pytest.fixture
def ui(home, monkeypatch):
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "biotune-unit-test-secret-0123456789abcdef")
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_ISSUER", "biotune-unit-test")
    monkeypatch.setenv("BIOTUNE_MLFLOW_UI_URL", "http://mlflow.example:5000")
    # Token revocation is looked up in Airflow's metadata DB, which a unit test does not migrate.
    from airflow.models.revoked_token import RevokedToken

    monkeypatch.setattr(RevokedToken, "is_revoked", classmethod(lambda cls, jti: False))
    import biotune_ui

    return importlib.reload(biotune_ui)


@pytest.fixture
def client(ui):
    from fastapi.testclient import TestClient

    return TestClient(ui.app)


def _token(username: str = "admin", role: str = "admin") -> str:
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.app import create_auth_manager

    return create_auth_manager().generate_jwt(SimpleAuthManagerUser(username=username, role=role))


def _register(name: str, auc: float, dag_run_id: str, promote: bool) -> registry.Version:
    spec = ModelSpec(name=name, family="mood", task=name.split("-")[1], architecture={"kind": "xgboost"},
                     gate={"metric": "auc", "min_absolute": 0.6, "min_improvement": 0.01},
                     retraining={"dag_id": "mood_population_finetune"})
    x = np.random.default_rng(0).normal(size=(40, 3))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    run_id, uri = registry.log_training_run(
        spec, dag_run_id=dag_run_id, params={"C": 1.0}, metrics={"test_auc": auc},
        log_model=lambda: mlflow.sklearn.log_model(model, name="model", input_example=x[:2]))
    version = registry.register(spec, run_id=run_id, model_uri=uri, dag_run_id=dag_run_id)
    if promote:
        registry.gate_and_promote(spec, version, auc, None)
    return version


def test_plugin_declares_app_and_nav_entry(ui):
    plugin = ui.BiotuneUIPlugin
    assert plugin.fastapi_apps[0]["url_prefix"] == "/biotune" and plugin.fastapi_apps[0]["app"] is ui.app
    view = plugin.external_views[0]
    assert view["destination"] == "nav" and view["url_route"] == "biotune" and view["href"].startswith("biotune")


def test_module_import_is_light():
    probe = ("import sys, json; sys.path[:0] = sys.argv[1:3]; import biotune_ui; "
             "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & "
             "{'mlflow', 'pandas', 'sklearn', 'torch', 'sqlalchemy_utils', 'biotune'})))")
    out = subprocess.run([sys.executable, "-c", probe, str(ROOT / "plugins"), str(ROOT / "include")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_anonymous_is_refused(client):
    r = client.get("/")
    assert r.status_code == 401 and "not authenticated" in r.json()["detail"]
    assert client.get("/api/models").status_code == 401
    browser = client.get("/", headers={"Accept": "text/html"}, follow_redirects=False)
    assert browser.status_code == 302 and "/auth/login" in browser.headers["location"]


def test_bad_or_foreign_token_is_refused(client):
    assert client.get("/", headers={"Authorization": "Bearer not-a-jwt"}).status_code == 401
    import jwt

    forged = jwt.encode({"sub": "admin", "role": "admin", "aud": "apache-airflow"}, "another-secret-0123456789abc",
                        algorithm="HS512")
    assert client.get("/", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    client.cookies.set("_token", forged)
    assert client.get("/").status_code == 401


def test_page_lists_models_with_champion_challenger_and_mlflow_links(client, home):
    v1 = _register("mood-depression-xgb", 0.71, "run-1", promote=True)
    _register("mood-depression-xgb", 0.69, "run-2", promote=False)
    _register("mood-ssri-pat", 0.55, "run-1", promote=False)

    r = client.get("/", headers={"Authorization": f"Bearer {_token()}"})
    assert r.status_code == 200, r.text
    page = r.text
    assert "mood-depression-xgb" in page and "mood-ssri-pat" in page
    assert "test_auc=0.710" in page and "test_auc=0.690" in page
    assert f"http://mlflow.example:5000/#/runs/{v1.run_id}" in page
    assert "http://mlflow.example:5000/#/models/mood-depression-xgb/versions/1" in page
    assert "no drift runs yet" in page and "Signed in as admin" in page

    data = client.get("/api/models", headers={"Authorization": f"Bearer {_token()}"}).json()
    rows = {m["name"]: m for m in data["models"]}
    assert rows["mood-depression-xgb"]["champion"]["version"] == "1"
    assert rows["mood-depression-xgb"]["challenger"]["version"] == "2"
    assert rows["mood-ssri-pat"]["champion"] is None


def test_ui_cookie_is_accepted(client, home):
    _register("mood-depression-xgb", 0.71, "run-1", promote=True)
    client.cookies.set("_token", _token())
    r = client.get("/", headers={"Accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 200 and "mood-depression-xgb" in r.text


def test_latest_drift_and_its_report(client, home, monkeypatch):
    from biotune import monitoring, storage

    report = storage.lake_path("reports", "drift", "mood-depression-xgb", "2026-01-02", "drift_report.html")
    storage.write_text(report, "<html><body>Evidently drift report</body></html>")
    monitoring.upsert_drift({"model": "mood-depression-xgb", "date": "2026-01-01", "max_psi": 0.02})
    monitoring.upsert_drift({"model": "mood-depression-xgb", "date": "2026-01-02", "max_psi": 0.31,
                             "drifted_features": 1, "drifted": ["Sleep_percentage_MN"], "report_uri": report})
    monitoring.dispose()
    _register("mood-depression-xgb", 0.71, "run-1", promote=True)
    auth = {"Authorization": f"Bearer {_token()}"}
    page = client.get("/", headers=auth).text
    assert "max PSI <b class=\"bad\">0.310</b>" in page and "Sleep_percentage_MN" in page
    assert "/biotune/reports/mood-depression-xgb/2026-01-02" in page
    assert "no drift runs yet" not in page
    r = client.get("/reports/mood-depression-xgb/2026-01-02", headers=auth)
    assert r.status_code == 200 and "Evidently drift report" in r.text
    assert client.get("/reports/mood-depression-xgb/2026-01-02").status_code == 401
    assert client.get("/reports/mood-depression-xgb/1999-01-01", headers=auth).status_code == 404


def test_registry_down_is_shown_not_a_500(client, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    r = client.get("/", headers={"Authorization": f"Bearer {_token()}"})
    assert r.status_code == 200 and "MLflow registry unavailable" in r.text and "does not answer" in r.text
