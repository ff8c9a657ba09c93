"""Masked pretraining of the Mamba-2 backbone on EEG windows, and checkpoint discovery.

A parent window is a sequence of tokens, one token per sub-window (channels x samples, scaled
by the training data's per-channel standard deviation). A share ``mask_ratio`` of each
sequence's tokens is masked and a linear decoder reconstructs them; the loss is the mean
squared error over the masked tokens only. Two styles (as in the seed):

- ``mae``: a masked token's embedding is replaced by a learned mask embedding;
- ``bert``: of the masked tokens 80% are zeroed, 10% replaced by Gaussian noise, 10% kept.

Masks and noise are drawn per global batch from a generator seeded by (seed, epoch, batch),
so a run under torchrun sees exactly the masks of a one-process run.

Checkpoints live in ``<root>/mamba2_eeg_d{d_model}_l{layers}_m{mask%}_{style}/`` (config.json +
backbone.pt); the root defaults to ``<BIOTUNE_PRETRAINED>/eeg``. ``find_checkpoint`` finds the
one a fine-tune asks for by its config; when it is missing the error lists those that exist and
the command that makes it, and a checkpoint whose config does not match is refused.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from biotune import settings, storage
from biotune.eeg import distributed
from biotune.eeg.mamba2 import Mamba2Backbone, Mamba2Config, count_parameters
from biotune.eeg.primary import PrimaryDataset, read_primary
from biotune.errors import InputFormatError, MissingInputError, WeightsError

CHECKPOINT_FORMAT = "biotune-eeg-mamba2-checkpoint"
STYLES = ("mae", "bert")
BACKBONE_DEFAULTS = {"d_state": 128, "headdim": 64, "expand": 2, "chunk_size": 64, "d_conv": 4, "ngroups": 1}


# --------------------------------------------------------------------------- tokens
@dataclass(frozen=True)
class TokenLayout:
    """How windows become tokens: which channels, how many samples per token, at what rate."""
    channels: tuple[str, ...]
    sub_samples: int
    fs: float
    n_tokens: int

    @property
    def token_dim(self) -> int:
        return len(self.channels) * self.sub_samples

    @classmethod
    def of(cls, data: PrimaryDataset) -> "TokenLayout":
        return cls(tuple(data.channels), int(data.signals.shape[-1]), float(data.fs), int(data.n_sub))

    def as_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TokenLayout":
        return cls(tuple(d["channels"]), int(d["sub_samples"]), float(d["fs"]), int(d["n_tokens"]))


def channel_scale(x: np.ndarray) -> list[float]:
    """Per-channel standard deviation of windows (k, n_sub, ch, s): the token scale."""
    sd = x.transpose(2, 0, 1, 3).reshape(x.shape[2], -1).std(axis=1)
    return [float(v) if v > 0 else 1.0 for v in sd]


def to_tokens(x: np.ndarray, scale) -> torch.Tensor:
    """(k, n_sub, ch, s) microvolts -> (k, n_sub, ch*s) float32 tokens in units of the channel scale."""
    scale = np.asarray(scale, dtype=np.float32)[None, None, :, None]
    t = (np.asarray(x, dtype=np.float32) / scale).reshape(x.shape[0], x.shape[1], -1)
    return torch.from_numpy(np.ascontiguousarray(t))


# --------------------------------------------------------------------------- model
class MaskedPretrainer(nn.Module):
    def __init__(self, cfg: Mamba2Config, token_dim: int, style: str) -> None:
        super().__init__()
        self.backbone = Mamba2Backbone(cfg, token_dim)
        self.style = style
        self.mask_token = nn.Parameter(torch.zeros(cfg.d_model))
        nn.init.normal_(self.mask_token, std=0.02)
        self.decoder = nn.Linear(cfg.d_model, token_dim)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, mode: torch.Tensor | None = None,
                noise: torch.Tensor | None = None) -> torch.Tensor:
        if self.style == "mae":
            h = self.backbone.embed_tokens(tokens)
            h = torch.where(mask[..., None], self.mask_token.to(h.dtype), h)
        else:  # bert: corrupt the inputs themselves; mode 0 zero, 1 noise, 2 keep
            corrupted = torch.where((mask & (mode == 0))[..., None], torch.zeros_like(tokens), tokens)
            corrupted = torch.where((mask & (mode == 1))[..., None], noise, corrupted)
            h = self.backbone.embed_tokens(corrupted)
        return self.decoder(self.backbone.forward_embedded(h))


def draw_masks(n: int, t: int, ratio: float, style: str, token_dim: int, gen: torch.Generator):
    """(mask (n, t) bool with round(ratio * t) >= 1 masked per row, bert mode (n, t), bert noise)."""
    k = min(t, max(1, int(round(ratio * t))))
    order = torch.rand(n, t, generator=gen).argsort(dim=1)
    mask = torch.zeros(n, t, dtype=torch.bool)
    mask.scatter_(1, order[:, :k], True)
    if style != "bert":
        return mask, None, None
    u = torch.rand(n, t, generator=gen)
    mode = torch.where(u < 0.8, 0, torch.where(u < 0.9, 1, 2))
    noise = torch.randn(n, t, token_dim, generator=gen)
    return mask, mode, noise


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, masked_total: int,
               world: int = 1) -> torch.Tensor:
    """Squared error summed over the masked tokens of this rank, divided by the global number of
    masked values (times the world size, see ``distributed``): unmasked tokens do not count."""
    sq = ((pred - target) ** 2).sum(-1)
    return (sq * mask).sum() * world / (masked_total * target.shape[-1])


def _param_groups(model: nn.Module, weight_decay: float):
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (no_decay if getattr(p, "_no_weight_decay", False) or p.ndim < 2 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# --------------------------------------------------------------------------- checkpoints
def default_root() -> str:
    return str(settings.pretrained_dir() / "eeg")


def checkpoint_name(d_model: int, n_layers: int, mask_ratio: float, style: str) -> str:
    return f"mamba2_eeg_d{int(d_model)}_l{int(n_layers)}_m{int(round(float(mask_ratio) * 100))}_{style}"


def pretrain_command(primary: str, d_model: int, n_layers: int, mask_ratio: float, style: str, root: str) -> str:
    return (f"biotune eeg pretrain --primary {primary} --d-model {d_model} --layers {n_layers} "
            f"--mask-ratio {mask_ratio:g} --style {style} --out {root}")


def list_checkpoints(root: str | None = None) -> list[dict]:
    """Checkpoints under ``root``: name, path and the config fields in the name."""
    root = root or default_root()
    out = []
    for name in storage.listdir(root):
        cfg_uri = storage.join(root, name, "config.json")
        if not storage.exists(cfg_uri):
            continue
        try:
            cfg = storage.read_json(cfg_uri)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        bb, pt = cfg.get("backbone", {}), cfg.get("pretraining", {})
        out.append({"name": name, "path": storage.join(root, name), "d_model": bb.get("d_model"),
                    "n_layers": bb.get("n_layers"), "mask_ratio": pt.get("mask_ratio"), "style": pt.get("style"),
                    "final_loss": pt.get("final_loss")})
    return out


def _validate_style(style: str, mask_ratio: float) -> None:
    if style not in STYLES:
        raise InputFormatError(f"unknown masking style {style!r}", where="style", fix="use mae or bert")
    if not 0.0 < float(mask_ratio) < 1.0:
        raise InputFormatError(f"mask ratio must be in (0, 1); got {mask_ratio}", where="mask_ratio",
                               fix="e.g. 0.5 (half of each window's tokens masked)")


def find_checkpoint(d_model: int, n_layers: int, mask_ratio: float, style: str, root: str | None = None, *,
                    layout: TokenLayout | None = None, backbone: dict | None = None,
                    primary: str = "FILE.parquet") -> str:
    """The checkpoint a fine-tune asks for, checked against the expected token layout and backbone
    settings (any given); typed errors when missing or not matching."""
    _validate_style(style, mask_ratio)
    root = root or default_root()
    name = checkpoint_name(d_model, n_layers, mask_ratio, style)
    path = storage.join(root, name)
    if not storage.exists(storage.join(path, "config.json")):
        existing = [c["name"] for c in list_checkpoints(root)]
        raise MissingInputError(
            f"no pretrained checkpoint {name} (found: {', '.join(existing) if existing else 'none'})",
            where=str(root),
            fix="pretrain it first: " + pretrain_command(primary, d_model, n_layers, mask_ratio, style, root)
                + (" - or fine-tune from one that exists (same d_model/layers/mask/style as its name)" if existing else ""))
    cfg = storage.read_json(storage.join(path, "config.json"))
    check_config(cfg, path, {"d_model": d_model, "n_layers": n_layers, "mask_ratio": mask_ratio, "style": style,
                             **(backbone or {})}, layout)
    return path


def check_config(cfg: dict, where: str, expected: dict, layout: TokenLayout | None = None) -> None:
    if not isinstance(cfg, dict) or cfg.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError("not an EEG Mamba-2 checkpoint (config.json format field)", where=where,
                           fix="point to a directory written by biotune eeg pretrain")
    got = {**cfg.get("backbone", {}), "mask_ratio": cfg.get("pretraining", {}).get("mask_ratio"),
           "style": cfg.get("pretraining", {}).get("style")}
    diffs = []
    for key, want in expected.items():
        have = got.get(key)
        if isinstance(want, float) or isinstance(have, float):
            same = have is not None and math.isclose(float(have), float(want), rel_tol=1e-9, abs_tol=1e-9)
        else:
            same = have == want
        if not same:
            diffs.append(f"{key}: checkpoint {have!r}, expected {want!r}")
    if layout is not None:
        have_layout = cfg.get("tokens", {})
        for key, want in layout.as_dict().items():
            if key == "n_tokens":  # a causal backbone runs on any sequence length
                continue
            have = have_layout.get(key)
            if (list(have) if isinstance(have, (list, tuple)) else have) != want:
                diffs.append(f"tokens.{key}: checkpoint {have!r}, dataset {want!r}")
    if diffs:
        raise WeightsError(
            f"checkpoint config does not match: {'; '.join(diffs)}", where=str(where),
            fix="pretrain a checkpoint for this configuration (biotune eeg pretrain ...) or rebuild the primary "
                "dataset with the checkpoint's channels / sub-window length; checkpoints are not renamed by hand")


def load_checkpoint(path: str, expected: dict | None = None, layout: TokenLayout | None = None
                    ) -> tuple[Mamba2Backbone, dict]:
    """(backbone with the pretrained weights, its config.json) from a checkpoint directory."""
    cfg_uri = storage.join(str(path), "config.json")
    try:
        cfg = storage.read_json(cfg_uri)
    except json.JSONDecodeError as exc:
        raise WeightsError(f"config.json is not JSON: {exc}", where=str(path), fix="pretrain the checkpoint again") from exc
    check_config(cfg, path, expected or {}, layout)
    backbone = Mamba2Backbone(Mamba2Config.from_dict(cfg["backbone"]), int(cfg["tokens"]["token_dim"]))
    with storage.local_copy(storage.join(str(path), "backbone.pt")) as local:
        try:
            state = torch.load(local, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeightsError(f"backbone.pt cannot be read ({type(exc).__name__}: {exc})", where=str(path),
                               fix="pretrain the checkpoint again") from exc
    try:
        backbone.load_state_dict(state)
    except RuntimeError as exc:
        raise WeightsError(f"backbone.pt does not fit its config.json: {str(exc).splitlines()[0]}", where=str(path),
                           fix="config.json and backbone.pt come from different runs: pretrain again") from exc
    return backbone, cfg


# --------------------------------------------------------------------------- training
def _select(data: PrimaryDataset, participants) -> np.ndarray:
    parents, x = data.windows()
    if participants is not None:
        keep = parents["Participant"].isin(set(participants)).to_numpy()
        if not keep.any():
            raise InputFormatError("none of the requested participants are in the primary dataset",
                                   where=data.path or "primary", fix="check the participant ids (split)")
        x = x[keep]
    return x


def pretrain(primary, root: str | None = None, *, d_model: int = 64, n_layers: int = 2, mask_ratio: float = 0.5,
             style: str = "mae", backbone: dict | None = None, epochs: int = 10, batch_size: int = 32,
             lr: float = 1e-3, weight_decay: float = 0.01, seed: int = 0, participants=None,
             progress: Callable[[str], None] | None = None, num_threads: int | None = None) -> dict:
    """Masked pretraining on the primary dataset's windows; writes the checkpoint; returns its summary.

    ``primary``: a path or a ``PrimaryDataset``; ``participants``: train on these only (keep the
    test split out); ``backbone``: Mamba-2 settings other than d_model / n_layers.
    """
    _validate_style(style, mask_ratio)
    ctx = distributed.setup()
    threads = distributed.configure_threads(num_threads)
    data = primary if isinstance(primary, PrimaryDataset) else read_primary(str(primary))
    layout = TokenLayout.of(data)
    x = _select(data, participants)
    scale = channel_scale(x)
    tokens = to_tokens(x, scale)
    n, t, dim = tokens.shape
    cfg = Mamba2Config(d_model=int(d_model), n_layers=int(n_layers), **{**BACKBONE_DEFAULTS, **(backbone or {})})
    torch.manual_seed(seed)
    model = MaskedPretrainer(cfg, dim, style).to(ctx.device)
    net = distributed.wrap(model, ctx)
    opt = torch.optim.AdamW(_param_groups(model, weight_decay), lr=lr)
    steps = max(1, epochs * math.ceil(n / batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    losses: list[float] = []
    t0 = time.perf_counter()
    for epoch in range(int(epochs)):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        total, count = 0.0, 0
        model.train()
        for b, start in enumerate(range(0, n, batch_size)):
            batch = order[start:start + batch_size]
            gen = torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_000_003 + b)
            mask, mode, noise = draw_masks(len(batch), t, mask_ratio, style, dim, gen)
            mine = distributed.share(torch.arange(len(batch)), ctx)
            xb = tokens[batch[mine]].to(ctx.device)
            mb = mask[mine].to(ctx.device)
            pred = net(xb, mb, None if mode is None else mode[mine].to(ctx.device),
                       None if noise is None else noise[mine].to(ctx.device))
            masked_total = int(mask.sum())  # global count: identical on every rank
            loss = masked_mse(pred, xb, mb, masked_total, ctx.world)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            total += float(loss.detach()) / ctx.world * masked_total
            count += masked_total
        epoch_loss = total / max(count, 1)
        if ctx.active:
            import torch.distributed as dist

            box = torch.tensor([epoch_loss], dtype=torch.float64)
            dist.all_reduce(box)
            epoch_loss = float(box[0])
        losses.append(epoch_loss)
        if ctx.main and progress:
            progress(f"pretrain {checkpoint_name(d_model, n_layers, mask_ratio, style)} epoch {epoch + 1}/{epochs} "
                     f"masked MSE {epoch_loss:.4f} ({time.perf_counter() - t0:.1f}s)")
    root = root or default_root()
    name = checkpoint_name(d_model, n_layers, mask_ratio, style)
    path = storage.join(root, name)
    summary = {"name": name, "path": path, "loss": losses, "final_loss": losses[-1] if losses else float("nan"),
               "seconds": time.perf_counter() - t0, "windows": int(n), "threads": threads, "world_size": ctx.world,
               "parameters": count_parameters(model.backbone)}
    if ctx.main:
        config = {
            "format": CHECKPOINT_FORMAT, "version": 1, "name": name, "backbone": cfg.as_dict(),
            "tokens": {**layout.as_dict(), "token_dim": layout.token_dim, "scale": scale},
            "pretraining": {"mask_ratio": float(mask_ratio), "style": style, "epochs": int(epochs),
                            "batch_size": int(batch_size), "lr": float(lr), "weight_decay": float(weight_decay),
                            "seed": int(seed), "loss": losses, "final_loss": summary["final_loss"],
                            "windows": int(n), "participants": None if participants is None else sorted(participants),
                            "dataset": {"path": data.path, "windows": int(data.n_windows)}},
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        with storage.atomic_local_path(storage.join(path, "backbone.pt"), suffix=".pt") as tmp:
            torch.save({k: v.detach().cpu() for k, v in model.backbone.state_dict().items()}, tmp)
        storage.write_json(storage.join(path, "config.json"), config)  # last: marks a complete checkpoint
    distributed.barrier(ctx)
    return summary
