"""PAT in PyTorch: shapes, parameter counts, scaler, MAE pretraining and the fine-tuning modes.

Kept small (PAT-S, tens of samples, batch 16) so the file runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from biotune.errors import InputFormatError, MissingInputError, WeightsError
from biotune.mood.pat import (
    PATClassifier,
    PATEncoder,
    PATScaler,
    build_classifier,
    count_parameters,
    finetune,
    load_pat_bundle,
    pat_config,
    pat_parameter_count,
    positional_encoding,
    predict_proba,
    pretrain_mae,
    save_pat_bundle,
)

MINUTES = 10_080


def planted(n: int, seed: int, shift: float = 0.6):
    """Random weeks; label-1 rows are more active from midnight to 6 am every day."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype(int)
    rng.shuffle(y)
    x = rng.gamma(2.0, 1.0, size=(n, MINUTES)).astype("float32")
    night = np.zeros(MINUTES, bool)
    for d in range(7):
        night[d * 1440: d * 1440 + 360] = True
    x[np.ix_(y == 1, night)] += shift * 1.4
    return x, y


@pytest.fixture(scope="module")
def data():
    xt, yt = planted(64, 0)
    xv, yv = planted(32, 1)
    scaler = PATScaler().fit(xt)
    return scaler.transform(xt), yt, scaler.transform(xv), yv, scaler


@pytest.fixture(scope="module")
def full_run(data):
    xt, yt, xv, yv, _ = data
    lines: list[str] = []
    model, hist = finetune(xt, yt, xv, yv, size="S", mode="full", epochs=2, batch_size=16, lr=1e-3,
                           patience=3, seed=0, progress=lines.append)
    return model, hist, lines


# ----------------------------------------------------------------- architecture
def test_configs():
    assert [(c.patch_size, c.num_layers, c.num_heads, c.num_patches) for c in map(pat_config, "SML")] == [
        (18, 1, 6, 560), (18, 2, 12, 560), (9, 4, 12, 1120)]
    assert pat_config("large") is pat_config("L")
    with pytest.raises(InputFormatError):
        pat_config("XL")


def test_param_counts_exact():
    # encoder + head; the paper rounds these to 285K / 1.00M / 1.99M
    assert [pat_parameter_count(s) for s in "SML"] == [287_265, 1_005_985, 1_996_737]
    assert [pat_parameter_count(s, include_head=False) for s in "SML"] == [274_720, 993_440, 1_984_192]
    for s in "SML":
        assert count_parameters(PATClassifier(s)) == pat_parameter_count(s)
        assert count_parameters(PATEncoder(s)) == pat_parameter_count(s, include_head=False)


def test_keras_layout_of_attention():
    att = PATEncoder("M").layers[0].attention
    assert att.query.weight.shape == (12 * 96, 96) and att.query.bias.shape == (12 * 96,)
    assert att.attention_output.weight.shape == (96, 12 * 96) and att.attention_output.bias.shape == (96,)
    block = PATEncoder("S").layers[0]
    assert block.norm1.eps == 1e-6 and block.norm2.eps == 1e-6
    assert block.ff1.out_features == 256 and block.dropout.p == 0.1


def test_positional_encoding_is_sin_then_cos():
    pe = positional_encoding(560, 96)
    assert pe.shape == (560, 96)
    assert torch.all(pe[0, :48] == 0) and torch.all(pe[0, 48:] == 1)
    assert math.isclose(pe[1, 0].item(), math.sin(1.0), rel_tol=1e-6)
    assert math.isclose(pe[1, 48].item(), math.cos(1.0), rel_tol=1e-6)


