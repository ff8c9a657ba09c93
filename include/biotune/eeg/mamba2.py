"""Mamba-2 (state-space duality, SSD) in plain PyTorch: no CUDA kernels, runs anywhere.

One mixer layer (Dao & Gu 2024, the official ``Mamba2`` module's reference path):

    in_proj(u) -> z | xBC | dt
    xBC -> causal depthwise conv (k = d_conv) -> SiLU -> x | B | C
    dt  = softplus(dt + dt_bias);  A = -exp(A_log)  (one scalar per head)
    y   = SSD(x * dt, A * dt, B, C) + D * x
    out = out_proj(RMSNorm(y * silu(z)))          (gated RMSNorm, norm after the gate)

SSD is the scalar-decay state space model  H_t = exp(a_t) H_{t-1} + x_t B_t^T,  y_t = H_t C_t
(H: headdim x d_state per head). ``ssd_chunked`` computes it in chunks: a masked
attention-like product inside each chunk (L = exp(segsum(a))), the state each chunk leaves
behind, a recurrence over chunk totals (one step per chunk), and the contribution of the
carried state to every output. ``ssd_naive`` is the per-step recurrence the chunked form must equal; ``step``
is that recurrence on one token, for streaming inference.

A sequence that is not a multiple of the chunk is padded with x = 0 and a = 0: a zero input
adds nothing to the state and exp(0) = 1 carries it unchanged, so outputs and the final state
are those of the unpadded sequence.

Initialisation follows the official module: A ~ U(1, 16) (A_log = log A), dt ~ exp(U(ln dt_min,
ln dt_max)) clamped at dt_init_floor with dt_bias the inverse softplus of dt, D = 1; the
backbone zeroes Linear biases and rescales each out_proj by 1/sqrt(n_layers) (GPT-2 style
pre-norm residual rescaling, as in mamba_ssm's ``_init_weights``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from biotune.errors import InputFormatError


@dataclass(frozen=True)
class Mamba2Config:
    d_model: int = 64
    n_layers: int = 2
    d_state: int = 128
    d_conv: int = 4
    expand: int = 2
    headdim: int = 64
    ngroups: int = 1
    chunk_size: int = 64
    A_init_range: tuple[float, float] = (1.0, 16.0)
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    dt_init_floor: float = 1e-4
    bias: bool = False
    conv_bias: bool = True
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        problems = []
        if self.d_model < 1 or self.n_layers < 1:
            problems.append("d_model and n_layers must be >= 1")
        if (self.expand * self.d_model) % self.headdim:
            problems.append(f"expand*d_model = {self.expand * self.d_model} is not a multiple of headdim {self.headdim}")
        elif self.nheads % self.ngroups:
            problems.append(f"nheads {self.nheads} is not a multiple of ngroups {self.ngroups}")
        if self.chunk_size < 1 or self.d_conv < 1:
            problems.append("chunk_size and d_conv must be >= 1")
        if problems:
            raise InputFormatError("invalid Mamba-2 configuration: " + "; ".join(problems), where=repr(self),
                                   fix="choose headdim dividing expand*d_model and ngroups dividing the head count")

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def nheads(self) -> int:
        return self.d_inner // self.headdim

    @property
    def conv_dim(self) -> int:
        return self.d_inner + 2 * self.ngroups * self.d_state

    def as_dict(self) -> dict:
        d = asdict(self)
        d["A_init_range"] = list(self.A_init_range)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Mamba2Config":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "A_init_range" in known:
            known["A_init_range"] = tuple(known["A_init_range"])
        return cls(**known)


# --------------------------------------------------------------------------- the SSD scan
def segsum(a: torch.Tensor) -> torch.Tensor:
    """out[..., i, j] = a[j+1] + ... + a[i] for i >= j, -inf above the diagonal.

    Summed from masked copies rather than as cumsum differences, which cancel badly when the
    cumulative decay is large (the stable form of ssd_minimal).
    """
    t = a.shape[-1]
    x = a.unsqueeze(-1).expand(*a.shape, t)  # x[..., k, j] = a[k]
    strict = torch.tril(torch.ones(t, t, dtype=torch.bool, device=a.device), diagonal=-1)
    x = x.masked_fill(~strict, 0.0)
    out = torch.cumsum(x, dim=-2)
    lower = torch.tril(torch.ones(t, t, dtype=torch.bool, device=a.device), diagonal=0)
    return out.masked_fill(~lower, -math.inf)


def _expand_groups(m: torch.Tensor, nheads: int) -> torch.Tensor:
    """(b, l, g, n) -> (b, l, h, n): each group's B/C is shared by nheads/g consecutive heads."""
    g = m.shape[2]
    return m if g == nheads else m.repeat_interleave(nheads // g, dim=2)


def _check_ssd_shapes(x, a, B, C) -> None:
    if x.dim() != 4 or a.dim() != 3 or B.dim() != 4 or C.dim() != 4:
        raise InputFormatError(f"SSD expects x (b,l,h,p), a (b,l,h), B/C (b,l,g,n); got {tuple(x.shape)}, "
                               f"{tuple(a.shape)}, {tuple(B.shape)}, {tuple(C.shape)}", where="ssd",
                               fix="reshape the inputs per head")
    b, l, h, _ = x.shape
    if a.shape != (b, l, h) or B.shape[:2] != (b, l) or B.shape != C.shape or h % B.shape[2]:
        raise InputFormatError(f"SSD input shapes disagree: x {tuple(x.shape)}, a {tuple(a.shape)}, "
                               f"B {tuple(B.shape)}, C {tuple(C.shape)}", where="ssd",
                               fix="a is (b,l,h); B and C are (b,l,g,n) with g dividing h")


def ssd_chunked(x: torch.Tensor, a: torch.Tensor, B: torch.Tensor, C: torch.Tensor, chunk_size: int = 64,
                initial_state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The chunked SSD scan.

    x (b, l, h, p) already multiplied by dt; a (b, l, h) = A * dt (<= 0); B, C (b, l, g, n).
    Returns y (b, l, h, p) and the final state (b, h, p, n). Any l works: the tail is padded
    with x = 0, a = 0 (which leaves both outputs and state unchanged) and cut off again.
    """
    _check_ssd_shapes(x, a, B, C)
    b, l, h, p = x.shape
    n = B.shape[-1]
    q = max(1, min(int(chunk_size), l))  # a short sequence is one chunk: no padding work
    pad = (-l) % q
    if pad:
        x = F.pad(x, (0, 0, 0, 0, 0, pad))
        a = F.pad(a, (0, 0, 0, pad))
        B = F.pad(B, (0, 0, 0, 0, 0, pad))
        C = F.pad(C, (0, 0, 0, 0, 0, pad))
    c = (l + pad) // q
    g = B.shape[2]
    r = h // g  # heads per group: B and C are shared within a group, so C.B is computed once per group
    x = x.reshape(b, c, q, g, r, p)
    B = B.reshape(b, c, q, g, n)
    C = C.reshape(b, c, q, g, n)
    a = a.reshape(b, c, q, g, r).permute(0, 3, 4, 1, 2)  # (b, g, r, c, q)
    H = (torch.zeros(b, g, r, p, n, dtype=x.dtype, device=x.device) if initial_state is None
         else initial_state.to(x.dtype).reshape(b, g, r, p, n))
    # Blocks of chunks, one after the other: every intermediate is a block's size, so the working
    # set stays in cache however long the sequence (all chunks at once spill it from ~2k tokens on,
    # and the cost per token grew with the length).
    block = max(1, CHUNKS_PER_BLOCK)
    ys = []
    for k in range(0, c, block):
        y, H = _ssd_block(x[:, k:k + block], a[..., k:k + block, :], B[:, k:k + block], C[:, k:k + block], H)
        ys.append(y)
    y = torch.cat(ys, dim=1) if len(ys) > 1 else ys[0]
    return y.reshape(b, c * q, h, p)[:, :l], H.reshape(b, h, p, n)


CHUNKS_PER_BLOCK = 4


def _ssd_block(x, a, B, C, H):
    """One block of chunks: x (b, c, q, g, r, p), a (b, g, r, c, q), B/C (b, c, q, g, n), the state
    entering the block H (b, g, r, p, n). Returns y (b, c, q, g, r, p) and the state leaving it."""
    a_cum = torch.cumsum(a, dim=-1)

    # 1. within each chunk: y_i = sum_{j<=i} (C_i . B_j) exp(a_{j+1..i}) x_j
    L = torch.exp(segsum(a))  # (b, g, r, c, q, q)
    scores = torch.einsum("bclgn,bcsgn->bgcls", C, B).unsqueeze(2) * L
    y_diag = torch.einsum("bgrcls,bcsgrp->bclgrp", scores, x)

    # 2. the state each chunk leaves behind from its own inputs (x scaled by its decay to the chunk end)
    decay_to_end = torch.exp(a_cum[..., -1:] - a_cum)  # (b, g, r, c, q)
    x_end = x * decay_to_end.permute(0, 3, 4, 1, 2).unsqueeze(-1)  # (b, c, q, g, r, p)
    states = torch.einsum("bclgn,bclgrp->bcgrpn", B, x_end)

    # 3. recurrence over chunk totals: the state entering each chunk. A loop over chunks keeps it
    #    linear in the length (the all-pairs form of ssd_minimal costs c^2 * h * p * n).
    total = torch.exp(a_cum[..., -1]).permute(0, 3, 1, 2)[..., None, None]  # (b, c, g, r, 1, 1)
    entering = []
    for k in range(x.shape[1]):
        entering.append(H)
        H = total[:, k] * H + states[:, k]
    entering = torch.stack(entering, dim=1)  # (b, c, g, r, p, n)

    # 4. the entering state's contribution to each output of the chunk
    y_off = torch.einsum("bclgn,bcgrpn->bclgrp", C, entering) * torch.exp(a_cum).permute(0, 3, 4, 1, 2).unsqueeze(-1)
    return y_diag + y_off, H


def ssd_naive(x: torch.Tensor, a: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
              initial_state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-step recurrence H_t = exp(a_t) H_{t-1} + x_t B_t^T, y_t = H_t C_t (the reference)."""
    _check_ssd_shapes(x, a, B, C)
    b, l, h, p = x.shape
    B, C = _expand_groups(B, h), _expand_groups(C, h)
    H = (torch.zeros(b, h, p, B.shape[-1], dtype=x.dtype, device=x.device) if initial_state is None
         else initial_state.to(x.dtype))
    ys = []
    for t in range(l):
        H = torch.exp(a[:, t])[..., None, None] * H + x[:, t, :, :, None] * B[:, t, :, None, :]
        ys.append(torch.einsum("bhpn,bhn->bhp", H, C[:, t]))
    y = torch.stack(ys, dim=1) if ys else x.new_zeros(b, 0, h, p)
    return y, H


# --------------------------------------------------------------------------- the layer
class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class GatedRMSNorm(nn.Module):
    """RMSNorm(y * silu(z)) per group of ``group_size`` channels (norm_before_gate=False)."""

    def __init__(self, d: int, group_size: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps, self.group_size = eps, group_size
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = y * F.silu(z)
        shape = y.shape
        g = y.reshape(*shape[:-1], shape[-1] // self.group_size, self.group_size)
        g = g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + self.eps)
        return g.reshape(shape) * self.weight


class LayerState(NamedTuple):
    """What a layer carries between tokens: the last d_conv conv inputs and the SSM state."""
    conv: torch.Tensor  # (b, conv_dim, d_conv)
    ssm: torch.Tensor   # (b, nheads, headdim, d_state)


class Mamba2(nn.Module):
    """One Mamba-2 mixer: (b, l, d_model) -> (b, l, d_model)."""

    def __init__(self, cfg: Mamba2Config) -> None:
        super().__init__()
        self.cfg = cfg
        d_in_proj = 2 * cfg.d_inner + 2 * cfg.ngroups * cfg.d_state + cfg.nheads  # [z, x, B, C, dt]
        self.in_proj = nn.Linear(cfg.d_model, d_in_proj, bias=cfg.bias)
        # Depthwise; padded by hand (left only) so a carried conv state can stand in for the zeros.
        self.conv1d = nn.Conv1d(cfg.conv_dim, cfg.conv_dim, kernel_size=cfg.d_conv, groups=cfg.conv_dim,
                                bias=cfg.conv_bias)
        dt = torch.exp(torch.rand(cfg.nheads) * (math.log(cfg.dt_max) - math.log(cfg.dt_min)) + math.log(cfg.dt_min))
        dt = torch.clamp(dt, min=cfg.dt_init_floor)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        A = torch.empty(cfg.nheads).uniform_(*cfg.A_init_range)
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(cfg.nheads))
        for p in (self.dt_bias, self.A_log, self.D):
            p._no_weight_decay = True
        self.norm = GatedRMSNorm(cfg.d_inner, group_size=cfg.d_inner // cfg.ngroups, eps=cfg.norm_eps)
        self.out_proj = nn.Linear(cfg.d_inner, cfg.d_model, bias=cfg.bias)

    def _split(self, zxbcdt: torch.Tensor):
        cfg = self.cfg
        return torch.split(zxbcdt, [cfg.d_inner, cfg.conv_dim, cfg.nheads], dim=-1)

    def _split_xbc(self, xbc: torch.Tensor):
        cfg = self.cfg
        gn = cfg.ngroups * cfg.d_state
        x, B, C = torch.split(xbc, [cfg.d_inner, gn, gn], dim=-1)
        return x, B, C

    def init_state(self, batch: int, dtype=None, device=None) -> LayerState:
        cfg = self.cfg
        dtype = dtype or self.in_proj.weight.dtype
        device = device or self.in_proj.weight.device
        return LayerState(torch.zeros(batch, cfg.conv_dim, cfg.d_conv, dtype=dtype, device=device),
                          torch.zeros(batch, cfg.nheads, cfg.headdim, cfg.d_state, dtype=dtype, device=device))

    def forward(self, u: torch.Tensor, state: LayerState | None = None, return_state: bool = False):
        cfg = self.cfg
        b, l, _ = u.shape
        z, xbc, dt = self._split(self.in_proj(u))
        xbc_t = xbc.transpose(1, 2)  # (b, conv_dim, l)
        if state is None:
            padded = F.pad(xbc_t, (cfg.d_conv - 1, 0))
        else:  # continue a stream: the previous inputs take the place of the zero padding
            padded = torch.cat([state.conv[..., 1:], xbc_t], dim=-1)
        xbc = F.silu(F.conv1d(padded, self.conv1d.weight, self.conv1d.bias, groups=cfg.conv_dim)).transpose(1, 2)
        x, B, C = self._split_xbc(xbc)
        dt = F.softplus(dt + self.dt_bias)  # (b, l, h)
        A = -torch.exp(self.A_log)
        x = x.reshape(b, l, cfg.nheads, cfg.headdim)
        y, ssm_state = ssd_chunked(x * dt.unsqueeze(-1), A * dt, B.reshape(b, l, cfg.ngroups, cfg.d_state),
                                   C.reshape(b, l, cfg.ngroups, cfg.d_state), cfg.chunk_size,
                                   initial_state=None if state is None else state.ssm)
        y = y + x * self.D[:, None]
        out = self.out_proj(self.norm(y.reshape(b, l, cfg.d_inner), z))
        if return_state:  # the last d_conv inputs (the zero padding when fewer were seen)
            return out, LayerState(padded[..., -cfg.d_conv:], ssm_state)
        return out

    def step(self, u: torch.Tensor, state: LayerState) -> tuple[torch.Tensor, LayerState]:
        """One token: u (b, d_model) -> (b, d_model), with the carried state updated."""
        cfg = self.cfg
        b = u.shape[0]
        z, xbc, dt = self._split(self.in_proj(u))
        conv = torch.cat([state.conv[..., 1:], xbc.unsqueeze(-1)], dim=-1)  # shift in the new input
        xbc = (conv * self.conv1d.weight[:, 0, :]).sum(-1)
        if self.conv1d.bias is not None:
            xbc = xbc + self.conv1d.bias
        x, B, C = self._split_xbc(F.silu(xbc))
        dt = F.softplus(dt + self.dt_bias)  # (b, h)
        A = -torch.exp(self.A_log)
        x = x.reshape(b, cfg.nheads, cfg.headdim)
        B = _expand_groups(B.reshape(b, 1, cfg.ngroups, cfg.d_state), cfg.nheads)[:, 0]
        C = _expand_groups(C.reshape(b, 1, cfg.ngroups, cfg.d_state), cfg.nheads)[:, 0]
        H = torch.exp(A * dt)[..., None, None] * state.ssm + (x * dt[..., None])[..., None] * B[:, :, None, :]
        y = torch.einsum("bhpn,bhn->bhp", H, C) + x * self.D[:, None]
        out = self.out_proj(self.norm(y.reshape(b, cfg.d_inner), z))
        return out, LayerState(conv, H)


# --------------------------------------------------------------------------- the backbone
class Mamba2Block(nn.Module):
    """Pre-norm residual block: x + Mamba2(RMSNorm(x))."""

    def __init__(self, cfg: Mamba2Config) -> None:
        super().__init__()
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mixer = Mamba2(cfg)

    def forward(self, x, state: LayerState | None = None, return_state: bool = False):
        if return_state:
            y, st = self.mixer(self.norm(x), state, return_state=True)
            return x + y, st
        return x + self.mixer(self.norm(x), state)

    def step(self, x, state: LayerState):
        y, st = self.mixer.step(self.norm(x), state)
        return x + y, st


class Mamba2Backbone(nn.Module):
    """Tokens (b, l, token_dim) -> Linear embedding -> n_layers blocks -> RMSNorm -> (b, l, d_model)."""

    def __init__(self, cfg: Mamba2Config, token_dim: int) -> None:
        super().__init__()
        self.cfg, self.token_dim = cfg, int(token_dim)
        self.embed = nn.Linear(self.token_dim, cfg.d_model)
        self.layers = nn.ModuleList(Mamba2Block(cfg) for _ in range(cfg.n_layers))
        self.norm_f = RMSNorm(cfg.d_model, cfg.norm_eps)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for layer in self.layers:  # one residual branch per layer (no MLP): divide by sqrt(n_layers)
            w = layer.mixer.out_proj.weight
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
            with torch.no_grad():
                w /= math.sqrt(self.cfg.n_layers)

    def _check(self, tokens: torch.Tensor) -> None:
        if tokens.dim() != 3 or tokens.shape[-1] != self.token_dim:
            raise InputFormatError(f"backbone expects tokens of shape (batch, length, {self.token_dim}); "
                                   f"got {tuple(tokens.shape)}", where="Mamba2Backbone",
                                   fix="tokenise each window with the checkpoint's channels and samples per token")

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        self._check(tokens)
        return self.embed(tokens)

    def forward_embedded(self, h: torch.Tensor, states: list[LayerState] | None = None, return_state: bool = False):
        new_states = []
        for i, layer in enumerate(self.layers):
            if return_state:
                h, st = layer(h, None if states is None else states[i], return_state=True)
                new_states.append(st)
            else:
                h = layer(h, None if states is None else states[i])
        h = self.norm_f(h)
        return (h, new_states) if return_state else h

    def forward(self, tokens: torch.Tensor, states: list[LayerState] | None = None, return_state: bool = False):
        return self.forward_embedded(self.embed_tokens(tokens), states, return_state)

    def init_states(self, batch: int) -> list[LayerState]:
        return [layer.mixer.init_state(batch) for layer in self.layers]

    def step(self, token: torch.Tensor, states: list[LayerState]) -> tuple[torch.Tensor, list[LayerState]]:
        """Streaming: one token (b, token_dim) -> its output (b, d_model) and the new states."""
        h = self.embed(token)
        new_states = []
        for layer, st in zip(self.layers, states):
            h, st = layer.step(h, st)
            new_states.append(st)
        return self.norm_f(h), new_states


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
