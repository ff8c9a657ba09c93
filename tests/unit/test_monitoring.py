"""Monitoring services: drift history upsert (SQLite, PostgreSQL), the retraining rule, batch
reading and validation, alerts. No Airflow run here (the DAGs are in tests/integration)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from biotune import monitoring
from biotune.errors import DataValidationError, DriftError, MissingInputError
from biotune.monitoring import RetrainFacts, retraining_decision
from biotune.specs import ModelSpec

ROOT = Path(__file__).resolve().parents[2]
D0 = dt.date(2026, 10, 1)


def _spec(**retraining) -> ModelSpec:
    r = {"min_drifted_features": 3, "consecutive_batches": 3, "min_confidence": 0.6, "min_new_labels": 200,
         "min_days_since_last": 14, "dag_id": "mood_population_finetune", **retraining}
    return ModelSpec(name="mood-depression-xgb", family="mood", task="depression",
                     architecture={"kind": "xgboost"}, retraining=r)


def _row(day: int, drifted: int = 0, status: str = "ok", conf: float = 0.7, labeled: int = 100,
         error: float | None = 0.5, version: str = "1", labels: dict | None = None) -> dict:
    return {"model": "mood-depression-xgb", "model_version": version, "date": (D0 + dt.timedelta(days=day)).isoformat(),
            "status": status, "n_rows": 200 if status == "ok" else 0, "drifted_features": drifted,
            "mean_confidence": conf if status == "ok" else None, "labeled_n": labeled if status == "ok" else 0,
            "error_rate": error if status == "ok" else None, "reference_error_rate": 0.1,
            "label_counts": labels if labels is not None else {"0": labeled // 2, "1": labeled - labeled // 2}}


def _facts(day: int, **kw) -> RetrainFacts:
    return RetrainFacts(as_of=D0 + dt.timedelta(days=day), test_error_rate=0.1, **kw)


def _reason(decision, prefix: str) -> str:
    found = [r for r in decision.reasons if r.startswith(prefix)]
    assert found, decision.reasons
    return found[0]


# ----------------------------------------------------------------------------------- history


def _check_upsert(uri: str) -> None:
    first = monitoring.upsert_drift({"model": "m-a-x", "date": "2026-10-01", "status": "ok", "n_rows": 10,
                                     "max_psi": 0.5, "drifted_features": 2, "drifted": ["a", "b"],
                                     "psi": {"a": 0.5, "b": float("nan")}, "mean_confidence": 0.7}, uri)
    assert first["psi"] == {"a": 0.5, "b": None}
    monitoring.upsert_drift({"model": "m-a-x", "date": dt.date(2026, 10, 2), "status": "missing"}, uri)
    again = monitoring.upsert_drift({"model": "m-a-x", "date": "2026-10-01T00:00:00+00:00", "status": "ok",
                                     "n_rows": 12, "max_psi": 0.1, "drifted_features": 0, "psi": {"a": 0.1}}, uri)
    assert again["n_rows"] == 12
    rows = monitoring.history("m-a-x", uri=uri)
    assert [(r["date"], r["status"]) for r in rows] == [("2026-10-01", "ok"), ("2026-10-02", "missing")]
    assert rows[0]["n_rows"] == 12 and rows[0]["max_psi"] == pytest.approx(0.1)
    assert rows[0]["psi"] == {"a": 0.1} and rows[0]["drifted"] == []  # replaced, not merged
    assert monitoring.history("m-a-x", since="2026-10-02", uri=uri)[0]["date"] == "2026-10-02"
    # concurrent re-runs of one date still leave one row
    threads = [threading.Thread(target=monitoring.upsert_drift,
                                args=({"model": "m-a-x", "date": "2026-10-03", "status": "ok", "n_rows": i}, uri))
               for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len([r for r in monitoring.history("m-a-x", uri=uri) if r["date"] == "2026-10-03"]) == 1
    with pytest.raises(DriftError, match="status"):
        monitoring.upsert_drift({"model": "m-a-x", "date": "2026-10-04", "status": "drifted"}, uri)
    decision = monitoring.Decision(False, ["not: x"])
    monitoring.record_decision("m-a-x", "2026-10-03", decision, facts={"in_flight": True}, uri=uri)
    monitoring.record_decision("m-a-x", "2026-10-03", monitoring.Decision(True, ["yes: y"]), uri=uri)
    logged = monitoring.decisions("m-a-x", uri=uri)
    assert [d["decision"] for d in logged] == ["no", "yes"] and logged[0]["reasons"] == ["not: x"]


def test_history_upsert_sqlite(home):
    uri = f"sqlite:///{home / 'drift.db'}"
    _check_upsert(uri)
    monitoring.dispose(uri)


@pytest.mark.services
def test_history_upsert_postgresql():
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=5)
    except psycopg2.OperationalError as exc:
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432 ({exc})")
    admin.autocommit = True
    name = f"biotune_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    uri = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    try:
        _check_upsert(uri)
    finally:
        monitoring.dispose(uri)
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_history_uses_settings_uri(home, monkeypatch):
    monkeypatch.setenv("BIOTUNE_DRIFT_DB", f"sqlite:///{home / 'other.db'}")
    monitoring.upsert_drift({"model": "m-a-x", "date": "2026-10-01", "status": "missing"})
    assert (home / "other.db").exists()
    monitoring.dispose()


def test_timeline_windows_each_model_and_shows_the_decision_that_fired(tmp_path):
    from biotune.monitoring import store

    uri = f"sqlite:///{tmp_path / 'drift.db'}"
    assert store.timeline(uri=uri) == {}
    for day in (0, 50, 95, 100):
        monitoring.upsert_drift(_row(day), uri)
    monitoring.record_decision("m-a-x", D0 + dt.timedelta(days=100), monitoring.Decision(True, ["yes: drift"]), uri=uri)
    monitoring.record_decision("m-a-x", D0 + dt.timedelta(days=100), monitoring.Decision(False, ["in flight"]), uri=uri)
    monitoring.record_decision("m-a-x", D0, monitoring.Decision(False, ["too old for the window"]), uri=uri)
    got = store.timeline(days=90, uri=uri)
    monitoring.dispose(uri)
    assert set(got) == {"mood-depression-xgb", "m-a-x"}
    assert [r["date"] for r in got["mood-depression-xgb"]["rows"]] == [
        (D0 + dt.timedelta(days=d)).isoformat() for d in (50, 95, 100)]
    assert got["m-a-x"]["rows"] == []
    (only,) = got["m-a-x"]["decisions"].values()
    assert only["decision"] == "yes" and only["reasons"] == ["yes: drift"]


# ----------------------------------------------------------------------------- retraining rule


def test_yes_on_the_third_consecutive_drifted_batch_not_before():
    spec = _spec(min_new_labels=100)
    rows = [_row(i, drifted=0 if i < 4 else 8, error=0.1 if i < 4 else 0.5) for i in range(10)]
    assert not retraining_decision([_row(i, 8, error=0.1) for i in range(3)], spec, _facts(2)).yes
    verdicts = {i: retraining_decision(rows, spec, _facts(i)).yes for i in range(10)}
    assert [i for i, yes in verdicts.items() if yes][0] == 6  # drift from day 4: 4, 5, 6
    d = retraining_decision(rows, spec, _facts(6))
    assert d.yes and all(r.startswith("yes:") for r in d.reasons)
    assert "2026-10-05, 2026-10-06, 2026-10-07" in _reason(d, "yes: 3 consecutive")
    no = retraining_decision(rows, spec, _facts(5))
    assert "drift in 2 consecutive batch(es), needs 3" in _reason(no, "not: drift")
    assert "2026-10-04: 0 features" in _reason(no, "not: drift")


def test_missing_day_is_stepped_over_but_unmeasured_or_error_day_breaks_the_streak():
    spec = _spec(min_new_labels=0)
    rows = [_row(0, 8), _row(1, status="missing"), _row(2, 8), _row(3, 8)]
    d = retraining_decision(rows, spec, _facts(3))
    assert d.yes, d.reasons
    assert "stepped over" not in _reason(d, "yes: 3 consecutive")  # the streak filled without a note
    streak, notes = monitoring.drift_streak(rows, spec, D0 + dt.timedelta(days=3))
    assert len(streak) == 3 and any("2026-10-02" in n for n in notes)
    gap = [_row(0, 8), _row(2, 8), _row(3, 8)]  # 2026-10-02 never measured
    d = retraining_decision(gap, spec, _facts(3))
    assert not d.yes and "no drift measurement on 2026-10-02" in _reason(d, "not: drift")
    err = [_row(0, 8), _row(1, status="error"), _row(2, 8), _row(3, 8)]
    assert "could not be measured on 2026-10-02" in _reason(retraining_decision(err, spec, _facts(3)), "not: drift")
    unmeasured_today = [_row(0, 8), _row(1, 8), _row(2, 8)]
    assert "no drift measurement on 2026-10-04" in _reason(
        retraining_decision(unmeasured_today, spec, _facts(3)), "not: drift")


def test_a_new_model_version_restarts_the_streak():
    rows = [_row(0, 8, version="1"), _row(1, 8, version="2"), _row(2, 8, version="2")]
    d = retraining_decision(rows, _spec(min_new_labels=0), _facts(2))
    assert not d.yes and "version 1, not the current 2" in _reason(d, "not: drift")


def test_performance_must_have_degraded():
    spec = _spec(min_new_labels=0)
    fine = [_row(i, 8, conf=0.8, error=0.12) for i in range(3)]
    d = retraining_decision(fine, spec, _facts(2))
    assert not d.yes and "+0.020" in _reason(d, "not: performance")
    unsure = [_row(i, 8, conf=0.55, error=0.12) for i in range(3)]
    assert "mean confidence 0.550 < 0.6" in _reason(retraining_decision(unsure, spec, _facts(2)), "yes: performance")
    worse = [_row(i, 8, conf=0.8, error=0.2) for i in range(3)]
    assert retraining_decision(worse, spec, _facts(2)).yes
    unlabeled = [_row(i, 8, conf=0.8, labeled=0, error=None) for i in range(3)]
    assert "no labelled samples" in _reason(retraining_decision(unlabeled, spec, _facts(2)), "not: performance")


def test_new_labels_count_only_after_the_last_retrain():
    spec = _spec(min_new_labels=200, min_days_since_last=0)
    rows = [_row(i, 8, error=0.5, labeled=60) for i in range(6)]
    assert retraining_decision(rows, spec, _facts(5)).yes  # 360 labels on record
    d = retraining_decision(rows, spec, _facts(5, last_retrain=D0 + dt.timedelta(days=2)))
    assert not d.yes and "180 new labels since 2026-10-03, needs 200" in _reason(d, "not: 180")


def test_min_classes_for_multiclass_families():
    spec = _spec(min_new_labels=0, min_classes=11)
    few = [_row(i, 8, error=0.5, labels={str(c): 5 for c in range(i * 3, i * 3 + 3)}) for i in range(3)]
    d = retraining_decision(few, spec, _facts(2))
    assert not d.yes and "9 classes among the new labels, needs 11" in _reason(d, "not: 9 classes")
    many = [_row(i, 8, error=0.5, labels={str(c): 5 for c in range(i * 4, i * 4 + 4)}) for i in range(3)]
    assert retraining_decision(many, spec, _facts(2)).yes


def test_days_since_last_retrain():
    spec = _spec(min_new_labels=0, min_days_since_last=14)
    rows = [_row(i, 8, error=0.5) for i in range(20)]
    recent = retraining_decision(rows, spec, _facts(19, last_retrain=D0 + dt.timedelta(days=10)))
    assert not recent.yes and "9 days since the last retrain on 2026-10-11, needs 14" in _reason(recent, "not: 9 days")
    old = retraining_decision(rows, spec, _facts(19, last_retrain=D0 + dt.timedelta(days=5)))
    assert old.yes and "14 days since" in _reason(old, "yes: 14 days")


def test_in_flight_retrain_says_no():
    rows = [_row(i, 8, error=0.5) for i in range(3)]
    d = retraining_decision(rows, _spec(min_new_labels=0), _facts(2, in_flight=True))
    assert not d.yes and d.reasons[0].startswith("not: a retrain is already in flight")


def test_last_retrain_counts_finished_retrains_only_up_to_the_date(home):
    """Issue 9: a 'yes' that only queued a retrain is not a retrain; a registered version is."""
    uri = f"sqlite:///{home / 'drift.db'}"
    monitoring.record_decision("m-a-x", "2026-10-07", monitoring.Decision(True, ["yes"]), uri=uri)
    finished = ["2026-09-20", "2026-10-08"]
    assert monitoring.last_retrain("2026-09-19", finished) is None
    assert monitoring.last_retrain("2026-10-07", finished) == dt.date(2026, 9, 20)  # the queued yes is ignored
    assert monitoring.last_retrain("2026-10-09", finished) == dt.date(2026, 10, 8)
    assert monitoring.last_retrain("2026-10-09", []) is None
    monitoring.dispose(uri)


def test_unjudged_dates_are_the_measurements_written_after_the_last_decision(home):
    """Airflow drops drift-result events that arrive while retraining_triggers runs (a backfill's later
    dates): the next run finds those dates in the history instead."""
    uri = f"sqlite:///{home / 'drift.db'}"
    assert monitoring.unjudged_dates(uri) == []
    for day in ("2026-10-01", "2026-10-02"):
        monitoring.upsert_drift({"model": "m-a-x", "date": day}, uri)
    assert monitoring.unjudged_dates(uri) == ["2026-10-01", "2026-10-02"]   # nothing judged yet
    monitoring.record_decision("m-a-x", "2026-10-02", monitoring.Decision(False, ["not: x"]), uri=uri)
    assert monitoring.unjudged_dates(uri) == []
    for day in ("2026-10-04", "2026-10-03", "2026-10-01"):  # a backfill re-measures too
        monitoring.upsert_drift({"model": "m-b-x", "date": day}, uri)
    assert monitoring.unjudged_dates(uri) == ["2026-10-01", "2026-10-03", "2026-10-04"]
    monitoring.dispose(uri)


def test_retrain_plans_one_trigger_per_dag():
    evaluated = [{"model": "mood-a-pat", "date": "2026-10-07", "yes": True, "reasons": ["yes: a"], "dag_id": "ft"},
                 {"model": "mood-b-xgb", "date": "2026-10-07", "yes": True, "reasons": ["yes: b"], "dag_id": "ft"},
                 {"model": "mood-c-pat", "date": "2026-10-07", "yes": False, "reasons": ["not"], "dag_id": "ft"}]
    plans = monitoring.retrain_plans(evaluated)
    assert len(plans) == 1 and plans[0]["trigger_dag_id"] == "ft"
    assert plans[0]["trigger_run_id"] == "retrain__2026-10-07"
    assert set(plans[0]["conf"]["retrain"]["models"]) == {"mood-a-pat", "mood-b-xgb"}
    assert monitoring.retrain_plans(evaluated[2:]) == []


# ----------------------------------------------------------------------------------- measuring


def _features(n: int, shift: float = 0.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({f"f{i}": rng.normal(shift if i < 4 else 0.0, 1.0, n) for i in range(8)})


def test_measure_counts_drifted_features_and_labelled_error():
    spec = _spec()
    ref, cur = _features(2000), _features(500, shift=1.5, seed=1)
    proba = np.r_[np.full(400, 0.9), np.full(100, 0.2)]
    pred = (proba >= 0.5).astype(int)
    labels = np.r_[np.zeros(200), np.full(300, np.nan)]
    out = monitoring.measure(ref, cur, spec, proba=proba, prediction=pred, labels=labels,
                             reference_prediction=np.r_[np.ones(20), np.zeros(80)])
    assert out["drifted_features"] == 4 and set(out["drifted"]) == {"f0", "f1", "f2", "f3"}
    assert out["critical"] and out["max_psi"] > 0.25
    assert out["labeled_n"] == 200 and out["label_counts"] == {"0": 200} and out["error_rate"] == 1.0
    assert out["prediction_collapse"] and out["positive_share"] == pytest.approx(0.8)
    assert out["mean_confidence"] == pytest.approx(0.4 / 0.5 * 0.9 + 0.2 * 0.8)
    calm = monitoring.measure(ref, _features(500, seed=2), spec, proba=np.full(500, 0.3),
                              prediction=np.zeros(500), reference_prediction=np.r_[np.ones(20), np.zeros(80)])
    assert calm["drifted_features"] == 0 and not calm["prediction_collapse"]  # 100% class 0 vs 80%: no gain >= .25


def test_measure_bad_input_is_a_drift_error():
    spec = _spec()
    ref = _features(300)
    with pytest.raises(DriftError, match="no rows"):
        monitoring.measure(ref, ref.iloc[:0], spec, proba=[], prediction=[])
    with pytest.raises(DriftError, match="lack"):
        monitoring.measure(ref, ref.drop(columns=["f0"]), spec, proba=np.full(300, 0.5), prediction=np.zeros(300))
    with pytest.raises(DriftError, match="no feature could be compared"):
        monitoring.measure(ref, ref * np.nan, spec, proba=np.full(300, 0.5), prediction=np.zeros(300))


# ------------------------------------------------------------------------------- mood batches


def _land(home, frame=None, day="2026-10-01", persons=12):
    from biotune.mood import scoring
    from biotune.synthetic.batches import day_batch, write_batch

    frame = frame if frame is not None else day_batch(day, persons, seed=3)
    return write_batch(frame, scoring.batch_uri(day)), frame


def test_batch_round_trip_and_features(home):
    from biotune.mood import scoring
    from biotune.mood.features import SLEEP_FEATURE_NAMES

    path, frame = _land(home)
    got, activity, state = scoring.read_batch(path)
    assert activity.shape == (12, 10080) and activity.dtype == np.float32 and state.dtype == np.int8
    assert list(got["person_id"]) == list(frame["person_id"])
    np.testing.assert_array_equal(state[3], frame["state"][3])
    assert got["depression"].notna().sum() == frame["depression"].notna().sum()
    feats = scoring.batch_features(activity, state)
    assert list(feats.columns) == SLEEP_FEATURE_NAMES and len(feats) == 12
    assert feats["ST_long_MN"].between(3, 11).mean() > 0.7
    outcome = scoring.validate_batch("2026-10-01", run_id="t")
    assert outcome["status"] == "ok" and Path(outcome["report"]).exists()
    assert scoring.validate_batch("2026-10-09")["status"] == "missing"


def test_bad_batches_fail_with_typed_messages(home):
    from biotune.mood import scoring
    from biotune.synthetic.batches import day_batch, write_batch

    good = day_batch("2026-10-01", 6, seed=3)
    cases = {
        "empty": (good.iloc[:0], "empty"),
        "missing": (good.drop(columns=["state"]), r"missing columns \['state'\]"),
        "extra": (good.assign(zip_code="12345"), r"unexpected columns \['zip_code'\]"),
    }
    for name, (frame, message) in cases.items():
        path = write_batch(frame, str(home / f"{name}.parquet"))
        with pytest.raises(DataValidationError, match=message):
            scoring.read_batch(path)
    import pyarrow as pa
    import pyarrow.parquet as pq

    short = pa.table({"person_id": ["a", "b"], "activity": [[1.0] * 10080, [1.0] * 100],
                      "state": [[1] * 10080, [1] * 10080]})
    pq.write_table(short, home / "short.parquet")
    with pytest.raises(DataValidationError, match=r"1 of 2 rows do not hold 10080 minutes \(e.g. row 1 holds 100\)"):
        scoring.read_batch(str(home / "short.parquet"))
    bad_codes = pa.table({"person_id": ["a"], "activity": [[1.0] * 10080], "state": [[7] * 10080]})
    pq.write_table(bad_codes, home / "codes.parquet")
    with pytest.raises(DataValidationError, match="codes outside 1-4"):
        scoring.read_batch(str(home / "codes.parquet"))
    with pytest.raises(MissingInputError, match="no batch"):
        scoring.read_batch(str(home / "nowhere.parquet"))


def test_a_column_of_nan_fails_the_suite_and_is_quarantined(home):
    from biotune import storage
    from biotune.mood import scoring
    from biotune.synthetic.batches import day_batch

    frame = day_batch("2026-10-01", 8, seed=3)
    frame["activity"] = [np.full(10080, np.nan, dtype=np.float32) for _ in range(len(frame))]
    path, _ = _land(home, frame)
    with pytest.raises(DataValidationError) as err:
        scoring.validate_batch("2026-10-01", run_id="t")
    assert "activity_valid_fraction" in str(err.value)
    assert not Path(path).exists()
    moved = list(Path(storage.lake_path("quarantine")).rglob("batch.parquet"))
    assert len(moved) == 1 and (moved[0].parent / "REASON.json").exists()


def test_extra_column_fails_the_suite(home):
    from biotune.mood import scoring
    from biotune.synthetic.batches import day_batch

    _land(home, day_batch("2026-10-01", 5, seed=3).assign(zip_code="12345"))
    with pytest.raises(DataValidationError) as err:
        scoring.validate_batch("2026-10-01", run_id="t")
    assert "expect_table_columns_to_match_set" in str(err.value)


def test_shifted_batches_drift():
    from biotune.drift import psi
    from biotune.mood import scoring
    from biotune.synthetic.batches import day_batch

    def feats(day, shifted):
        f = day_batch(day, 150, seed=4, shifted=shifted)
        return scoring.batch_features(np.stack(f["activity"]), np.stack(f["state"]))

    ref = feats("2026-09-01", False)
    assert (psi(ref, feats("2026-10-05", True)) > 0.25).sum() >= 5


# ----------------------------------------------------------------------------- monitor_model


def test_missing_batch_and_missing_reference_are_recorded_not_raised(home, monkeypatch):
    from biotune import registry, scoring

    version = registry.Version(name="mood-depression-xgb", version="3", run_id="r1", model_uri="m", aliases=[],
                               metrics={}, tags={})
    monkeypatch.setattr(registry, "champion", lambda name: version)
    spec = _spec()
    row = scoring.monitor_model(spec, "2026-10-02", run_id="t")
    assert row["status"] == "missing" and row["n_rows"] == 0 and row["drifted_features"] == 0

    _land(home, day="2026-10-01", persons=5)

    def no_reference(run_id, model):
        raise DriftError(f"{model}'s training run {run_id} logged no reference/features.parquet", where="x", fix="y")

    monkeypatch.setattr(monitoring, "reference_frame", no_reference)
    row = scoring.monitor_model(spec, "2026-10-01", run_id="t")
    assert row["status"] == "error" and "logged no reference" in row["error"]
    row = scoring.monitor_model(spec, "2026-10-01", run_id="t2")  # re-run: still one row
    rows = monitoring.history("mood-depression-xgb")
    assert [(r["date"], r["status"]) for r in rows] == [("2026-10-01", "error"), ("2026-10-02", "missing")]
    assert rows[0]["run_id"] == "t2"
    monitoring.dispose()


def test_reference_frame_without_artifact_is_a_drift_error(home):
    import mlflow

    from biotune import registry

    registry.configure()
    exp = registry.experiment_id("biotune/test-no-reference")
    with mlflow.start_run(experiment_id=exp) as run:
        mlflow.log_metric("x", 1.0)
    with pytest.raises(DriftError, match="logged no reference/features.parquet"):
        monitoring.reference_frame(run.info.run_id, "mood-depression-xgb")


# ------------------------------------------------------------------------------------- alerts


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append({"path": self.path, "auth": self.headers.get("Authorization"),
                               "body": json.loads(body)})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Hook.received = []
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


class _Records(logging.Handler):
    """Collects formatted records of the biotune loggers (airflow.sdk reroutes the root logger)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def records():
    handler = _Records()
    loggers = [logging.getLogger(n) for n in ("biotune", "biotune_airflow.notifiers")]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    yield handler
    for lg in loggers:
        lg.removeHandler(handler)