def test_shapes():
    torch.manual_seed(0)
    x = torch.randn(2, MINUTES)
    enc = PATEncoder("S").eval()
    with torch.no_grad():
        h, att = enc(x, return_attention=True)
        assert h.shape == (2, 560, 96)
        assert len(att) == 1 and att[0].shape == (2, 6, 560, 560)
        assert torch.allclose(enc(x), h, atol=1e-5)  # SDPA path == explicit attention path
        assert PATEncoder("L").eval()(x).shape == (2, 1120, 96)
        assert PATClassifier("S").eval()(x).shape == (2,)
        assert PATClassifier("S").eval()(x[..., None]).shape == (2,)  # (B, 10080, 1) accepted
    with pytest.raises(InputFormatError):
        enc(torch.randn(2, 1440))


# ----------------------------------------------------------------- scaler
def test_scaler_fit_transform_save(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 2.0, size=(20, MINUTES))
    x[:, 7] = 3.0  # constant column: std 0 -> 1
    x[0, 9] = np.nan  # missing minute: ignored in fit, 0 after transform
    sc = PATScaler().fit(x)
    assert sc.mean_.shape == (MINUTES,) and sc.std_.shape == (MINUTES,) and sc.n_fit_ == 20
    assert sc.std_[7] == 1.0 and sc.mean_[7] == 3.0
    z = sc.transform(x)
    assert z.dtype == np.float32 and np.isfinite(z).all()
    assert z[0, 9] == 0 and np.all(z[:, 7] == 0)
    assert np.allclose(z[:, 100].mean(), 0, atol=1e-5) and np.isclose(z[:, 100].std(), 1, atol=1e-4)
    ref = (x[:, 100] - x[:, 100].mean()) / x[:, 100].std()  # StandardScaler: population std, no log
    assert np.allclose(z[:, 100], ref, atol=1e-5)
    path = sc.save(tmp_path / "scaler.npz")
    back = PATScaler.load(path)
    assert np.array_equal(back.transform(x), z) and back.n_fit_ == 20
    with pytest.raises(InputFormatError):
        sc.transform(x[:, :1440])
    with pytest.raises(MissingInputError):
        PATScaler().transform(x)
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(InputFormatError):
        PATScaler.load(tmp_path / "bad.npz")


# ----------------------------------------------------------------- fine-tuning
def test_full_finetune_learns_planted_signal(data, full_run):
    _, _, xv, yv, _ = data
    model, hist, lines = full_run
    assert hist["epochs_run"] == 2 and hist["monitor"] == "val_auc"
    assert hist["best_val_auc"] > 0.7
    assert hist["trainable_params"] == hist["total_params"] == 287_265
    assert math.isclose(hist["pos_weight"], 1.0)
    p = predict_proba(model, xv, batch_size=16)
    assert p.shape == (32,) and np.all((p >= 0) & (p <= 1))
    # the best epoch's weights are the ones returned
    assert math.isclose(roc_auc_score(yv, p), hist["best_val_auc"], abs_tol=1e-6)
    assert any(line.startswith("epoch 1/2") for line in lines)
    assert not model.training


def test_bundle_roundtrip(data, full_run, tmp_path):
    xt, _, xv, _, scaler = data
    model = full_run[0]
    save_pat_bundle(model, scaler, tmp_path / "bundle")
    assert {p.name for p in (tmp_path / "bundle").iterdir()} == {"config.json", "model.pt", "scaler.npz"}
    model2, scaler2 = load_pat_bundle(tmp_path / "bundle")
    assert np.array_equal(scaler2.mean_, scaler.mean_)
    assert np.allclose(predict_proba(model2, xv), predict_proba(model, xv), atol=1e-6)
    with pytest.raises(Exception) as err:
        load_pat_bundle(tmp_path / "nowhere")
    assert isinstance(err.value, (MissingInputError, InputFormatError))


def test_linear_mode_freezes_encoder(data):
    xt, yt, xv, yv, _ = data
    torch.manual_seed(0)
    before = {k: v.clone() for k, v in PATEncoder("S").state_dict().items()}
    model, hist = finetune(xt, yt, xv, yv, size="S", mode="linear", epochs=2, batch_size=16, lr=1e-3,
                           patience=3, encoder_state=before)
    assert hist["trainable_params"] == 12_545  # head only: 96*128+128 + 128+1
    assert all(not p.requires_grad for p in model.encoder.parameters())
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert hist["best_val_auc"] > 0.7


