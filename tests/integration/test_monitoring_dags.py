"""The monitoring loop end to end: batch_scoring, drift_monitoring and retraining_triggers with dag.test().

A real mood-depression-xgb champion is trained through the library (the fine-tune job's own
train/evaluate/publish steps) on generated participants; ten daily batches land with a shift
planted from the fifth day; each DAG runs once per date with that logical date (what
`airflow backfill create` schedules for each day). Expected: drift flagged from day 5, the rule
says yes on day 7 (third consecutive drifted batch) and not before, the yes queues a
mood_population_finetune run with the reasons in its conf, and a re-run date keeps one history row.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pendulum
import pytest

from dagtest import load_dag, small_sample_specs, task_states

pytestmark = pytest.mark.slow
MODEL = "mood-depression-xgb"
DATES = [dt.date(2026, 10, 1) + dt.timedelta(days=i) for i in range(10)]
SHIFT_FROM = DATES[4]


@pytest.fixture
def monitor_home(home, airflow_db, tmp_path, monkeypatch):
    """Fresh lake, MLflow store and drift DB; spec copies with a gate and a label bar for small samples."""
    def fewer_labels(spec):
        if spec["name"] == MODEL:
            spec["retraining"]["min_new_labels"] = 100

    monkeypatch.setenv("BIOTUNE_SPECS", str(small_sample_specs(tmp_path / "specs", fewer_labels)))
    monkeypatch.delenv("BIOTUNE_ALERT_WEBHOOK", raising=False)
    yield home
    from biotune import monitoring

    monitoring.dispose()


def _register_champion(participants: int = 700) -> dict:
    """Train, evaluate and publish mood-depression-xgb with the fine-tune job's own steps, on the
    36 features of generated (unshifted) participants."""
    from biotune import registry, storage
    from biotune.mood import pipeline
    from biotune.mood.scoring import batch_features
    from biotune.specs import get_spec
    from biotune.synthetic.batches import day_batch

    frame = day_batch("2026-09-01", participants, seed=11, label_fraction=1.0)
    frame = frame[frame["depression"].notna()].reset_index(drop=True)
    activity, state = np.stack(frame["activity"]), np.stack(frame["state"])
    table = pd.DataFrame({"SEQN": np.arange(len(frame)) + 100_000, "phq9_total": np.nan})
    for col in ("depression", "benzodiazepine", "ssri"):
        table[col] = frame[col].astype("float64").to_numpy()
    training = get_spec(MODEL).training
    table["split"] = [pipeline.split_of(s, training.seed, training.validation_fraction, training.test_fraction)
                      for s in table["SEQN"]]
    table = table.join(batch_features(activity, state))
    run_id = "manual__monitoring_test_champion"
    info = {"features": storage.write_parquet(table, storage.join(pipeline.run_dir(run_id), "features.parquet")),
            "activity": storage.join(pipeline.run_dir(run_id), "activity.npy")}
    np.save(info["activity"], np.nan_to_num(activity, nan=0.0))
    evaluated = pipeline.evaluate_model(pipeline.train_model(MODEL, info, None, run_id), info, run_id)
    result = registry.publish(evaluated, run_id)
    assert result["promoted"], result
    return {**result, "dataset": {**info, "family": "mood", "uri": info["features"]}}


def _run(dag, day: dt.date, conf: dict | None = None):
    run = dag.test(logical_date=pendulum.datetime(day.year, day.month, day.day, tz="UTC"), run_conf=conf or {})
    assert str(run.state) == "success", (dag.dag_id, day, task_states(run))
    return run


def _airflow(*args: str) -> subprocess.CompletedProcess:
    airflow = str(Path(sys.executable).with_name("airflow"))
    return subprocess.run([airflow, *args], capture_output=True, text=True, env=os.environ.copy(), timeout=300)


def test_drift_from_day_5_retrain_on_day_7(monitor_home):
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    from biotune import monitoring, registry, storage
    from biotune.synthetic.batches import write_mood_batches

    timings: dict[str, float] = {}
    t0 = time.time()
    champion = _register_champion()
    timings["train+register"] = time.time() - t0
    t0 = time.time()
    write_mood_batches(storage.lake_path("landing"), DATES, persons_per_day=250, seed=5, shift_from=SHIFT_FROM)
    timings["land 10 batches"] = time.time() - t0

    # the backfill command is accepted: it queues one run per day for the scheduler (none runs here,
    # so the runs stay queued; dag.test below executes exactly what each of those runs would)
    assert _airflow("dags", "reserialize").returncode == 0
    out = _airflow("backfill", "create", "--dag-id", "drift_monitoring", "--from-date", "2026-10-03",
                   "--to-date", "2026-10-03")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    with create_session() as session:
        queued = session.query(DagRun).filter(DagRun.dag_id == "drift_monitoring",
                                              DagRun.run_type == "backfill").all()
        assert [(r.logical_date.date(), str(r.state)) for r in queued] == [(dt.date(2026, 10, 3), "queued")]

    scoring_dag, drift_dag, trigger_dag = (load_dag(d) for d in
                                           ("batch_scoring", "drift_monitoring", "retraining_triggers"))
    t0 = time.time()
    for day in DATES:
        _run(scoring_dag, day)
        _run(drift_dag, day, {"evidently_report": day in (DATES[3], DATES[6])})
        _run(trigger_dag, day)
    timings["30 DAG runs"] = time.time() - t0

    # predictions for every day, written by batch_scoring
    for day in DATES:
        preds = pd.read_parquet(storage.lake_path("predictions", "mood", day.isoformat(), f"{MODEL}.parquet"))
        assert list(preds.columns) == ["person_id", "proba", "prediction", "confidence", "served_by",
                                       "serving_reason", "model_version"]
        assert len(preds) == 250 and (preds["model_version"] == champion["version"]).all()
        assert (preds["served_by"] == f"{MODEL} v{champion['version']}").all()  # no per-person models in mood

    # drift flagged from day 5 on, not before; one row per date
    rows = {r["date"]: r for r in monitoring.history(MODEL)}
    assert sorted(rows) == [d.isoformat() for d in DATES]
    for day in DATES:
        row = rows[day.isoformat()]
        assert row["status"] == "ok" and row["n_rows"] == 250
        if day >= SHIFT_FROM:
            assert row["drifted_features"] >= 3 and row["critical"], row
            assert row["error_rate"] > row["reference_error_rate"] + 0.05
        else:
            assert row["drifted_features"] < 3, (day, row["drifted"], row["psi"])
    report = rows[DATES[6].isoformat()]["report_uri"]
    page = Path(report).read_text()
    assert page.lower().count("<html") >= 1
    # the report shows the history's figures (the spec's method), titled with model, version, date
    shown = re.search(r"columns \((\d+) out of (\d+)\)", page)
    assert int(shown.group(1)) == rows[DATES[6].isoformat()]["drifted_features"], shown.group(0)
    assert re.search(rf"<title>{MODEL} v{champion['version']} · {DATES[6].isoformat()} · PSI", page)
    client = registry.configure()
    attached = {a.path for a in client.list_artifacts(champion["run_id"], f"monitoring/{DATES[6].isoformat()}")}
    assert f"monitoring/{DATES[6].isoformat()}/drift_report.html" in attached

    # the rule: yes on day 7 (third consecutive drifted batch), not before; in flight afterwards
    decided = {}
    for d in monitoring.decisions(MODEL):
        decided.setdefault(d["date"], d)
    assert [d for d, x in sorted(decided.items()) if x["decision"] == "yes"] == [DATES[6].isoformat()]
    assert "needs 3" in " ".join(decided[DATES[5].isoformat()]["reasons"])
    after = decided[DATES[7].isoformat()]["reasons"]
    assert any(r.startswith("not: a retrain is already in flight") for r in after), after
    with create_session() as session:
        runs = session.query(DagRun).filter(DagRun.dag_id == "mood_population_finetune").all()
        assert [r.run_id for r in runs] == [f"retrain__{DATES[6].isoformat()}"]
        reasons = runs[0].conf["retrain"]["models"][MODEL]
        assert str(runs[0].state) == "queued"
    assert reasons == decided[DATES[6].isoformat()]["reasons"] and reasons[0].startswith("yes: 3 consecutive")

    # the queued retrain learns from the labelled production batches up to its date (the
    # fine-tune DAG's prepare adds them; here the same steps on the champion's own dataset)
    from biotune import production, steps
    from biotune.family import get_family

    retrain = runs[0].conf["retrain"]
    dataset = {**champion["dataset"], "production": production.collect(get_family("mood"), retrain["date"], "retrain")}
    assert [b["date"] for b in dataset["production"]["batches"]] == [d.isoformat() for d in DATES[:7]]
    evaluated = steps.evaluate(steps.train(MODEL, dataset, None, "retrain"), dataset, "retrain")
    assert evaluated["data"]["train_production"] > 0 and evaluated["data"]["test_production"] > 0
    retrained = registry.publish(evaluated, "retrain")
    assert retrained["promoted"], retrained  # the old champion misjudges the shifted days; this one learned them
    inputs = {d.dataset.name for d in client.get_run(retrained["run_id"]).inputs.dataset_inputs}
    assert {f"mood-batch-{d.isoformat()}" for d in DATES[:7]} <= inputs

    # re-running a date replaces its row
    t0 = time.time()
    _run(drift_dag, DATES[5], {"evidently_report": False})
    timings["re-run one date"] = time.time() - t0
    again = [r for r in monitoring.history(MODEL) if r["date"] == DATES[5].isoformat()]
    assert len(again) == 1 and again[0]["created_at"] > rows[DATES[5].isoformat()]["created_at"]
    assert len(monitoring.history(MODEL)) == 10
    print("timings:", {k: round(v, 1) for k, v in timings.items()})


def test_missing_batch_day_is_recorded_as_missing_and_bad_batch_is_quarantined(monitor_home):
    """A day without a batch is 'missing' (no failure); a batch that fails its suite is quarantined."""
    from biotune import monitoring, storage
    from biotune.synthetic.batches import day_batch, write_batch

    _register_champion(participants=300)
    bad = day_batch("2026-10-02", 20, seed=2)
    bad["activity"] = [np.full(10080, np.nan, dtype=np.float32) for _ in range(len(bad))]
    landed = write_batch(bad, storage.lake_path("landing", "mood", "2026-10-02", "batch.parquet"))

    drift_dag, scoring_dag = load_dag("drift_monitoring"), load_dag("batch_scoring")
    _run(drift_dag, dt.date(2026, 10, 1), {"evidently_report": False})
    assert [(r["date"], r["status"]) for r in monitoring.history(MODEL)] == [("2026-10-01", "missing")]
    _run(scoring_dag, dt.date(2026, 10, 1))  # nothing landed: nothing to score, not a failure

    run = scoring_dag.test(logical_date=pendulum.datetime(2026, 10, 2, tz="UTC"))
    assert str(run.state) == "failed" and "failed" in task_states(run)["validate"]
    assert not Path(landed).exists()
    assert len(list(Path(storage.lake_path("quarantine")).rglob("batch.parquet"))) == 1
