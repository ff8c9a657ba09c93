"""The Pretrained Actigraphy Transformer (PAT) in PyTorch.

Mirrors the official Keras model (njacobsonlab/Pretrained-Actigraphy-Transformer) layer for
layer, so the released PAT-{S,M,L} encoder weights load one to one (see ``pat_weights``):

    inputs (B, 10080) -> reshape (B, N, patch) -> Dense(96) "dense" -> + [sin | cos] position
    -> N x TransformerBlock "encoder_layer_{i}_transformer":
         MultiHeadAttention(heads, key_dim=96) -> Dropout -> LayerNorm(x + a, eps 1e-6)
         -> Dense(256, relu) -> Dense(96) -> Dropout -> LayerNorm(. + .)
    head: GlobalAveragePooling1D -> Dropout(0.1) -> Dense(128, relu) -> Dense(1) (sigmoid)

The classifier returns logits; ``predict_proba`` applies the sigmoid. ``PATScaler`` standardizes
each minute-of-week column on the training split only (no log transform), as in the paper.
``pretrain_mae`` is the masked-autoencoder pretraining for when no released weights exist, and
``finetune`` trains a head in one of three modes: ``full``, ``linear`` (frozen encoder) or
``lora`` (peft LoRA on the attention projections, head trainable).
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from biotune import storage
from biotune.threads import configure_threads  # noqa: F401  (re-exported: callers import it here)
from biotune.errors import InputFormatError, MissingInputError, WeightsError

INPUT_MINUTES = 10_080  # one week of minutes
EMBED_DIM = 96
FF_DIM = 256
LN_EPS = 1e-6
DROPOUT = 0.1
HEAD_HIDDEN = 128
LORA_TARGETS = ("query", "key", "value", "attention_output")
BUNDLE_FORMAT = "biotune-pat-bundle"


@dataclass(frozen=True)
class PATConfig:
    size: str
    patch_size: int
    num_layers: int
    num_heads: int
    embed_dim: int = EMBED_DIM
    key_dim: int = EMBED_DIM
    ff_dim: int = FF_DIM
    dropout: float = DROPOUT
    input_minutes: int = INPUT_MINUTES

    @property
    def num_patches(self) -> int:
        return self.input_minutes // self.patch_size


PAT_CONFIGS: dict[str, PATConfig] = {
    "S": PATConfig("S", patch_size=18, num_layers=1, num_heads=6),
    "M": PATConfig("M", patch_size=18, num_layers=2, num_heads=12),
    "L": PATConfig("L", patch_size=9, num_layers=4, num_heads=12),
}
_ALIASES = {"s": "S", "small": "S", "pat-s": "S", "m": "M", "medium": "M", "pat-m": "M",
            "l": "L", "large": "L", "pat-l": "L"}


def pat_config(size: str | PATConfig) -> PATConfig:
    """The architecture of PAT-S, -M or -L (also accepts small/medium/large, pat-s, ...)."""
    if isinstance(size, PATConfig):
        return size
    key = _ALIASES.get(str(size).strip().lower())
    if key is None:
        raise InputFormatError(f"unknown PAT size {size!r}", where="size",
                               fix="use one of S, M, L (small, medium, large)")
    return PAT_CONFIGS[key]


# --------------------------------------------------------------------------- model
def positional_encoding(num_patches: int, embed_dim: int = EMBED_DIM) -> torch.Tensor:
    """Fixed sin/cos encoding, concatenated [sin | cos] as in the official Keras code."""
    position = torch.arange(num_patches, dtype=torch.float32)[:, None]
    div_term = torch.exp(torch.arange(0, embed_dim, 2, dtype=torch.float32) * (-math.log(10000.0) / embed_dim))
    return torch.cat([torch.sin(position * div_term), torch.cos(position * div_term)], dim=-1)


class KerasMultiHeadAttention(nn.Module):
    """keras.layers.MultiHeadAttention(num_heads, key_dim) as four Linear projections.

    Keras kernels query/key/value (E, H, K) and attention_output (H, K, E) flatten to
    Linear(E, H*K) and Linear(H*K, E); plain Linear layers are what peft's LoRA targets.
    """

    def __init__(self, embed_dim: int, num_heads: int, key_dim: int) -> None:
        super().__init__()
        self.num_heads, self.key_dim = num_heads, key_dim
        inner = num_heads * key_dim
        self.query = nn.Linear(embed_dim, inner)
        self.key = nn.Linear(embed_dim, inner)
        self.value = nn.Linear(embed_dim, inner)
        self.attention_output = nn.Linear(inner, embed_dim)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        return t.view(b, n, self.num_heads, self.key_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        b, n, _ = x.shape
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        if return_attention:
            scores = torch.softmax((q / math.sqrt(self.key_dim)) @ k.transpose(-2, -1), dim=-1)
            ctx = scores @ v
        else:
            scores = None
            ctx = F.scaled_dot_product_attention(q, k, v)  # Keras MHA default dropout is 0
        out = self.attention_output(ctx.transpose(1, 2).reshape(b, n, self.num_heads * self.key_dim))
        return (out, scores) if return_attention else out


class PATBlock(nn.Module):
    """The official TransformerBlock: post-norm attention and feed-forward sublayers."""

    def __init__(self, cfg: PATConfig) -> None:
        super().__init__()
        self.attention = KerasMultiHeadAttention(cfg.embed_dim, cfg.num_heads, cfg.key_dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.norm1 = nn.LayerNorm(cfg.embed_dim, eps=LN_EPS)
        self.ff1 = nn.Linear(cfg.embed_dim, cfg.ff_dim)
        self.ff2 = nn.Linear(cfg.ff_dim, cfg.embed_dim)
        self.dropout2 = nn.Dropout(cfg.dropout)
        self.norm2 = nn.LayerNorm(cfg.embed_dim, eps=LN_EPS)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        if return_attention:
            a, scores = self.attention(x, return_attention=True)
        else:
            a, scores = self.attention(x), None
        out1 = self.norm1(x + self.dropout(a))
        ff = self.dropout2(self.ff2(F.relu(self.ff1(out1))))
        out = self.norm2(out1 + ff)
        return (out, scores) if return_attention else out


class PATEncoder(nn.Module):
    """Patch embedding + fixed position encoding + transformer blocks. (B, 10080) -> (B, N, 96)."""

    def __init__(self, size: str | PATConfig = "S") -> None:
        super().__init__()
        self.config = pat_config(size)
        cfg = self.config
        self.patch_embed = nn.Linear(cfg.patch_size, cfg.embed_dim)
        self.register_buffer("pos_embedding", positional_encoding(cfg.num_patches, cfg.embed_dim), persistent=False)
        self.layers = nn.ModuleList(PATBlock(cfg) for _ in range(cfg.num_layers))

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if x.dim() == 3 and x.shape[-1] == 1:
            x = x[..., 0]
        if x.dim() != 2 or x.shape[1] != cfg.input_minutes:
            raise InputFormatError(
                f"PAT expects input of shape (batch, {cfg.input_minutes}); got {tuple(x.shape)}",
                where="PAT input", fix="pass one week of minute-level activity per row (7 x 1440 minutes)")
        return x.reshape(x.shape[0], cfg.num_patches, cfg.patch_size)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        h = self.patch_embed(self.patchify(x)) + self.pos_embedding
        attention = []
        for layer in self.layers:
            if return_attention:
                h, scores = layer(h, return_attention=True)
                attention.append(scores)
            else:
                h = layer(h)
        return (h, attention) if return_attention else h


class PATHead(nn.Module):
    """GlobalAveragePooling1D -> Dropout(0.1) -> Dense(128, relu) -> Dense(1): one logit."""

    def __init__(self, embed_dim: int = EMBED_DIM, hidden: int = HEAD_HIDDEN, dropout: float = DROPOUT) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(embed_dim, hidden)
        self.out = nn.Linear(hidden, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.dense(self.dropout(h.mean(dim=1))))).squeeze(-1)


class PATClassifier(nn.Module):
    """PAT encoder + the paper's binary head. ``forward`` returns logits of shape (B,)."""

    def __init__(self, size: str | PATConfig = "S") -> None:
        super().__init__()
        self.config = pat_config(size)
        self.encoder = PATEncoder(self.config)
        self.head = PATHead(self.config.embed_dim)
        self.mode = "full"
        self.lora: dict[str, Any] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def pat_parameter_count(size: str | PATConfig, include_head: bool = True) -> int:
    """Parameters of PAT-S/M/L (encoder, plus the classifier head unless ``include_head=False``).

    S 287,265 (encoder 274,720), M 1,005,985 (993,440), L 1,996,737 (1,984,192): the paper's
    285K / 1.00M / 1.99M.
    """
    cfg = pat_config(size)
    e, k, h, f = cfg.embed_dim, cfg.key_dim, cfg.num_heads, cfg.ff_dim
    attention = 3 * (e * h * k + h * k) + (h * k * e + e)
    block = attention + 2 * (2 * e) + (e * f + f) + (f * e + e)
    n = cfg.patch_size * e + e + cfg.num_layers * block
    if include_head:
        n += e * HEAD_HIDDEN + HEAD_HIDDEN + HEAD_HIDDEN + 1
    return n


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


