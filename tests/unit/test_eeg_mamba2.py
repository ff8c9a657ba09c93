"""Mamba-2 (SSD): the chunked scan equals the per-step recurrence; streaming equals the full pass."""

from __future__ import annotations

import math

import pytest
import torch

from biotune.eeg.mamba2 import (Mamba2, Mamba2Backbone, Mamba2Config, count_parameters, segsum, ssd_chunked,
                                ssd_naive)
from biotune.errors import InputFormatError


def _inputs(b=2, l=50, h=4, p=3, g=2, n=5, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, l, h, p, generator=gen, dtype=dtype)
    dt = torch.nn.functional.softplus(torch.randn(b, l, h, generator=gen, dtype=dtype) - 1)
    A = -torch.exp(torch.rand(h, generator=gen, dtype=dtype))
    B = torch.randn(b, l, g, n, generator=gen, dtype=dtype)
    C = torch.randn(b, l, g, n, generator=gen, dtype=dtype)
    return x * dt[..., None], A * dt, B, C


@pytest.mark.parametrize("l,chunk", [(64, 16), (50, 16), (7, 16), (33, 1), (40, 40)])
def test_chunked_equals_naive_recurrence(l, chunk):
    x, a, B, C = _inputs(l=l)
    y_ref, h_ref = ssd_naive(x, a, B, C)
    y, h = ssd_chunked(x, a, B, C, chunk_size=chunk)
    assert y.shape == y_ref.shape and h.shape == h_ref.shape
    assert torch.allclose(y, y_ref, atol=1e-10, rtol=0)
    assert torch.allclose(h, h_ref, atol=1e-10, rtol=0)


def test_chunked_with_initial_state_and_strong_decay():
    x, a, B, C = _inputs(l=48, seed=3)
    a = a * 20  # cumulative decays far below exp(-700) inside a chunk: segsum must stay finite
    h0 = torch.randn(2, 4, 3, 5, dtype=torch.float64)
    y_ref, h_ref = ssd_naive(x, a, B, C, initial_state=h0)
    y, h = ssd_chunked(x, a, B, C, chunk_size=16, initial_state=h0)
    assert torch.isfinite(y).all()
    assert torch.allclose(y, y_ref, atol=1e-10, rtol=0) and torch.allclose(h, h_ref, atol=1e-10, rtol=0)


def test_padding_with_zero_input_and_zero_decay_changes_nothing():
    x, a, B, C = _inputs(l=37)
    y, h = ssd_chunked(x, a, B, C, chunk_size=8)
    pad = 11
    xp = torch.nn.functional.pad(x, (0, 0, 0, 0, 0, pad))
    ap = torch.nn.functional.pad(a, (0, 0, 0, pad))
    Bp = torch.cat([B, torch.randn(2, pad, 2, 5, dtype=B.dtype)], 1)  # whatever B/C hold there
    Cp = torch.cat([C, torch.randn(2, pad, 2, 5, dtype=C.dtype)], 1)
    yp, hp = ssd_chunked(xp, ap, Bp, Cp, chunk_size=8)
    assert torch.allclose(yp[:, :37], y, atol=1e-12, rtol=0)
    assert torch.allclose(hp, h, atol=1e-12, rtol=0)
    # a non-zero decay in the padding would change the state: the invariance is not vacuous
    ap2 = ap.clone()
    ap2[:, 37:] = -0.5
    _, h2 = ssd_chunked(xp, ap2, Bp, Cp, chunk_size=8)
    assert not torch.allclose(h2, h, atol=1e-6)


def test_segsum():
    a = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    s = segsum(a)
    assert s[2, 0] == 5.0 and s[2, 1] == 3.0 and s[1, 1] == 0.0 and s[0, 2] == -math.inf


def _tiny(**kw):
    return Mamba2Config(**{"d_model": 16, "n_layers": 2, "d_state": 8, "headdim": 8, "chunk_size": 8, **kw})


def test_official_initialisation():
    torch.manual_seed(0)
    cfg = _tiny(d_model=64, headdim=4)  # 32 heads: enough draws to check the ranges
    layer = Mamba2(cfg)
    A = torch.exp(layer.A_log)
    assert A.min() >= 1.0 and A.max() <= 16.0
    dt = torch.nn.functional.softplus(layer.dt_bias)
    assert dt.min() >= 1e-4 - 1e-9 and dt.max() <= 0.1 + 1e-7 and dt.min() < 0.05
    assert torch.all(layer.D == 1.0)
    assert layer.in_proj.weight.shape == (2 * 128 + 2 * 8 + 32, 64)
    assert layer.conv1d.weight.shape == (128 + 16, 1, 4)


def test_step_mode_equals_full_forward():
    torch.manual_seed(1)
    cfg = _tiny(ngroups=2)
    model = Mamba2Backbone(cfg, token_dim=6).double().eval()
    tokens = torch.randn(3, 21, 6, dtype=torch.float64)
    with torch.no_grad():
        full = model(tokens)
        states = model.init_states(3)
        states = [type(s)(s.conv.double(), s.ssm.double()) for s in states]
        outs = []
        for t in range(tokens.shape[1]):
            o, states = model.step(tokens[:, t], states)
            outs.append(o)
    assert torch.allclose(torch.stack(outs, 1), full, atol=1e-10, rtol=0)


def test_stream_in_pieces_equals_one_pass():
    torch.manual_seed(2)
    model = Mamba2Backbone(_tiny(), token_dim=5).double().eval()
    tokens = torch.randn(2, 30, 5, dtype=torch.float64)
    with torch.no_grad():
        full, final = model(tokens, return_state=True)
        a, st = model(tokens[:, :13], return_state=True)
        b, st2 = model(tokens[:, 13:], states=st, return_state=True)
        # then one more token by step from the carried state
        extra = torch.randn(2, 5, dtype=torch.float64)
        step_out, _ = model.step(extra, st2)
        ref = model(torch.cat([tokens, extra[:, None]], 1))[:, -1]
    assert torch.allclose(torch.cat([a, b], 1), full, atol=1e-10, rtol=0)
    for s, f in zip(st2, final):
        assert torch.allclose(s.ssm, f.ssm, atol=1e-10) and torch.allclose(s.conv, f.conv, atol=1e-12)
    assert torch.allclose(step_out, ref, atol=1e-10, rtol=0)


def test_causal_and_trains():
    torch.manual_seed(3)
    model = Mamba2Backbone(_tiny(), token_dim=4)
    x = torch.randn(2, 12, 4)
    y1 = model(x)
    x2 = x.clone()
    x2[:, 8:] += 1.0
    y2 = model(x2)
    assert torch.allclose(y1[:, :8], y2[:, :8], atol=1e-6) and not torch.allclose(y1[:, 8:], y2[:, 8:])
    y1.pow(2).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert count_parameters(model) > 0


def test_bad_config_and_input():
    with pytest.raises(InputFormatError, match="headdim"):
        Mamba2Config(d_model=10, headdim=8)
    model = Mamba2Backbone(_tiny(), token_dim=4)
    with pytest.raises(InputFormatError, match="token"):
        model(torch.randn(2, 5, 3))
