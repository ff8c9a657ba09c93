"""A retrain learns from the labelled production data since the champion's training: validated
batches, mixed with the original training rows by the spec's new_data_share, production cases in
validation and test, and the MLflow run recording what went in (biotune.production)."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "contract"))


@pytest.fixture
def toy(home, tmp_path, monkeypatch):
    import toyfamily

    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "toy-y-logreg.yaml").write_text(yaml.safe_dump(toyfamily.SPEC))
    monkeypatch.setenv("BIOTUNE_SPECS", str(specs))
    from biotune.family import get_family

    fam = get_family("toy")
    return fam, fam.demo_training_data(str(tmp_path / "landing"), 400, seed=1)


def _champion(params: dict, run_id: str = "first") -> dict:
    from biotune import registry, steps

    dataset = steps.prepare("toy", params, run_id)
    evaluated = steps.evaluate(steps.train("toy-y-logreg", dataset, None, run_id, params), dataset, run_id)
    return registry.publish(evaluated, run_id)


def test_a_retrain_learns_from_labelled_production_batches(toy):
    import mlflow

    from biotune import registry, steps, storage
    from biotune.specs import get_spec

    fam, params = toy
    assert _champion(params)["promoted"]
    champion = registry.champion("toy-y-logreg")
    today = registry.registration_date("toy-y-logreg", champion.version)
    days = [today + dt.timedelta(days=i) for i in (1, 2, 3)]
    for i, day in enumerate(days):  # production drifted: features shifted, the label's boundary moved
        fam.demo_batch(day, 150, seed=20 + i, shifted=True)
    late_day = today + dt.timedelta(days=9)  # after the retraining decision's date: not yet
    fam.demo_batch(late_day, 150, seed=30, shifted=True)
    bad_day = today + dt.timedelta(days=4)  # fails the batch's reading: quarantined, not learned from
    storage.write_bytes(fam.batch_uri(bad_day), b"not a parquet file")

    dataset = steps.prepare("toy", params, "retrain", retrain={"date": bad_day.isoformat()})
    production = dataset["production"]
    assert [b["date"] for b in production["batches"]] == [d.isoformat() for d in days]
    assert [e["date"] for e in production["excluded"]] == [bad_day.isoformat()]
    assert not storage.exists(fam.batch_uri(bad_day))  # quarantined, kept with its reason
    assert list(Path(storage.lake_path("quarantine")).rglob("batch.parquet"))

    spec = get_spec("toy-y-logreg")
    train, counts = steps.split(spec, fam, dataset, "train")
    assert counts["production"] > 150  # 450 production rows, about 60% of persons in training
    assert counts["original_used"] == round(counts["production"] * 0.3 / 0.7) < counts["original"]
    assert len(train) == counts["production"] + counts["original_used"]
    test, test_counts = steps.split(spec, fam, dataset, "test")
    assert test_counts["production"] > 0 and len(test) == test_counts["original"] + test_counts["production"]
    # persons never cross splits
    val, _ = steps.split(spec, fam, dataset, "val")
    assert not (set(train.ids) & set(test.ids)) and not (set(val.ids) & set(test.ids))

    trained = steps.train("toy-y-logreg", dataset, None, "retrain", params)
    evaluated = steps.evaluate(trained, dataset, "retrain")
    assert evaluated["data"]["train_production"] == counts["production"]
    published = registry.publish(evaluated, "retrain")
    assert published["promoted"], published

    run = mlflow.get_run(published["run_id"])
    assert int(run.data.params["data_train_production"]) == counts["production"]
    assert run.data.params["data_production_batches"] == "3"
    names = {d.dataset.name for d in run.inputs.dataset_inputs}
    assert {f"toy-batch-{d.isoformat()}" for d in days} <= names
    # it learned the production domain: on production test rows it beats the model it replaces
    production_test = [i for i, pid in enumerate(test.ids) if not str(pid).startswith("p1-")]
    x, y = test.x.iloc[production_test], np.asarray(test.y)[production_test]
    import mlflow.pyfunc

    old = mlflow.pyfunc.load_model(f"models:/toy-y-logreg/{champion.version}").predict(x)
    new = mlflow.pyfunc.load_model(f"models:/toy-y-logreg/{published['version']}").predict(x)
    accuracy = lambda p, t: float(((np.asarray(p) >= t) == y).mean())  # noqa: E731
    assert accuracy(new, evaluated["threshold"]) > accuracy(old, float(champion.metrics["test_threshold"])) + 0.2

    # the retrain counts on its decision's date (the day its production data ends), not the clock's: a
    # later judgement of an earlier day (a backfill) counts days and labels from there
    from biotune import monitoring

    assert sorted(monitoring.loop.retrain_dates("toy-y-logreg")) == [today, bad_day]
    assert monitoring.last_retrain(bad_day + dt.timedelta(days=2), monitoring.loop.retrain_dates("toy-y-logreg")) \
        == bad_day

    # the next retrain starts after what the new champion learned: nothing new up to the same date
    again = steps.prepare("toy", params, "retrain-2", retrain={"date": bad_day.isoformat()})
    assert again["production"]["batches"] == [] and again["production"]["since_by_model"] == {
        "toy-y-logreg": bad_day.isoformat()}


def test_a_drift_triggered_retrain_is_given_the_champions_training_params(toy):
    """The retrain reads the same training data as the champion: its run's params (here the toy
    DAG's `source`, landed outside the DAG's default) travel in the retrain's conf."""
    from biotune import monitoring

    fam, params = toy
    assert _champion(params)["promoted"]
    yes = {"model": "toy-y-logreg", "date": "2026-10-07", "yes": True, "reasons": ["yes: drift"],
           "dag_id": "toy_finetune"}
    plan, = monitoring.retrain_plans([yes])
    assert plan["conf"]["source"] == params["source"] and plan["conf"]["retrain"]["date"] == "2026-10-07"
    assert monitoring.retrain_plans([{**yes, "dag_id": "another_dag"}])[0]["conf"].keys() == {"retrain"}


def test_production_share_zero_keeps_production_out_of_training(toy, monkeypatch):
    from biotune import steps
    from biotune.specs import get_spec

    fam, params = toy
    dataset = steps.prepare("toy", params, "r0")
    for i in (1, 2):
        fam.demo_batch(f"2026-10-0{i}", 100, seed=i, shifted=True)
    dataset["production"] = __import__("biotune.production", fromlist=["x"]).collect(
        fam, "2026-10-02", "r0", since="2026-09-30")
    spec = get_spec("toy-y-logreg")
    spec = spec.model_copy(update={"retraining": spec.retraining.model_copy(update={"new_data_share": 0.0})})
    train, counts = steps.split(spec, fam, dataset, "train")
    assert counts["production"] == 0 and counts["original_used"] == counts["original"] == len(train)
    test, test_counts = steps.split(spec, fam, dataset, "test")
    assert test_counts["production"] > 0  # production cases are still judged


def test_a_retrain_without_a_date_is_a_clear_error(toy):
    from biotune import steps
    from biotune.errors import InputFormatError

    fam, params = toy
    with pytest.raises(InputFormatError, match="date"):
        steps.prepare("toy", params, "r", retrain={"models": {}})


def test_unlabelled_batches_are_not_learned_from(toy):
    from biotune import production, storage

    fam, params = toy
    path = fam.demo_batch("2026-10-01", 50, seed=3)
    frame = storage.read_parquet(path).drop(columns=["label"])
    storage.write_parquet(frame, path)
    found = production.collect(fam, "2026-10-01", "r", since="2026-09-30")
    assert found["batches"] == [] and found["excluded"] == []