# --------------------------------------------------------------------------- scaler
class PATScaler:
    """StandardScaler per minute-of-week column (10,080 means and stds), no log transform.

    Fit on the training split only. A column with std 0 gets std 1. Missing minutes (NaN) are
    ignored when fitting and become 0 (the column mean) after ``transform``.
    """

    def __init__(self, mean: np.ndarray | None = None, std: np.ndarray | None = None, n_fit: int = 0) -> None:
        self.mean_ = None if mean is None else np.asarray(mean, dtype=np.float64)
        self.std_ = None if std is None else np.asarray(std, dtype=np.float64)
        self.n_fit_ = int(n_fit)

    @staticmethod
    def _check(x, where: str) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != INPUT_MINUTES:
            raise InputFormatError(f"expected an array of shape (participants, {INPUT_MINUTES}); got {x.shape}",
                                   where=where, fix="build one row of 7 x 1440 minutes per participant-week")
        return x

    def fit(self, x) -> "PATScaler":
        x = self._check(x, "PATScaler.fit")
        if x.shape[0] == 0:
            raise InputFormatError("cannot fit a scaler on zero rows", where="PATScaler.fit",
                                   fix="pass the training split (at least one participant-week)")
        with np.errstate(all="ignore"):
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(x, axis=0)
                std = np.nanstd(x, axis=0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
        self.mean_, self.std_, self.n_fit_ = mean, std, int(x.shape[0])
        return self

    def transform(self, x) -> np.ndarray:
        if self.mean_ is None or self.std_ is None:
            raise MissingInputError("PATScaler used before fit", where="PATScaler.transform",
                                    fix="fit it on the training split or load a saved scaler (.npz)")
        x = self._check(x, "PATScaler.transform")
        z = (x - self.mean_) / self.std_
        return np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)

    def fit_transform(self, x) -> np.ndarray:
        return self.fit(x).transform(x)

    def save(self, path: str | os.PathLike) -> str:
        if self.mean_ is None:
            raise MissingInputError("cannot save an unfitted PATScaler", where=str(path), fix="fit it first")
        uri = str(path)
        with storage.atomic_local_path(uri, suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, mean=self.mean_, std=self.std_, n_fit=np.int64(self.n_fit_))
        return uri

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PATScaler":
        uri = str(path)
        with storage.local_copy(uri) as local:
            try:
                with np.load(local) as data:
                    mean, std, n_fit = data["mean"], data["std"], int(data["n_fit"])
            except Exception as exc:  # zipfile/pickle/key errors: not our .npz
                raise InputFormatError(f"not a PATScaler .npz file ({type(exc).__name__}: {exc})", where=uri,
                                       fix="point to the scaler.npz written by PATScaler.save / save_pat_bundle") from exc
        if mean.shape != (INPUT_MINUTES,) or std.shape != (INPUT_MINUTES,):
            raise InputFormatError(f"scaler arrays have shapes {mean.shape}/{std.shape}, expected ({INPUT_MINUTES},)",
                                   where=uri, fix="re-fit and save the scaler")
        return cls(mean, std, n_fit)