def test_lora_trains_fewer_params_and_reloads(data, tmp_path):
    xt, yt, xv, yv, scaler = data
    base = PATEncoder("S").state_dict()
    model, hist = finetune(xt[:32], yt[:32], xv, yv, size="S", mode="lora", epochs=1, batch_size=16, lr=1e-3,
                           patience=2, encoder_state=base, lora_r=4)
    assert 12_545 < hist["trainable_params"] < pat_parameter_count("S") // 4
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("lora_A" in n for n in names) and any(n.startswith("head.") for n in names)
    assert all("lora_" in n or n.startswith("head.") for n in names)
    q = model.encoder.layers[0].attention.query
    assert torch.equal(q.base_layer.weight, base["layers.0.attention.query.weight"])  # base frozen
    save_pat_bundle(model, scaler, tmp_path / "lora_bundle")
    model2, _ = load_pat_bundle(tmp_path / "lora_bundle")
    assert model2.mode == "lora" and model2.lora["r"] == 4
    assert np.allclose(predict_proba(model2, xv), predict_proba(model, xv), atol=1e-6)


def test_early_stopping_restores_and_stops(data):
    xt, yt, xv, yv, _ = data
    # lr 0: validation AUC never improves after epoch 1 -> stop after 1 + patience epochs
    _, hist = finetune(xt[:16], yt[:16], xv, yv, size="S", mode="linear", epochs=6, batch_size=16, lr=0.0,
                       patience=2)
    assert hist["epochs_run"] == 3 and hist["stopped_early"] and hist["best_epoch"] == 1


def test_finetune_rejects_bad_input(data):
    xt, yt, xv, yv, _ = data
    with pytest.raises(InputFormatError, match="one class"):
        finetune(xt, np.zeros_like(yt), xv, yv, size="S", epochs=1)
    with pytest.raises(InputFormatError):
        finetune(xt, yt, xv, yv, size="S", mode="adapter", epochs=1)
    with pytest.raises(InputFormatError):
        finetune(xt[:, :100], yt, xv, yv, size="S", epochs=1)
    bad = xt.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputFormatError, match="NaN"):
        finetune(bad, yt, xv, yv, size="S", epochs=1)
    with pytest.raises(WeightsError):  # an M encoder state into an S model
        build_classifier("S", "full", PATEncoder("M").state_dict())


def test_encoder_state_from_pt_path_or_classifier_state(tmp_path):
    src = PATClassifier("S")
    torch.save(src.state_dict(), tmp_path / "clf.pt")  # a whole classifier: the encoder part is used
    for state in (tmp_path / "clf.pt", str(tmp_path / "clf.pt"), src.state_dict()):
        model = build_classifier("S", "linear", state)
        assert torch.equal(model.encoder.layers[0].ff1.weight, src.encoder.layers[0].ff1.weight)


# ----------------------------------------------------------------- MAE pretraining
def test_pretraining_reduces_loss():
    rng = np.random.default_rng(3)
    t = np.arange(MINUTES) / 1440.0
    phase = rng.uniform(0, 2 * np.pi, size=(16, 1))
    x = (np.sin(2 * np.pi * t + phase) + 0.3 * rng.normal(size=(16, MINUTES))).astype("float32")
    lines: list[str] = []
    state, hist = pretrain_mae(x, "S", epochs=4, batch_size=8, lr=2e-3, seed=0, mask_ratio=0.9,
                               progress=lines.append, return_history=True)
    assert len(hist["loss"]) == 4 and hist["loss"][-1] < hist["loss"][0]
    assert len(lines) == 4
    enc = PATEncoder("S")
    enc.load_state_dict(state)  # keys fit the encoder exactly
    model = build_classifier("S", "linear", state)
    assert torch.equal(model.encoder.patch_embed.weight, state["patch_embed.weight"])
