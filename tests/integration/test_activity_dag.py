"""activity_domain_adaptation end to end with dag.test() on generated Garmin and source sessions:
a planted pipeline bug stops the run at the diagnostic with the right check failed and nothing
registered; the fixed data go through the shift check to a promoted champion that clears the
spec's gate on held-out Garmin people, and the monitoring steps score and measure its batches."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dagtest import load_dag, task_states

pytestmark = pytest.mark.slow

NAME = "activity-anxiety-cnnbilstm"
# small enough for 2 shared cores: the base model is the "small" CNN-BiLSTM trained here briefly
RUN = {"model_size": "small", "source_epochs": 15}


@pytest.fixture
def activity_home(home, airflow_db, tmp_path, monkeypatch):
    monkeypatch.setenv("BIOTUNE_PRETRAINED", str(tmp_path / "no-weights"))  # no lab model: train one
    monkeypatch.setenv("BIOTUNE_TF_THREADS", os.environ.get("BIOTUNE_TF_THREADS", "2"))
    return home


def _land(tmp_path: Path) -> dict:
    from biotune.family import get_family

    return get_family("activity").demo_training_data(str(tmp_path / "landing"), 500, seed=3)


def test_planted_pipeline_bug_stops_at_the_diagnostic(activity_home, tmp_path):
    from biotune import registry
    from biotune.activity import synth

    params = _land(tmp_path)
    bad = synth.write_mismatch(tmp_path / "landing" / "garmin_mg_as_ms2", "wrong_units", persons=3, seed=3,
                               bouts_per_class=1, bout_seconds=(20.0, 24.0))
    run = load_dag("activity_domain_adaptation").test(run_conf={**params, "data": bad, **RUN})
    states = task_states(run)
    assert str(run.state) == "failed", states
    assert states["diagnose"] == ["success"] and states["pipeline_mismatch"] == ["failed"]
    for task in ("prepare", "base_model", "shift_check", "train", "register_gate_promote"):
        assert states[task] == ["skipped"], (task, states)
    from biotune.activity.adaptation import run_dir

    report = json.loads(Path(run_dir(run.run_id), "diagnostic.json").read_text())
    assert "accel_units" in report["failed"]
    check = next(c for c in report["checks"] if c["name"] == "accel_units")
    assert check["measured"]["looks_like"] == "milli_g" and "milli_g" in check["fix"]
    assert registry.champion(NAME) is None


def test_garmin_data_to_a_gated_champion_then_monitored(activity_home, tmp_path):
    from biotune import registry, scoring
    from biotune.activity.adaptation import run_dir
    from biotune.family import get_family
    from biotune.specs import get_spec

    params = _land(tmp_path)
    run = load_dag("activity_domain_adaptation").test(run_conf={**params, **RUN})
    states = task_states(run)
    assert str(run.state) == "success", states
    assert states["pipeline_mismatch"] == ["skipped"] and states["no_shift"] == ["skipped"]
    shift = json.loads(Path(run_dir(run.run_id), "shift.json").read_text())
    assert shift["verdict"] == "domain shift" and shift["drifted_channels"]
    champ = registry.champion(NAME)
    assert champ is not None and champ.tags["dag_run_id"] == run.run_id
    assert champ.metrics["test_accuracy"] >= get_spec(NAME).gate.min_absolute == 0.65
    client = registry.configure()
    logged = client.get_run(champ.run_id).data.params
    assert logged["frozen_layers"] == "13" and logged["trainable_layers"] == "4"
    assert abs(float(logged["source_share"]) - 0.3) < 0.01 and float(logged["learning_rate"]) == 1e-4
    artifacts = {a.path for a in client.list_artifacts(champ.run_id)}
    assert {"plots", "reference"} <= artifacts

    # the monitoring steps pick the family up: a day's batch validated, scored and measured
    fam = get_family("activity")
    day = "2026-10-01"
    fam.demo_batch(day, 40, seed=5)
    assert scoring.validate_batch("activity", day, run_id="t")["status"] == "ok"
    scored = scoring.score_batch(NAME, day, run_id="t")
    assert scored.proba.shape == (40, 11) and scored.confidence.shape == (40,)
    row = scoring.monitor_model(get_spec(NAME), day, run_id="t", report=False)
    assert row["status"] == "ok" and row["n_rows"] == 40 and row["psi"]
