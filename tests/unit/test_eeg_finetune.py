"""Supervised fine-tuning: head, participant-level splits, metrics, frozen backbone, DDP under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from biotune.eeg.finetune import (ClassificationHead, classification_metrics, finetune, load_classifier,
                                  participant_splits, participant_vote, predict_windows)
from biotune.eeg.pretrain import load_checkpoint, pretrain
from biotune.eeg.primary import build_primary, read_primary
from biotune.eeg.synth import write_dataset
from biotune.errors import InputFormatError, MissingInputError, WeightsError

ROOT = Path(__file__).resolve().parents[2]
TINY = {"d_state": 8, "headdim": 8, "chunk_size": 8}


@pytest.fixture(scope="module")
def ft_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("eeg_ft")
    gen = write_dataset(str(root), participants=10, seconds=16, seed=2)
    prim = build_primary(gen["source"], gen["labels"], str(root) + "/", window_seconds=2, sub_window_seconds=0.25)
    ck = pretrain(prim["path"], str(root / "ck"), d_model=16, n_layers=1, mask_ratio=0.5, style="mae",
                  backbone=TINY, epochs=1, batch_size=16, num_threads=1)
    return {"root": root, "primary": prim["path"], "checkpoint": ck["path"], "ck_root": str(root / "ck")}


def test_head_layout_and_xavier_init():
    torch.manual_seed(0)
    head = ClassificationHead(64, classes=3, dropout=0.2)
    kinds = [type(m).__name__ for m in head.net]
    assert kinds == ["LayerNorm", "Dropout", "Linear", "GELU", "Dropout", "Linear"]
    first, last = head.net[2], head.net[5]
    assert first.weight.shape == (32, 64) and last.weight.shape == (3, 32)
    bound = (6 / (64 + 32)) ** 0.5
    assert first.weight.abs().max() <= bound and first.weight.abs().max() > 0.8 * bound
    assert (first.bias == 0).all() and (last.bias == 0).all()


def test_pooling_mean_is_the_seeds_and_mean_energy_adds_the_scale():
    from biotune.eeg.finetune import EEGClassifier, pooled_features
    from biotune.eeg.mamba2 import Mamba2Backbone, Mamba2Config

    torch.manual_seed(0)
    backbone = Mamba2Backbone(Mamba2Config(d_model=16, n_layers=2, **TINY), 32).eval()
    tokens = torch.randn(3, 5, 32)
    with torch.no_grad():
        assert torch.allclose(pooled_features(backbone, tokens, "mean"), backbone(tokens).mean(1), atol=1e-6)
        both = pooled_features(backbone, tokens, "mean_energy")
        louder = pooled_features(backbone, 3 * tokens, "mean_energy")
    assert both.shape == (3, 32)
    # the final RMSNorm hides most of a louder signal from the mean; the energy half carries it
    assert (louder[:, 16:] - both[:, 16:]).mean() > 1.0 > (louder[:, :16] - both[:, :16]).abs().mean()
    assert EEGClassifier(backbone, pool="mean").head.net[2].in_features == 16
    assert EEGClassifier(backbone).head.net[2].in_features == 32


def test_splits_are_participant_level_and_stratified():
    part = pd.DataFrame({"Participant": [f"P{i:02d}" for i in range(23)], "Remission": [i % 2 for i in range(23)]})
    s = participant_splits(part, 0.2, 0.2, seed=4)
    assert set(s) == set(part["Participant"]) and len(s) == 23  # every participant, exactly one split each
    for split in ("train", "val", "test"):
        members = [p for p, v in s.items() if v == split]
        assert set(part.set_index("Participant").loc[members, "Remission"]) == {0, 1}
    assert s == participant_splits(part.sample(frac=1, random_state=1), 0.2, 0.2, seed=4)  # row order irrelevant
    with pytest.raises(InputFormatError, match="at least 3 per class"):
        participant_splits(part.iloc[:5].assign(Remission=[0, 0, 0, 0, 1]))


def test_splits_stay_put_when_participants_join():
    part = pd.DataFrame({"Participant": [f"P{i:02d}" for i in range(40)], "Remission": [i % 2 for i in range(40)]})
    before = participant_splits(part, 0.2, 0.2, seed=1)
    grown = pd.concat([part, pd.DataFrame({"Participant": ["P40", "P41"], "Remission": [0, 1]})])
    after = participant_splits(grown, 0.2, 0.2, seed=1)
    moved = [p for p in before if before[p] != after[p]]
    assert len(moved) <= 4, moved  # at most the participants at the split boundaries of each class


def test_metrics_and_vote():
    m = classification_metrics([0, 1, 1, 0], np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]]))
    assert m["accuracy"] == 0.5 and m["precision"] == 0.5 and m["recall"] == 0.5 and m["auc"] == 0.75
    ids, y, p = participant_vote(["a", "a", "b"], [1, 1, 0], np.array([[0.2, 0.8], [0.6, 0.4], [0.9, 0.1]]))
    assert list(ids) == ["a", "b"] and list(y) == [1, 0] and np.allclose(p[0], [0.4, 0.6])


@pytest.fixture(scope="module")
def trained(ft_data):
    out = ft_data["root"] / "model"
    res = finetune(ft_data["primary"], str(out), checkpoint=ft_data["checkpoint"], epochs=6, batch_size=16, seed=1,
                   num_threads=1)
    return out, res


def test_finetune_frozen(ft_data, trained):
    out, res = trained
    splits = res["splits"]
    members = [p for s in splits.values() for p in s]
    assert len(members) == len(set(members)) == 10  # no participant is in two splits
    for split in ("train", "val", "test"):
        for level in ("window", "participant"):
            for metric in ("accuracy", "precision", "recall", "f1", "auc"):
                assert f"{split}_{level}_{metric}" in res["metrics"]
    assert res["metrics"]["test_participant_n"] == len(splits["test"])
    h = res["history"]
    best = max(range(len(h["epoch"])), key=lambda i: (h["val_f1"][i], -h["val_loss"][i]))
    assert res["best_epoch"] == h["epoch"][best]
    # the backbone did not move: it still equals the pretrained checkpoint
    model, cfg = load_classifier(str(out))
    pre, _ = load_checkpoint(ft_data["checkpoint"])
    assert all(torch.equal(v, model.backbone.state_dict()[k]) for k, v in pre.state_dict().items())
    assert cfg["pretraining"]["style"] == "mae" and cfg["checkpoint"] == ft_data["checkpoint"]
    # the saved model reproduces the test metrics
    data = read_primary(ft_data["primary"])
    parents, x = data.windows()
    test = parents["Participant"].isin(splits["test"]).to_numpy()
    proba = predict_windows(model, cfg, x[test])
    again = classification_metrics(parents["Remission"].to_numpy()[test], proba)
    assert abs(again["auc"] - res["metrics"]["test_window_auc"]) < 1e-9 or np.isnan(again["auc"])
    assert abs(again["f1"] - res["metrics"]["test_window_f1"]) < 1e-9


def test_unfrozen_backbone_trains(ft_data, tmp_path):
    res = finetune(ft_data["primary"], str(tmp_path / "m"), checkpoint=ft_data["checkpoint"], freeze_backbone=False,
                   epochs=1, batch_size=16, num_threads=1)
    model, _ = load_classifier(str(tmp_path / "m"))
    pre, _ = load_checkpoint(ft_data["checkpoint"])
    changed = [k for k, v in pre.state_dict().items() if not torch.equal(v, model.backbone.state_dict()[k])]
    assert changed and res["freeze_backbone"] is False


def test_discovery_from_config(ft_data, tmp_path):
    res = finetune(ft_data["primary"], str(tmp_path / "d"), pretrain_config={
        "d_model": 16, "n_layers": 1, "mask_ratio": 0.5, "style": "mae", "root": ft_data["ck_root"], "d_state": 8},
        epochs=1, num_threads=1)
    assert res["checkpoint"] == ft_data["checkpoint"]
    with pytest.raises(MissingInputError, match="mamba2_eeg_d16_l1_m90_mae") as err:
        finetune(ft_data["primary"], str(tmp_path / "e"), pretrain_config={
            "d_model": 16, "n_layers": 1, "mask_ratio": 0.9, "style": "mae", "root": ft_data["ck_root"]}, epochs=1)
    assert "found: mamba2_eeg_d16_l1_m50_mae" in str(err.value) and "biotune eeg pretrain" in str(err.value)
    with pytest.raises(WeightsError, match="headdim"):
        finetune(ft_data["primary"], str(tmp_path / "f"), pretrain_config={
            "d_model": 16, "n_layers": 1, "mask_ratio": 0.5, "style": "mae", "root": ft_data["ck_root"], "headdim": 4},
            epochs=1)
    assert not (tmp_path / "e").exists() and not (tmp_path / "f").exists()  # no model touched


@pytest.mark.slow
def test_torchrun_two_processes_match_one(ft_data, tmp_path):
    """2 ranks (gloo) vs 1 process: same global batches, gradients averaged -> same model and metrics."""
    common = ["--primary", ft_data["primary"], "--checkpoint", ft_data["checkpoint"], "--epochs", "4",
              "--batch-size", "16", "--dropout", "0", "--seed", "3", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "include"), "BIOTUNE_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "biotune.eeg.finetune", *common, "--out", str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads(proc.stdout[proc.stdout.index("{"):])
    one = finetune(ft_data["primary"], str(tmp_path / "one"), checkpoint=ft_data["checkpoint"], epochs=4, batch_size=16,
                   dropout=0.0, seed=3, num_threads=1)
    assert ddp["world_size"] == 2 and one["world_size"] == 1
    assert ddp["best_epoch"] == one["best_epoch"] and ddp["splits"] == one["splits"]
    for key, value in one["metrics"].items():
        assert ddp["metrics"][key] == pytest.approx(value, abs=1e-4, nan_ok=True), key
    a = torch.load(tmp_path / "ddp" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "one" / "model.pt", weights_only=True)
    worst = max(float((a[k] - b[k]).abs().max()) for k in b)
    assert worst < 1e-4, worst
    print(f"max weight difference 2 ranks vs 1 process: {worst:.2e}")


@pytest.mark.slow
def test_pyfunc_round_trip(ft_data, trained, tmp_path):
    import mlflow

    from biotune.eeg.pyfunc import log_classifier

    out, _ = trained
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        # artifacts under tmp_path: with a SQLite store MLflow otherwise writes ./mlruns in the cwd
        exp = mlflow.create_experiment("eeg-pyfunc-test", artifact_location=(tmp_path / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=exp):
            info = log_classifier(str(out))
        loaded = mlflow.pyfunc.load_model(info.model_uri)
    finally:
        mlflow.set_tracking_uri(previous)
    model, cfg = load_classifier(str(out))
    _, x = read_primary(ft_data["primary"]).windows()
    got = loaded.predict(x[:5].astype(np.float32))
    assert got.shape == (5,) and np.allclose(got, predict_windows(model, cfg, x[:5])[:, 1])
    assert tuple(info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == (-1, -1, 4, 64)
