"""The shared machinery without a family run: task-type evaluation, the gate's tie rule and
minimums, metric formatting, per-person names, the history store's latest rows, the report guard."""

from __future__ import annotations

import numpy as np
import pytest

from biotune import evaluation, metrics, policy
from biotune.specs import Gate, ModelSpec


def test_multiclass_metrics_and_confidence(tmp_path):
    classes = ["a", "b", "c"]
    y = np.array([0, 1, 2, 2, 1, 0])
    proba = np.array([[.8, .1, .1], [.2, .7, .1], [.1, .2, .7], [.5, .1, .4], [.1, .8, .1], [.3, .3, .4]])
    m = evaluation.evaluate("multiclass", y, proba, classes=classes)
    assert m["accuracy"] == pytest.approx(4 / 6) and m["error_rate"] == pytest.approx(2 / 6)
    assert m["recall_c"] == pytest.approx(0.5) and m["recall_b"] == 1.0 and 0 < m["macro_f1"] < 1
    np.testing.assert_allclose(evaluation.confidence("multiclass", proba), proba.max(axis=1))
    assert list(evaluation.predicted_labels("multiclass", proba)) == [0, 1, 2, 0, 1, 2]
    plots = evaluation.plots("multiclass", y, proba, tmp_path, "t", classes=classes)
    assert (tmp_path / "confusion.png").exists() and set(plots) == {"confusion"}


def test_binary_and_generation_evaluation():
    m = evaluation.evaluate("binary", [0, 1, 1, 0], [.2, .9, .6, .7], threshold=0.65)
    assert m["accuracy"] == 0.5 and m["auc"] == 0.75 and m["threshold"] == 0.65
    gen = evaluation.evaluate("generation", ["x"], ["x"], generation_metrics=lambda r, o: {"bleu": 100.0})
    assert gen == {"bleu": 100.0, "n": 1.0}
    assert evaluation.confidence("generation", ["x"]) is None
    with pytest.raises(ValueError):
        evaluation.evaluate("generation", ["x"], ["x"])


@pytest.mark.parametrize("challenger,champion,need,yes", [
    (0.9163, 0.9163, 0.0, False),   # a tie keeps the champion
    (0.9164, 0.9163, 0.0, True),
    (0.92, 0.91, 0.01, True),
    (0.915, 0.91, 0.01, False),
])
def test_gate_beats_means_strictly_better(challenger, champion, need, yes):
    decision = policy.gate(Gate(min_absolute=0.5, min_improvement=need), challenger, champion)
    assert decision.yes is yes, decision.reasons


def test_gate_minimums_on_other_metrics():
    g = Gate(metric="rouge_l", min_absolute=0.1, minimums={"format_rate": 0.95, "safety_rate": 1.0})
    assert policy.gate(g, 0.3, None, others={"format_rate": 0.97, "safety_rate": 1.0}).yes
    no = policy.gate(g, 0.3, None, others={"format_rate": 0.90, "safety_rate": 1.0})
    assert not no.yes and any("format_rate 0.9000 misses" in r for r in no.reasons)
    assert not policy.gate(g, 0.3, None, others={"format_rate": 0.99}).yes  # safety not measured


def test_metric_formatting():
    assert metrics.format_value("test_n", 47.0) == "47" and metrics.format_value("test_auc", 0.91634) == "0.916"
    assert metrics.format_value("test_auc", float("nan")) == "n/a"


def test_per_person_names():
    from biotune import registry

    spec = ModelSpec(name="mood-depression-xgb", family="mood", task="depression", scope="person",
                     architecture={"kind": "xgboost"})
    assert registry.registered_name(spec, "p7f3") == "mood-depression-xgb--p7f3"
    assert registry.spec_name_of("mood-depression-xgb--p7f3") == ("mood-depression-xgb", "p7f3")
    with pytest.raises(Exception, match="name the person"):
        registry.registered_name(spec)


def test_latest_measured_row_is_not_hidden_by_a_missing_day(home):
    from biotune import monitoring
    from biotune.monitoring import store

    monitoring.upsert_drift({"model": "m-a-x", "date": "2026-10-01", "max_psi": 0.4, "drifted_features": 5})
    monitoring.upsert_drift({"model": "m-a-x", "date": "2026-10-02", "status": "missing"})
    assert store.latest()["m-a-x"]["date"] == "2026-10-01"
    monitoring.dispose()


