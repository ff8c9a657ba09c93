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


def _log_sklearn(model):
    # pip requirements given: MLflow would otherwise infer them by re-importing the model (seconds each)
    return mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])


def _register(name: str, auc: float, dag_run_id: str, promote: bool) -> registry.Version:
    spec = ModelSpec(name=name, family="mood", task=name.split("-")[1], architecture={"kind": "xgboost"},
                     gate={"metric": "auc", "min_absolute": 0.6, "min_improvement": 0.01},
                     retraining={"dag_id": "mood_population_finetune"})
    x = np.random.default_rng(0).normal(size=(40, 3))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    run_id, uri = registry.log_training_run(
        spec, dag_run_id=dag_run_id, params={"C": 1.0}, metrics={"test_auc": auc},
        log_model=lambda: _log_sklearn(model))
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


def test_page_charts_decisions_and_missing_days_from_the_store(client, ui, home, monkeypatch):
    """History written through the store API as the monitoring DAG does; the page draws it. (The
    registry is left out: MLflow's store migrations cost seconds and the charts do not read it.)"""
    from biotune import monitoring

    model = "mood-depression-xgb"
    for day, psi in (("2026-01-01", 0.05), ("2026-01-02", 0.31), ("2026-01-04", 0.42)):
        monitoring.upsert_drift({"model": model, "date": day, "max_psi": psi, "mean_confidence": 0.8,
                                 "labeled_n": 60, "error_rate": 0.3, "reference_error_rate": 0.2})
    monitoring.upsert_drift({"model": model, "date": "2026-01-03", "status": "missing"})
    monitoring.record_decision(model, "2026-01-04", monitoring.Decision(True, ["yes: drift on 3 batches",
                                                                             "61 new labels on record"]))
    # a later 'no' for the same date (already in flight) must not hide the 'yes' that queued the retrain
    monitoring.record_decision(model, "2026-01-04", monitoring.Decision(False, ["a retrain is already in flight"]))
    monitoring.dispose()
    monkeypatch.setattr(ui, "registry_rows", lambda: ([], None))

    page = client.get("/", headers={"Authorization": f"Bearer {_token()}"}).text
    section = page[page.index(f'<section class="model-charts" data-model="{model}"'):]
    section = section[:section.index("</section>")]
    assert section.count("<svg") == 3  # PSI, confidence, error rate (labels exist)
    assert 'class="level threshold" data-value="0.2"' in section and 'class="level critical" data-value="0.25"' in section
    assert section.count('class="decision fired"') == 3  # the one fired decision, on each chart
    assert "2026-01-04: retrain queued: yes: drift on 3 batches; 61 new labels on record" in section
    assert 'class="gap gap-missing" data-date="2026-01-03"' in section
    assert 'data-date="2026-01-03" data-value' not in section  # the missing day is not a point
    assert "latest decision 2026-01-04: <b>retrain queued</b>" in section


def test_promoted_challenger_counts_warning_families_and_people(client, home):
    """One MLflow store (its migrations cost seconds): a population model whose challenger alias was
    left on the champion, with a small-test-set warning, and two people's models of a per-person spec."""
    spec = ModelSpec(name="mood-depression-xgb", family="mood", task="depression", architecture={"kind": "xgboost"})
    x = np.random.default_rng(0).normal(size=(40, 3))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    gap = "validation auc 0.960 vs test 0.735 on only 47 test rows: the test estimate is uncertain"
    run_id, uri = registry.log_training_run(
        spec, dag_run_id="run-1", params={}, metrics={"test_auc": 0.735, "val_auc": 0.96, "test_n": 47.0},
        warnings=[gap], log_model=lambda: _log_sklearn(model))
    version = registry.register(spec, run_id=run_id, model_uri=uri, dag_run_id="run-1")
    # a registry written before promotion cleared the challenger alias: both aliases on v1
    registry.configure().set_registered_model_alias(spec.name, registry.CHAMPION, version.version)

    personal = ModelSpec(name="mood_personal-depressive-personal", family="mood_personal", task="depressive",
                     scope="person", architecture={"kind": "xgboost"},
                     gate={"metric": "auc", "min_absolute": 0.6, "min_improvement": 0.02})
    for person, auc, promote in (("p-amber", 0.8, True), ("p-birch", 0.55, False)):
        name = registry.registered_name(personal, person)
        run_id, uri = registry.log_training_run(
            personal, dag_run_id="cal-1", params={}, metrics={"test_auc": auc}, registered=name,
            log_model=lambda: _log_sklearn(model))
        v = registry.register(personal, run_id=run_id, model_uri=uri, dag_run_id="cal-1", name=name)
        if promote:
            registry.gate_and_promote(personal, v, auc, None, name=name)
        else:
            registry.reject_version(name, v.version, "not better than the population")

    page = client.get("/", headers={"Authorization": f"Bearer {_token()}"}).text
    row = page[page.index('<tr data-model="mood-depression-xgb">'):]
    row = row[:row.index("</tr>")]
    assert "test_n=47," in row or "test_n=47<" in row
    assert "47.000" not in row
    assert "promoted: v1 is the champion" in row and row.count(">v1</a>") == 1
    assert f'<div class="warn">&#9888; {gap}</div>' in row

    families = page[page.index('<section id="families">'):]
    for family in ("activity", "eeg", "glucose", "mood", "mood_personal"):
        assert f'data-family="{family}"' in families
    assert '<li data-spec="mood-depression-xgb"><b>mood-depression-xgb</b>: <span class="ok">champion v1' in families
    assert '<li data-spec="mood-ssri-pat"><b>mood-ssri-pat</b>: <span class="muted">not trained yet' in families
    person_spec = families[families.index('<li data-spec="mood_personal-depressive-personal">'):]
    assert "2 people" in person_spec
    assert 'data-person="p-amber"' in person_spec and "p-amber: <span class=\"ok\">champion v1" in person_spec
    assert "p-birch: population model serves (fallback)" in person_spec
    # one person's model is not a row of the main table
    table = page[page.index('<table id="models">'):page.index("</table>")]
    assert "p-amber" not in table and "mood-depression-xgb" in table