# --------------------------------------------------------------------------- helpers


def _as_x(x, name: str) -> torch.Tensor:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2 or arr.shape[1] != INPUT_MINUTES:
        raise InputFormatError(f"{name} has shape {arr.shape}, expected (participants, {INPUT_MINUTES})",
                               where=name, fix="standardize one week of minutes per row with PATScaler")
    if not np.isfinite(arr).all():
        raise InputFormatError(f"{name} holds NaN or infinite values", where=name,
                               fix="pass PATScaler.transform output (it maps missing minutes to 0)")
    return torch.from_numpy(np.ascontiguousarray(arr))


def _as_y(y, n: int, name: str) -> np.ndarray:
    arr = np.asarray(y).reshape(-1)
    if arr.shape[0] != n:
        raise InputFormatError(f"{name} has {arr.shape[0]} labels for {n} rows", where=name,
                               fix="pass one 0/1 label per participant-week")
    if not np.isin(arr, (0, 1)).all():
        raise InputFormatError(f"{name} must be binary 0/1; found values {np.unique(arr)[:5].tolist()}",
                               where=name, fix="encode the label as 0/1")
    return arr.astype(np.float32)


def _say(progress: Callable[[str], None] | None, msg: str) -> None:
    if progress is not None:
        progress(msg)


