"""Masked pretraining (mae / bert), checkpoints by name and config, discovery and its errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from biotune.eeg.cli import add_commands
from biotune.eeg.mamba2 import Mamba2Config
from biotune.eeg.pretrain import (MaskedPretrainer, TokenLayout, checkpoint_name, draw_masks, find_checkpoint,
                                  list_checkpoints, load_checkpoint, masked_mse, pretrain)
from biotune.eeg.primary import build_primary, read_primary
from biotune.eeg.synth import write_dataset
from biotune.errors import InputFormatError, MissingInputError, WeightsError

TINY = {"d_state": 8, "headdim": 8, "chunk_size": 4}


@pytest.fixture(scope="module")
def primary_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("eeg_pre")
    gen = write_dataset(str(root), participants=4, seconds=24, seed=5)
    return build_primary(gen["source"], gen["labels"], str(root) + "/", window_seconds=4, sub_window_seconds=0.5)["path"]


@pytest.fixture(scope="module")
def ckpt_root(primary_path, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("ckpt"))
    pretrain(primary_path, root, d_model=16, n_layers=2, mask_ratio=0.5, style="mae", backbone=TINY, epochs=2,
             batch_size=8, num_threads=1)
    return root


def test_masks():
    gen = torch.Generator().manual_seed(0)
    mask, mode, noise = draw_masks(2000, 10, 0.3, "bert", 6, gen)
    assert (mask.sum(1) == 3).all() and noise.shape == (2000, 10, 6)
    shares = torch.bincount(mode[mask], minlength=3).float() / mask.sum()
    assert abs(shares[0] - 0.8) < 0.03 and abs(shares[1] - 0.1) < 0.02 and abs(shares[2] - 0.1) < 0.02
    mask, mode, noise = draw_masks(5, 10, 0.01, "mae", 6, gen)
    assert (mask.sum(1) == 1).all() and mode is None and noise is None


def test_loss_counts_masked_tokens_only():
    pred = torch.randn(3, 5, 4, requires_grad=True)
    target = torch.randn(3, 5, 4)
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[:, 1] = True
    masked_mse(pred, target, mask, int(mask.sum())).backward()
    assert (pred.grad[:, [0, 2, 3, 4]] == 0).all() and (pred.grad[:, 1] != 0).all()
    expected = ((pred[:, 1] - target[:, 1]) ** 2).mean()
    assert torch.isclose(masked_mse(pred, target, mask, int(mask.sum())), expected)


@pytest.mark.parametrize("style", ["mae", "bert"])
def test_masked_content_is_hidden(style):
    torch.manual_seed(0)
    model = MaskedPretrainer(Mamba2Config(d_model=16, n_layers=1, **TINY), 6, style).eval()
    x = torch.randn(2, 7, 6)
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[:, 3] = True
    mode = torch.zeros(2, 7, dtype=torch.long)  # bert: the masked token is zeroed
    x2 = x.clone()
    x2[:, 3] += 5.0
    with torch.no_grad():
        a, b = model(x, mask, mode, torch.zeros_like(x)), model(x2, mask, mode, torch.zeros_like(x))
    assert torch.allclose(a, b)
    if style == "bert":  # 'keep' (mode 2) lets the content through
        mode[:, 3] = 2
        with torch.no_grad():
            assert not torch.allclose(model(x, mask, mode, x), model(x2, mask, mode, x))


def test_checkpoint_written_and_reproducible(ckpt_root, primary_path, tmp_path):
    name = checkpoint_name(16, 2, 0.5, "mae")
    assert name == "mamba2_eeg_d16_l2_m50_mae"
    cfg = json.loads((Path(ckpt_root) / name / "config.json").read_text())
    assert cfg["backbone"]["d_model"] == 16 and cfg["pretraining"]["style"] == "mae"
    assert cfg["tokens"]["channels"] == ["TP9", "AF7", "AF8", "TP10"] and cfg["tokens"]["token_dim"] == 512
    again = pretrain(primary_path, str(tmp_path), d_model=16, n_layers=2, mask_ratio=0.5, style="mae",
                     backbone=TINY, epochs=2, batch_size=8, num_threads=1)
    assert again["loss"] == cfg["pretraining"]["loss"]  # same seed, same masks, same losses
    bert = pretrain(primary_path, str(tmp_path), d_model=16, n_layers=1, mask_ratio=0.25, style="bert",
                    backbone=TINY, epochs=1, batch_size=8, num_threads=1, participants=["P001", "P002"])
    assert bert["name"] == "mamba2_eeg_d16_l1_m25_bert" and bert["windows"] < again["windows"]
    assert {c["name"] for c in list_checkpoints(str(tmp_path))} == {name, bert["name"]}


def test_discovery_and_errors(ckpt_root, primary_path, tmp_path):
    layout = TokenLayout.of(read_primary(primary_path))
    path = find_checkpoint(16, 2, 0.5, "mae", ckpt_root, layout=layout, backbone={"d_state": 8})
    backbone, cfg = load_checkpoint(path, layout=layout)
    state = torch.load(Path(path) / "backbone.pt", weights_only=True)
    assert all(torch.equal(v, backbone.state_dict()[k]) for k, v in state.items())

    with pytest.raises(MissingInputError) as err:
        find_checkpoint(16, 2, 0.75, "bert", ckpt_root, primary="data/10s.parquet")
    msg = str(err.value)
    assert "mamba2_eeg_d16_l2_m75_bert" in msg and "found: mamba2_eeg_d16_l2_m50_mae" in msg
    assert "biotune eeg pretrain --primary data/10s.parquet --d-model 16 --layers 2 --mask-ratio 0.75 --style bert" in msg

    with pytest.raises(WeightsError, match="d_state: checkpoint 8, expected 128"):
        find_checkpoint(16, 2, 0.5, "mae", ckpt_root, backbone={"d_state": 128})
    other = TokenLayout(layout.channels, 256, layout.fs, 10)
    with pytest.raises(WeightsError, match="tokens.sub_samples: checkpoint 128, dataset 256"):
        find_checkpoint(16, 2, 0.5, "mae", ckpt_root, layout=other)
    with pytest.raises(InputFormatError, match="masking style"):
        find_checkpoint(16, 2, 0.5, "spanbert", ckpt_root)

    # a checkpoint renamed by hand: its config no longer matches its name
    renamed = tmp_path / checkpoint_name(16, 2, 0.9, "mae")
    renamed.mkdir()
    for f in ("config.json", "backbone.pt"):
        (renamed / f).write_bytes((Path(path) / f).read_bytes())
    with pytest.raises(WeightsError, match="mask_ratio: checkpoint 0.5, expected 0.9"):
        find_checkpoint(16, 2, 0.9, "mae", str(tmp_path))
    (renamed / "backbone.pt").write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="cannot be read"):
        load_checkpoint(str(renamed))


def test_cli_pretrain_and_list(primary_path, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="biotune")
    add_commands(parser.add_subparsers(dest="group", required=True))
    args = parser.parse_args(["eeg", "pretrain", "--primary", primary_path, "--out", str(tmp_path), "--d-model", "16",
                              "--layers", "1", "--d-state", "8", "--headdim", "8", "--epochs", "1",
                              "--mask-ratio", "0.3", "--style", "bert"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "mamba2_eeg_d16_l1_m30_bert"
    args = parser.parse_args(["eeg", "checkpoints", "--root", str(tmp_path), "--json"])
    assert args.func(args) == 0 and json.loads(capsys.readouterr().out)[0]["mask_ratio"] == 0.3
