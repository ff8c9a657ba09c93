"""mood_population_finetune end to end with dag.test() on generated NHANES files."""

from __future__ import annotations

from pathlib import Path

import pytest

from dagtest import load_dag, small_sample_specs, task_states

pytestmark = pytest.mark.slow


@pytest.fixture
def mood_home(home, airflow_db, tmp_path, monkeypatch):
    """A fresh lake + MLflow store, and specs whose gate suits a 500-person sample."""
    monkeypatch.setenv("BIOTUNE_SPECS", str(small_sample_specs(tmp_path / "specs")))
    monkeypatch.setenv("BIOTUNE_PRETRAINED", str(tmp_path / "no-weights"))
    return home


def _land(participants: int, seed: int = 3) -> Path:
    from biotune import storage
    from biotune.synthetic.nhanes import write_nhanes

    landing = Path(storage.lake_path("landing", "nhanes", "2013-2014"))
    write_nhanes(landing, participants=participants, seed=seed)
    return landing


def test_generated_nhanes_to_four_champions(mood_home):
    from biotune import registry
    from biotune.mood.pipeline import MODEL_NAMES

    _land(500)
    dag = load_dag("mood_population_finetune")
    run = dag.test(run_conf={"epochs": 3, "pretrain_epochs": 1})
    assert str(run.state) == "success", task_states(run)
    listed = {row["name"]: row for row in registry.list_models()}
    for name in MODEL_NAMES:
        champ = registry.champion(name)
        assert champ is not None, f"{name} has no champion: {listed.get(name)}"
        assert champ.tags["dag_run_id"] == run.run_id
        assert champ.metrics["test_auc"] >= 0.5
    # the planted signal is learned, not guessed
    assert registry.champion("mood-depression-xgb").metrics["test_auc"] > 0.65
    client = registry.configure()
    run_info = client.get_run(registry.champion("mood-depression-pat").run_id)
    assert run_info.inputs.dataset_inputs, "training dataset not logged"
    artifacts = {a.path for a in client.list_artifacts(run_info.info.run_id)}
    assert {"plots", "reference", "spec.json"} <= artifacts


def test_truncated_file_is_quarantined_and_nothing_registered(mood_home):
    from biotune import registry, storage

    landing = _land(40)
    paxmin = landing / "PAXMIN_H.XPT"
    data = paxmin.read_bytes()
    paxmin.write_bytes(data[: len(data) // 3 + 17])
    dag = load_dag("mood_population_finetune")
    run = dag.test(run_conf={"epochs": 1, "pretrain_epochs": 1})
    states = task_states(run)
    assert str(run.state) == "failed"
    assert "failed" in states["validate"]
    assert not paxmin.exists(), "the bad file should have left the landing area"
    quarantined = list(Path(storage.lake_path("quarantine")).rglob("PAXMIN_H.XPT"))
    assert len(quarantined) == 1 and (quarantined[0].parent / "REASON.json").exists()
    assert registry.list_models() == []
