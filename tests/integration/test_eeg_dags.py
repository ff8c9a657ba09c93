"""eeg_sft and eeg_pretrain_sweep end to end with dag.test() on generated Muse recordings.

The two DAG runs share one lake, MLflow store and checkpoint folder (module scope): the sweep then
finds the sft run's checkpoint (same configuration) and pretrains only the ratio it lacks, and its
best variant is gated against the sft run's champion.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from dagtest import load_dag, small_sample_specs, task_states

pytestmark = pytest.mark.slow

MODEL = "eeg-remission-mamba2"
SMALL = {"epochs": 30, "pretrain_epochs": 3, "d_model": 32, "n_layers": 1}  # a backbone that trains in seconds


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """20 participants (Mind Monitor and muse-lsl CSVs alternating, one minute each) and labels.csv:
    4 participants per split and class at least, 2 each in validation and test."""
    from biotune.eeg.family import EEGFamily

    return EEGFamily().demo_training_data(str(tmp_path_factory.mktemp("eeg_src")), 20, seed=11)


@pytest.fixture(scope="module")
def eeg_home(airflow_db, tmp_path_factory):
    root = tmp_path_factory.mktemp("eeg_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BIOTUNE_HOME", str(root / "home"))
        mp.delenv("BIOTUNE_LAKE", raising=False)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.setenv("BIOTUNE_SPECS", str(small_sample_specs(root / "specs")))
        mp.setenv("BIOTUNE_PRETRAINED", str(root / "pretrained"))
        yield root


def test_eeg_sft_generated_recordings_to_champion(eeg_home, recordings):
    from biotune import registry
    from biotune.eeg import pipeline
    from biotune.eeg.pretrain import find_checkpoint

    run = load_dag("eeg_sft").test(run_conf={**recordings, **SMALL})
    assert str(run.state) == "success", task_states(run)
    champ = registry.champion(MODEL)
    assert champ is not None and champ.tags["dag_run_id"] == run.run_id
    assert champ.metrics["test_auc"] >= 0.5
    # participant-level metrics (probability vote) beside the window-level ones
    for split in ("val", "test"):
        assert {f"{split}_participant_{m}" for m in ("accuracy", "precision", "recall", "f1", "auc")} <= set(champ.metrics)
    client = registry.configure()
    info = client.get_run(champ.run_id)
    primary = [d.dataset for d in info.inputs.dataset_inputs if d.dataset.name.startswith("EEG_")]
    assert len(primary) == 1 and primary[0].name.endswith("windows_primary")
    assert primary[0].name.startswith("EEG_10s_TP9-AF7-AF8-TP10_")
    # lineage: the checkpoint, its config, the run that pretrained it
    params = info.data.params
    assert params["checkpoint"] == "mamba2_eeg_d32_l1_m50_mae" and params["checkpoint_origin"] == "pretrained"
    assert params["freeze_backbone"] == "True" and params["mask_ratio"] == "0.5"
    pretraining = client.get_run(info.data.tags["biotune.eeg.pretraining_run_id"])
    assert pretraining.data.params["mask_ratio"] == "0.5" and "final_masked_mse" in pretraining.data.metrics
    artifacts = {a.path for a in client.list_artifacts(champ.run_id)}
    assert {"plots", "reference", "pretraining", "spec.json"} <= artifacts
    ckpt = eeg_home / "pretrained" / "eeg" / params["checkpoint"]
    assert (ckpt / "config.json").exists() and (ckpt / "backbone.pt").exists()
    # a later run finds the checkpoint by its configuration, and the run that pretrained it
    found = find_checkpoint(32, 1, 0.5, "mae", str(eeg_home / "pretrained" / "eeg"))
    assert Path(found) == ckpt and pipeline._pretraining_run_of(found) == pretraining.info.run_id


def test_eeg_pretrain_sweep_compares_mask_ratios(eeg_home, recordings):
    from biotune import registry

    run = load_dag("eeg_pretrain_sweep").test(run_conf={**recordings, **SMALL, "mask_ratios": [0.25, 0.5],
                                                        "mask_styles": ["mae"]})
    states = task_states(run)
    assert str(run.state) == "success", states
    assert states["pretrain_and_finetune"] == ["success", "success"]
    client = registry.configure()
    exp = client.get_experiment_by_name(f"biotune/{MODEL}-sweep")
    parents = client.search_runs([exp.experiment_id], f"tags.dag_run_id = '{run.run_id}' and tags.biotune_sweep = 'parent'")
    assert len(parents) == 1
    parent = parents[0]
    children = client.search_runs([exp.experiment_id], f"tags.biotune_parent = '{parent.info.run_id}'")
    by_variant = {c.data.tags["biotune_variant"]: c for c in children}
    assert set(by_variant) == {"m25_mae", "m50_mae"}
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    # m50 was pretrained by the sft run (same d_model / layers / style): discovered, not pretrained again
    assert by_variant["m50_mae"].data.tags["biotune.eeg.checkpoint_origin"] in ("discovered", "pretrained")
    assert by_variant["m25_mae"].data.params["checkpoint"] == "mamba2_eeg_d32_l1_m25_mae"
    best = parent.data.tags["best_variant"]
    assert best in by_variant and {"m25_mae.val_auc", "m50_mae.val_auc"} <= set(parent.data.metrics)
    # the best variant alone went to the gate, as a registered version of this run
    version = registry.find_version(MODEL, run.run_id)
    assert version is not None and version.tags.get("gate_decision") in ("promoted", "rejected")
    logged = client.get_run(version.run_id).data.params
    assert logged["sweep_variant"] == best and logged["sweep_parent_run_id"] == parent.info.run_id


def test_wrong_sampling_rate_is_quarantined_and_nothing_registered(home, eeg_home, recordings, tmp_path):
    from biotune import registry, storage

    src = tmp_path / "recordings"
    shutil.copytree(recordings["source"], src)
    plain = sorted(src.glob("*/EEG_recording_*.csv"))[0]  # a muse-lsl file, stamped as if sampled at 220 Hz
    frame = pd.read_csv(plain)
    t0 = frame["timestamps"].iloc[0]
    frame["timestamps"] = (t0 + (frame["timestamps"] - t0) * 256.0 / 220.0).map("{:.3f}".format)
    frame.to_csv(plain, index=False)
    run = load_dag("eeg_sft").test(run_conf={"source": str(src), "labels": recordings["labels"], **SMALL})
    states = task_states(run)
    assert str(run.state) == "failed" and "failed" in states["build_primary"], states
    assert not plain.exists(), "the bad recording should have left the source folder"
    moved = list(Path(storage.lake_path("quarantine")).rglob(plain.name))
    assert len(moved) == 1 and (moved[0].parent / "REASON.json").exists()
    assert re.search(r"timestamps say 2[12]\d\.\d Hz; expected 256 Hz", (moved[0].parent / "REASON.json").read_text())
    assert registry.list_models() == []