def _resolve_encoder_state(encoder_state, size: str) -> Mapping[str, torch.Tensor] | None:
    if encoder_state is None or isinstance(encoder_state, Mapping):
        return encoder_state
    from biotune.mood.pat_weights import read_encoder_state  # path to .pt or .h5

    return read_encoder_state(encoder_state, size)


def _load_encoder_state(encoder: PATEncoder, state: Mapping[str, torch.Tensor], where: str = "encoder_state") -> None:
    if any(k.startswith("encoder.") for k in state):  # a classifier's state dict: keep the encoder part
        state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    expected = encoder.state_dict()
    for name, ref in expected.items():
        if name not in state:
            raise WeightsError(f"encoder weights lack tensor {name!r} (expected shape {tuple(ref.shape)})", where=where,
                               fix=f"the weights may be for another size than PAT-{encoder.config.size}: check --size")
        got = tuple(state[name].shape)
        if got != tuple(ref.shape):
            raise WeightsError(f"tensor {name!r}: expected shape {tuple(ref.shape)} for PAT-{encoder.config.size}, "
                               f"found {got}", where=where, fix="the --size may be wrong for this weight file")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise WeightsError(f"encoder weights hold tensors PAT-{encoder.config.size} does not have: {extra[:4]}",
                           where=where, fix="the --size may be wrong for this weight file (a larger PAT?)")
    encoder.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})