def test_only_lake_reports_are_within_the_reports_prefix(tmp_path):
    from biotune import storage

    root = tmp_path / "lake" / "reports"
    (root / "drift").mkdir(parents=True)
    (root / "drift" / "r.html").write_text("x")
    (tmp_path / "lake" / "secret").write_text("s")
    (root / "link").symlink_to(tmp_path / "lake" / "secret")
    assert storage.is_within(str(root / "drift" / "r.html"), str(root))
    assert not storage.is_within("/etc/passwd", str(root))
    assert not storage.is_within(str(root / ".." / "secret"), str(root))
    assert not storage.is_within(str(root / "link"), str(root))
    assert storage.is_within("s3://b/lake/reports/d/r.html", "s3://b/lake/reports")
    assert not storage.is_within("s3://b/lake/reports/../x", "s3://b/lake/reports")


def test_a_batch_too_small_to_judge_is_stepped_over_not_drift():
    import datetime as dt

    from biotune.policy import RetrainFacts, drift_streak, retraining_decision

    spec = ModelSpec(name="mood-depression-xgb", family="mood", task="depression", architecture={"kind": "xgboost"},
                     retraining={"consecutive_batches": 2, "min_new_labels": 0, "min_days_since_last": 0})
    day = dt.date(2026, 10, 1)
    rows = [{"model": spec.name, "model_version": "1", "date": (day + dt.timedelta(days=i)).isoformat(),
             "status": status, "n_rows": n, "drifted_features": d, "mean_confidence": 0.5}
            for i, (status, n, d) in enumerate([("ok", 200, 5), ("small", 1, 0), ("ok", 200, 5)])]
    streak, notes = drift_streak(rows, spec, day + dt.timedelta(days=2))
    assert len(streak) == 2 and any("too small" in n for n in notes)
    assert spec.drift.min_rows == 30
    assert retraining_decision(rows, spec, RetrainFacts(as_of=day + dt.timedelta(days=2))).yes


@pytest.mark.parametrize("uri,kind,text", [
    ("ftp://x/y", "RegistryConfigError", "scheme 'ftp'"),
    ("postgresql://postgres@127.0.0.1:1/none", "RegistryConfigError", "needs the Python module"),
    ("sqlite:////proc/forbidden/mlflow.db", "RegistryError", "cannot open the MLflow store"),
])
def test_unusable_mlflow_stores_are_typed_errors(home, monkeypatch, uri, kind, text):
    from biotune import registry

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(registry.RegistryError, match=text) as err:
        registry.configure()
    assert type(err.value).__name__ == kind and "MLFLOW_TRACKING_URI" in str(err.value)
    assert err.value.bad_input is (kind == "RegistryConfigError")


def test_the_report_route_serves_only_lake_reports(home):
    """A drift row pointing outside the lake's reports/ (a shared table someone can write) is a 404."""
    import sys

    from fastapi.testclient import TestClient

    from biotune import monitoring, storage

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2] / "plugins"))
    import biotune_ui

    inside = storage.lake_path("reports", "drift", "m-a-x", "2026-01-02", "drift_report.html")
    storage.write_text(inside, "<html>ok report</html>")
    monitoring.upsert_drift({"model": "m-a-x", "date": "2026-01-02", "report_uri": inside})
    monitoring.upsert_drift({"model": "m-a-x", "date": "2026-01-03", "report_uri": "/etc/passwd"})
    monitoring.upsert_drift({"model": "m-a-x", "date": "2026-01-04",
                             "report_uri": storage.lake_path("reports", "missing.html")})
    app = biotune_ui.create_app()
    app.dependency_overrides[biotune_ui.current_user] = lambda: "tester"
    client = TestClient(app)
    assert client.get("/reports/m-a-x/2026-01-02").status_code == 200
    assert client.get("/reports/m-a-x/2026-01-03").status_code == 404
    assert client.get("/reports/m-a-x/2026-01-04").status_code == 404
    assert client.get("/reports/m-a-x/not-a-date").status_code == 404
    monitoring.dispose()
