"""The activity family on the contract, without TensorFlow: registration, the prepared dataset
(diagnostic first, person splits, drift features), its refusals, and daily batches (exact window
count, ids, labels, the batch suite passing a good batch and failing one in the wrong units)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from biotune import storage
from biotune.activity import synth
from biotune.activity.dataset import FEATURES, TASK, assign_splits
from biotune.errors import BiotuneError, DataValidationError
from biotune.family import families, get_family


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    fam = get_family("activity")
    params = fam.demo_training_data(str(tmp_path_factory.mktemp("activity_family")), 500, seed=4)
    run_dir = str(tmp_path_factory.mktemp("run"))
    return fam, params, fam.prepare(params, run_dir, "manual__t"), run_dir


def test_registered_with_its_spec():
    fam = families()["activity"]
    assert fam.fine_tune_dag_id == "activity_domain_adaptation" and "cnn_bilstm" in fam.architectures
    (spec,) = fam.specs()
    assert spec.name == "activity-anxiety-cnnbilstm" and spec.task_type == "multiclass" and len(spec.classes) == 11
    assert (spec.gate.metric, spec.gate.min_absolute, spec.gate.min_improvement) == ("accuracy", 0.65, 0.05)
    assert spec.retraining.min_classes == 8 and spec.retraining.dag_id == "activity_domain_adaptation"
    assert set(fam.dag_params()) >= {"data", "source", "config", "pipeline", "min_new_windows"}


def test_prepared_dataset(demo):
    fam, params, dataset, run_dir = demo
    assert dataset["diagnostic_status"] in ("pass", "warn") and dataset["n_windows"] >= 500
    assert set(dataset["splits"]) == {"train", "val", "test"}
    table = storage.read_parquet(dataset["uri"])
    assert table.groupby("person")["split"].nunique().max() == 1  # a person is in one split only
    assert set(FEATURES) <= set(table.columns) and table["window_id"].is_unique
    spec = fam.specs()[0]
    parts = {w: fam.split(spec, dataset, w) for w in ("train", "val", "test")}
    assert sum(len(p) for p in parts.values()) == dataset["n_windows"]
    assert parts["test"].x.shape[1:] == (200, 6) and parts["test"].x.dtype == np.float32
    # unscaled, model units: the accelerometer magnitude is about 1 g
    assert 8 < np.linalg.norm(parts["train"].x[:, :, :3], axis=2).mean() < 13
    ref = fam.reference_frame(spec, dataset)
    assert list(ref.columns) == [*FEATURES, TASK] and len(ref) == len(parts["train"])
    assert list(fam.reference_features(ref).columns) == FEATURES
    assert json.loads(Path(dataset["diagnostic"]).read_text())["ok"] is True


def test_prepare_refuses(demo, tmp_path):
    fam, params, _, _ = demo
    bad = synth.write_mismatch(tmp_path / "bad", "permuted_axes", persons=3, seed=4, bouts_per_class=1,
                               bout_seconds=(20.0, 24.0))
    with pytest.raises(DataValidationError, match="pipeline diagnostic failed") as e:
        fam.prepare({**params, "data": bad}, str(tmp_path / "run1"), "r1")
    assert "axes" in str(e.value)
    assert (tmp_path / "run1" / "diagnostic.json").exists() and not (tmp_path / "run1" / "windows.npy").exists()
    with pytest.raises(DataValidationError, match="fewer than the 100000 required"):
        fam.prepare({**params, "min_new_windows": 100_000}, str(tmp_path / "run2"), "r2")


def test_splits_are_stable_per_person():
    people = [f"G{i:02d}" for i in range(1, 40)]
    a = assign_splits(people)
    assert a == assign_splits(list(reversed(people)))
    assert {k: v for k, v in assign_splits(people + ["G99"]).items() if k != "G99"} == a  # adding one moves no one
    few = assign_splits(["A", "B", "C"])
    assert sorted(few.values()) == ["test", "train", "val"]


def test_daily_batch_and_its_suite(home):
    from biotune import validation

    fam = get_family("activity")
    day = "2026-10-01"
    path = fam.demo_batch(day, 60, seed=5)
    assert path == fam.batch_uri(day) and path.endswith("landing/activity/2026-10-01/batch.csv")
    batch = fam.read_batch(path)
    assert len(batch) == 60 and len(set(batch.ids)) == 60
    spec = fam.specs()[0]
    assert fam.batch_inputs(spec, batch).shape == (60, 200, 6)
    assert list(fam.drift_features(spec, batch).columns) == FEATURES
    labels = fam.batch_labels(spec, batch)
    assert labels.dtype == np.float64 and np.isfinite(labels).all() and labels.max() <= 10
    frame = fam.batch_validation_frame(path)
    assert validation.run_suite(frame, fam.batch_suite, where=path).success
    # the same day declared in m/s^2 while the device writes milli-g: the suite fails on the magnitude
    pipe = json.loads((Path(path).parent / "pipeline.json").read_text())
    (Path(path).parent / "pipeline.json").write_text(json.dumps({**pipe, "accel_units": "m/s^2"}))
    outcome = validation.run_suite(fam.batch_validation_frame(path), fam.batch_suite, where=path)
    assert not outcome.success and any("accel_magnitude" in f for f in outcome.failures)
    Path(path).write_bytes(b"this is not a batch file")
    with pytest.raises(BiotuneError) as e:
        fam.read_batch(path)
    assert e.value.bad_input and "not a readable CSV" in str(e.value) and e.value.fix


def test_dag_stop_quarantines_unreadable_files(home, tmp_path):
    """The DAG's first two steps without Airflow: a session with a label outside the map fails the
    diagnostic; stopping moves that file (only) to quarantine and names the failed checks."""
    import pandas as pd

    from biotune.activity.adaptation import diagnose_step, stop_on_mismatch

    fam = get_family("activity")
    params = fam.demo_training_data(str(tmp_path / "landing"), 500, seed=6)
    first = sorted(Path(params["data"]).glob("*.csv"))[0]
    df = pd.read_csv(first)
    df.loc[3, "label"] = "doomscrolling"
    df.to_csv(first, index=False)
    diag = diagnose_step(params, "manual__q")
    assert not diag["ok"] and diag["failed"] == ["input_files"] and diag["unreadable"] == [str(first)]
    assert any("doomscrolling" in d for d in diag["details"])
    with pytest.raises(DataValidationError, match="pipeline mismatch: input_files") as e:
        stop_on_mismatch(diag, "manual__q")
    assert not first.exists() and "quarantine" in e.value.fix
    assert list(Path(storage.lake_path("quarantine")).rglob(first.name))
    assert len(list(Path(params["data"]).glob("*.csv"))) == 4  # the other sessions stay