# --------------------------------------------------------------------------- MAE pretraining
class PATMaskedAutoencoder(nn.Module):
    """The official MAE: encode the 10% visible patches, decode all with a 1-block decoder."""

    def __init__(self, size: str | PATConfig = "S", mask_ratio: float = 0.9) -> None:
        super().__init__()
        cfg = pat_config(size)
        self.encoder = PATEncoder(cfg)
        self.mask_ratio = float(mask_ratio)
        self.mask_token = nn.Parameter(torch.randn(1, 1, cfg.embed_dim) * 0.05)
        self.decoder = PATBlock(cfg)
        self.decoder_dense = nn.Linear(cfg.embed_dim, cfg.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        enc = self.encoder
        cfg = enc.config
        emb = enc.patch_embed(enc.patchify(x))
        b, n, e = emb.shape
        perm = torch.randperm(n, device=x.device)  # one shuffle per batch, as the official MaskLayer
        n_masked = int(round(self.mask_ratio * n))
        visible = perm[n_masked:]
        h = emb[:, visible] + enc.pos_embedding[visible]
        for layer in enc.layers:
            h = layer(h)
        full = self.mask_token.expand(b, n, e).clone()
        full[:, visible] = h
        y = self.decoder(full + enc.pos_embedding)
        out = 2.0 * torch.tanh(self.decoder_dense(y))  # the official decoder clips at +-2 std
        return out.reshape(b, cfg.input_minutes)


def pretrain_mae(x_std, size: str = "S", epochs: int = 10, batch_size: int = 32, lr: float = 1e-3, seed: int = 0,
                 mask_ratio: float = 0.9, progress: Callable[[str], None] | None = None, *,
                 return_history: bool = False, num_threads: int | None = None):
    """Masked-autoencoder pretraining (mask 90% of patches, MSE on all minutes).

    Returns the encoder ``state_dict`` (keys as ``PATEncoder``), or ``(state, history)`` with
    ``return_history=True`` where history = {"loss": [mean MSE per epoch], "seconds": ...}.
    """
    if not 0.0 < mask_ratio < 1.0:
        raise InputFormatError(f"mask_ratio must be in (0, 1); got {mask_ratio}", where="pretrain_mae",
                               fix="use 0.9 as in the paper")
    configure_threads(num_threads)
    x = _as_x(x_std, "x_std")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = PATMaskedAutoencoder(size, mask_ratio)
    opt = torch.optim.Adam(model.parameters(), lr=lr, eps=1e-7)
    losses: list[float] = []
    t0 = time.perf_counter()
    model.train()
    for epoch in range(1, int(epochs) + 1):
        order = rng.permutation(len(x))
        total, count = 0.0, 0
        for i in range(0, len(order), batch_size):
            xb = x[torch.from_numpy(order[i:i + batch_size])]
            loss = F.mse_loss(model(xb), xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(xb)
            count += len(xb)
        losses.append(total / max(count, 1))
        _say(progress, f"pat-mae epoch {epoch}/{epochs} loss={losses[-1]:.5f} ({time.perf_counter() - t0:.1f}s)")
    state = {k: v.detach().clone() for k, v in model.encoder.state_dict().items()}
    if return_history:
        return state, {"loss": losses, "seconds": time.perf_counter() - t0}
    return state


# --------------------------------------------------------------------------- fine-tuning
def _apply_lora(model: PATClassifier, r: int, alpha: int, dropout: float) -> None:
    from peft import LoraConfig, inject_adapter_in_model

    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(LORA_TARGETS), bias="none")
    inject_adapter_in_model(cfg, model)
    model.lora = {"r": int(r), "alpha": int(alpha), "dropout": float(dropout), "target_modules": list(LORA_TARGETS)}


def _set_mode(model: PATClassifier, mode: str, lora_r: int = 8, lora_alpha: int = 16, lora_dropout: float = 0.0) -> None:
    if mode == "full":
        for p in model.parameters():
            p.requires_grad_(True)
    elif mode == "linear":
        for p in model.encoder.parameters():
            p.requires_grad_(False)
        for p in model.head.parameters():
            p.requires_grad_(True)
    elif mode == "lora":
        if model.lora is None:
            _apply_lora(model, lora_r, lora_alpha, lora_dropout)
        for name, p in model.named_parameters():
            p.requires_grad_("lora_" in name or name.startswith("head."))
    else:
        raise InputFormatError(f"unknown fine-tuning mode {mode!r}", where="mode", fix="use full, linear or lora")
    model.mode = mode


def build_classifier(size: str = "S", mode: str = "full", encoder_state=None, *, lora_r: int = 8,
                     lora_alpha: int = 16, lora_dropout: float = 0.0) -> PATClassifier:
    """A PAT classifier with the encoder weights loaded (state dict, .pt or .h5 path) and the mode set."""
    model = PATClassifier(size)
    state = _resolve_encoder_state(encoder_state, model.config.size)
    if state is not None:
        _load_encoder_state(model.encoder, state)
    _set_mode(model, mode, lora_r, lora_alpha, lora_dropout)
    return model


def _train_forward(model: PATClassifier, xb: torch.Tensor) -> torch.Tensor:
    if model.mode == "linear":  # frozen encoder: deterministic features, no graph
        with torch.no_grad():
            h = model.encoder(xb)
        return model.head(h)
    return model(xb)


def _eval_logits(model: PATClassifier, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]) if len(x) else torch.zeros(0)