def test_notifier_posts_json_and_never_logs_secrets(webhook, monkeypatch, records):
    sys.path.insert(0, str(ROOT / "plugins"))
    from biotune_airflow.notifiers import BiotuneAlertNotifier

    url = f"{webhook}/hooks/T000/SECRETPATH?token=SECRETQUERY"
    monkeypatch.setenv("BIOTUNE_ALERT_WEBHOOK", url)
    monkeypatch.setenv("BIOTUNE_ALERT_TOKEN", "SECRETTOKEN")
    row = {"model": "mood-depression-xgb", "model_version": "1", "date": "2026-10-05", "status": "ok",
           "max_psi": 3.2, "max_feature": "ST_long_MN", "critical": True, "drifted_features": 8,
           "psi": {"ST_long_MN": 3.2, "WT_long_MN": 0.01}}
    payload = monitoring.alert_payload(row, _spec())
    assert monitoring.needs_alert(row) and payload["severity"] == "critical"
    result = BiotuneAlertNotifier(title=payload["title"], payload=payload, severity="critical").notify({})
    assert result["posted"] and result["status"] == 200
    got = _Hook.received[0]
    assert got["path"] == "/hooks/T000/SECRETPATH?token=SECRETQUERY" and got["auth"] == "Bearer SECRETTOKEN"
    assert got["body"]["model"] == "mood-depression-xgb" and got["body"]["max_psi"] == 3.2
    assert "ST_long_MN" in got["body"]["title"]
    text = "\n".join(records.lines)
    assert "ALERT" in text and "127.0.0.1" in text
    for secret in ("SECRETPATH", "SECRETQUERY", "SECRETTOKEN"):
        assert secret not in text


def test_alert_without_webhook_only_logs_and_a_dead_webhook_does_not_raise(monkeypatch, records):
    sys.path.insert(0, str(ROOT / "plugins"))
    from biotune_airflow.notifiers import BiotuneAlertNotifier, resolve_webhook

    monkeypatch.delenv("BIOTUNE_ALERT_WEBHOOK", raising=False)
    assert resolve_webhook() == (None, None)
    assert BiotuneAlertNotifier(title="t").notify({}) == {"logged": True, "posted": False}
    hidden = "hook/" + "s3cr3t"
    dead = monitoring.send_alert({"title": "x"}, f"http://127.0.0.1:9/{hidden}", timeout=2)
    text = "\n".join(records.lines)
    assert "ALERT" in text and "unreachable" in text
    assert dead["posted"] is False and "s3cr3t" not in text