def finetune(x_train, y_train, x_val, y_val, *, size: str = "S", mode: str = "full", epochs: int = 20,
             batch_size: int = 32, lr: float = 1e-4, patience: int = 5, encoder_state=None, seed: int = 0,
             progress: Callable[[str], None] | None = None, weight_decay: float = 0.0, lora_r: int = 8,
             lora_alpha: int = 16, lora_dropout: float = 0.0, num_threads: int | None = None):
    """Fine-tune a PAT classifier; returns ``(model, history)``.

    ``x_*`` are standardized (PATScaler) arrays (n, 10080); ``y_*`` 0/1. Class imbalance is
    handled with ``pos_weight = n_neg / n_pos`` of the training split. Early stopping watches
    validation AUC (validation loss when the validation split holds one class only) and the best
    epoch's weights are restored. ``encoder_state``: an encoder state dict, a .pt or a .h5 path,
    or None (random init). ``mode``: full | linear (frozen encoder) | lora (peft LoRA on the
    attention query/key/value/attention_output projections; head trainable).
    """
    from sklearn.metrics import roc_auc_score

    threads = configure_threads(num_threads)
    xt, xv = _as_x(x_train, "x_train"), _as_x(x_val, "x_val")
    yt, yv = _as_y(y_train, len(xt), "y_train"), _as_y(y_val, len(xv), "y_val")
    n_pos, n_neg = float(yt.sum()), float(len(yt) - yt.sum())
    if n_pos == 0 or n_neg == 0:
        raise InputFormatError(f"the training split holds one class only ({int(n_pos)} positive, {int(n_neg)} negative)",
                               where="y_train", fix="use a split with both classes (stratify the split)")
    if len(xv) == 0:
        raise InputFormatError("the validation split is empty", where="x_val", fix="hold out a validation split")
    use_auc = len(np.unique(yv)) == 2
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_classifier(size, mode, encoder_state, lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, eps=1e-7, weight_decay=weight_decay)
    pos_weight = torch.tensor(n_neg / n_pos)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    yt_t, yv_t = torch.from_numpy(yt), torch.from_numpy(yv)

    history: dict[str, Any] = {
        "epoch": [], "train_loss": [], "val_loss": [], "val_auc": [],
        "monitor": "val_auc" if use_auc else "val_loss", "mode": mode, "size": model.config.size,
        "pos_weight": float(pos_weight), "trainable_params": count_parameters(model, trainable_only=True),
        "total_params": count_parameters(model), "threads": threads, "n_train": len(xt), "n_val": len(xv),
    }
    _say(progress, f"pat-{model.config.size} {mode}: {history['trainable_params']:,}/{history['total_params']:,} "
                   f"trainable params, {len(xt)} train / {len(xv)} val, pos_weight={float(pos_weight):.3f}")
    best_score, best_epoch, best_state, bad = -math.inf, 0, None, 0
    t0 = time.perf_counter()
    for epoch in range(1, int(epochs) + 1):
        model.train()
        if mode == "linear":
            model.encoder.eval()
        order = rng.permutation(len(xt))
        total = 0.0
        for i in range(0, len(order), batch_size):
            idx = torch.from_numpy(order[i:i + batch_size])
            loss = loss_fn(_train_forward(model, xt[idx]), yt_t[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        logits = _eval_logits(model, xv, max(batch_size, 64))
        val_loss = float(loss_fn(logits, yv_t))
        val_auc = float(roc_auc_score(yv, torch.sigmoid(logits).numpy())) if use_auc else float("nan")
        history["epoch"].append(epoch)
        history["train_loss"].append(total / len(xt))
        history["val_loss"].append(val_loss)
        history["val_auc"].append(val_auc)
        score = val_auc if use_auc else -val_loss
        improved = score > best_score
        if improved:
            best_score, best_epoch, bad = score, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
        _say(progress, f"epoch {epoch}/{epochs} train_loss={total / len(xt):.4f} val_loss={val_loss:.4f} "
                       f"val_auc={val_auc:.4f}{' *' if improved else ''} ({time.perf_counter() - t0:.1f}s)")
        if bad >= patience:
            _say(progress, f"early stop: no val improvement for {patience} epochs; best epoch {best_epoch}")
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    history.update(best_epoch=best_epoch, best_val_auc=(best_score if use_auc else float("nan")),
                   epochs_run=len(history["epoch"]), stopped_early=len(history["epoch"]) < int(epochs),
                   seconds=time.perf_counter() - t0)
    return model, history


def predict_proba(model: PATClassifier, x_std, batch_size: int = 64) -> np.ndarray:
    """P(label = 1) per row, in eval mode under ``torch.no_grad``."""
    x = _as_x(x_std, "x_std")
    return torch.sigmoid(_eval_logits(model, x, batch_size)).numpy().astype(np.float64)


# --------------------------------------------------------------------------- bundles
def save_pat_bundle(model: PATClassifier, scaler: PATScaler, directory: str | os.PathLike) -> str:
    """Write config.json, model.pt (state dict) and scaler.npz under ``directory``."""
    uri = str(directory)
    config = {"format": BUNDLE_FORMAT, "version": 1, "architecture": asdict(model.config),
              "size": model.config.size, "mode": model.mode, "lora": model.lora}
    with storage.atomic_local_path(storage.join(uri, "model.pt"), suffix=".pt") as tmp:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    scaler.save(storage.join(uri, "scaler.npz"))
    storage.write_json(storage.join(uri, "config.json"), config)  # last: its presence marks a complete bundle
    return uri


def load_pat_bundle(directory: str | os.PathLike) -> tuple[PATClassifier, PATScaler]:
    """Reload ``(model, scaler)`` written by ``save_pat_bundle``; the model is in eval mode."""
    uri = str(directory)
    try:
        config = storage.read_json(storage.join(uri, "config.json"))
    except json.JSONDecodeError as exc:
        raise InputFormatError(f"config.json is not JSON: {exc}", where=uri, fix="re-save the bundle") from exc
    if not isinstance(config, dict) or config.get("format") != BUNDLE_FORMAT:
        raise InputFormatError("not a PAT bundle (config.json format field)", where=uri,
                               fix="point to a directory written by save_pat_bundle")
    model = PATClassifier(config["size"])
    lora = config.get("lora")
    if lora:
        _apply_lora(model, lora["r"], lora["alpha"], lora.get("dropout", 0.0))
    with storage.local_copy(storage.join(uri, "model.pt")) as local:
        try:
            state = torch.load(local, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeightsError(f"model.pt cannot be read ({type(exc).__name__}: {exc})", where=uri,
                               fix="re-save the bundle") from exc
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise WeightsError(f"model.pt does not fit PAT-{config['size']}: {exc}", where=uri,
                           fix="config.json and model.pt come from different models: re-save the bundle") from exc
    model.mode = config.get("mode", "full")
    model.eval()
    scaler = PATScaler.load(storage.join(uri, "scaler.npz"))
    return model, scaler
