"""Released PAT Keras weights (.h5) to PyTorch, and loading encoder weights from .pt or .h5.

The released PAT-{S,M,L}_29k_weights.h5 files use the legacy Keras 2 HDF5 layout: one top-level
group per layer of the encoder model, each holding its weights under their Keras names, e.g.

    dense/dense/kernel:0                                                    (patch, 96)
    encoder_layer_1_transformer/encoder_layer_1_attention/query/kernel:0    (96, heads, 96)
    encoder_layer_1_transformer/encoder_layer_1_attention/query/bias:0      (heads, 96)
    ...                         encoder_layer_1_attention/attention_output/kernel:0 (heads, 96, 96)
    ...                         encoder_layer_1_norm1/gamma:0, encoder_layer_1_ff1/kernel:0, ...

A whole-model .h5 (``model.save``) nests the same groups under ``model_weights/``; both are read.
Tensors are found by their layer and weight names wherever they sit, so the exact nesting does
not matter; MAE decoder tensors and fine-tuning head tensors are ignored.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from biotune import storage
from biotune.errors import InputFormatError, WeightsError
from biotune.mood.pat import PATConfig, PATEncoder, _load_encoder_state, pat_config

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_LAYER_RE = re.compile(r"^encoder_layer_(\d+)_(attention|norm1|norm2|ff1|ff2)$")
_PATCH_RE = re.compile(r"^dense(_\d+)?$")


class WeightsFormatError(WeightsError, InputFormatError):
    """A weight file that is not a readable .h5/.pt at all (truncated, garbage, wrong type)."""


def _keras_layout(cfg: PATConfig) -> list[tuple[str, tuple[int, ...]]]:
    """(canonical Keras name, Keras shape) of every encoder tensor, in file order."""
    e, h, k, f = cfg.embed_dim, cfg.num_heads, cfg.key_dim, cfg.ff_dim
    out = [("dense/kernel", (cfg.patch_size, e)), ("dense/bias", (e,))]
    for i in range(1, cfg.num_layers + 1):
        p = f"encoder_layer_{i}"
        for proj in ("query", "key", "value"):
            out += [(f"{p}_attention/{proj}/kernel", (e, h, k)), (f"{p}_attention/{proj}/bias", (h, k))]
        out += [(f"{p}_attention/attention_output/kernel", (h, k, e)), (f"{p}_attention/attention_output/bias", (e,)),
                (f"{p}_norm1/gamma", (e,)), (f"{p}_norm1/beta", (e,)),
                (f"{p}_ff1/kernel", (e, f)), (f"{p}_ff1/bias", (f,)),
                (f"{p}_ff2/kernel", (f, e)), (f"{p}_ff2/bias", (e,)),
                (f"{p}_norm2/gamma", (e,)), (f"{p}_norm2/beta", (e,))]
    return out


def _canonical(path: str) -> str | None:
    """Map an HDF5 dataset path to 'encoder_layer_i_x/.../kernel' or 'dense/kernel' (None: not encoder)."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return None
    parts[-1] = parts[-1].split(":")[0]
    for j in range(len(parts) - 1, -1, -1):
        if _LAYER_RE.match(parts[j]) and j < len(parts) - 1:
            return "/".join(parts[j:])
    if any(p.startswith(("decoder", "encoder_layer_")) for p in parts):
        return None
    if len(parts) >= 2 and _PATCH_RE.match(parts[-2]) and parts[-2] != "dense_128" and parts[-1] in ("kernel", "bias"):
        return f"dense/{parts[-1]}" if parts[-2] == "dense" else f"{parts[-2]}/{parts[-1]}"
    return None


def read_keras_h5(h5_path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every encoder tensor of a Keras .h5 file, keyed by canonical Keras name (no ':0')."""
    import h5py

    path = str(h5_path)
    try:
        fh = h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise WeightsFormatError(f"not a readable HDF5 weight file ({exc})", where=path,
                                 fix="the file may be truncated or not an .h5: download PAT-{S,M,L}_29k_weights.h5 again "
                                     "into models/pretrained/") from exc
    found: dict[str, np.ndarray] = {}
    patch_candidates: dict[str, dict[str, np.ndarray]] = {}
    try:
        root = fh["model_weights"] if "model_weights" in fh else fh

        def visit(name, obj):
            if not isinstance(obj, h5py.Dataset):
                return
            key = _canonical(name)
            if key is None:
                return
            layer, weight = key.rsplit("/", 1)
            if _PATCH_RE.match(layer.split("/")[0]) and "/" not in layer:
                patch_candidates.setdefault(layer, {})[weight] = np.asarray(obj[()])
            else:
                found[key] = np.asarray(obj[()])

        root.visititems(visit)
    except (OSError, RuntimeError, KeyError) as exc:
        raise WeightsFormatError(f"the HDF5 file cannot be read through ({exc})", where=path,
                                 fix="the file is probably truncated: download it again") from exc
    finally:
        fh.close()
    if patch_candidates:  # the patch embedding is the Dense named 'dense' (else the only dense_N)
        name = "dense" if "dense" in patch_candidates else sorted(patch_candidates)[0]
        for weight, arr in patch_candidates[name].items():
            found[f"dense/{weight}"] = arr
    return found


def keras_to_torch(tensors: Mapping[str, np.ndarray], size: str | PATConfig, where: str = "") -> dict[str, torch.Tensor]:
    """Check shapes against PAT-``size`` and map Keras tensors to a ``PATEncoder`` state dict."""
    cfg = pat_config(size)
    if not any(k.startswith("encoder_layer_") for k in tensors):
        raise WeightsError(f"no PAT encoder tensors (encoder_layer_*) found; the file holds {sorted(tensors)[:5]}",
                           where=where, fix="use a released PAT-{S,M,L}_29k_weights.h5 encoder file")
    for name, shape in _keras_layout(cfg):
        if name not in tensors:
            raise WeightsError(f"tensor {name} missing: expected shape {shape} for PAT-{cfg.size}, found none",
                               where=where, fix=f"the --size may be wrong (PAT-{cfg.size} has {cfg.num_layers} "
                                                f"encoder layer(s)) or the file is not a PAT encoder")
        got = tuple(tensors[name].shape)
        if got != shape:
            raise WeightsError(f"tensor {name}: expected shape {shape} for PAT-{cfg.size}, found {got}",
                               where=where, fix="the --size may be wrong for this weight file "
                                                "(S: patch 18, 6 heads; M: patch 18, 12 heads; L: patch 9, 12 heads)")
    layers = {int(m.group(1)) for k in tensors if (m := re.match(r"encoder_layer_(\d+)_", k))}
    if max(layers) > cfg.num_layers:
        raise WeightsError(f"the file holds {max(layers)} encoder layers, PAT-{cfg.size} has {cfg.num_layers}",
                           where=where, fix="the --size may be wrong for this weight file (a larger PAT?)")

    def t(name: str) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(tensors[name], dtype=np.float32))

    e, inner = cfg.embed_dim, cfg.num_heads * cfg.key_dim
    state = {"patch_embed.weight": t("dense/kernel").T.contiguous(), "patch_embed.bias": t("dense/bias")}
    for i in range(cfg.num_layers):
        p, q = f"encoder_layer_{i + 1}", f"layers.{i}"
        for proj in ("query", "key", "value"):
            state[f"{q}.attention.{proj}.weight"] = t(f"{p}_attention/{proj}/kernel").reshape(e, inner).T.contiguous()
            state[f"{q}.attention.{proj}.bias"] = t(f"{p}_attention/{proj}/bias").reshape(inner)
        state[f"{q}.attention.attention_output.weight"] = t(f"{p}_attention/attention_output/kernel").reshape(inner, e).T.contiguous()
        state[f"{q}.attention.attention_output.bias"] = t(f"{p}_attention/attention_output/bias")
        for norm in ("norm1", "norm2"):
            state[f"{q}.{norm}.weight"] = t(f"{p}_{norm}/gamma")
            state[f"{q}.{norm}.bias"] = t(f"{p}_{norm}/beta")
        for ff in ("ff1", "ff2"):
            state[f"{q}.{ff}.weight"] = t(f"{p}_{ff}/kernel").T.contiguous()
            state[f"{q}.{ff}.bias"] = t(f"{p}_{ff}/bias")
    return state


def convert_keras_weights(h5_path: str | os.PathLike, size: str, out_path: str | os.PathLike) -> str:
    """Convert a released PAT Keras .h5 to a PyTorch ``PATEncoder`` state dict saved at ``out_path``."""
    where = str(h5_path)
    with storage.local_copy(where) as local:
        state = keras_to_torch(read_keras_h5(local), size, where=where)
    PATEncoder(size).load_state_dict(state)  # belt and braces: the mapping fits the module
    out = str(out_path)
    with storage.atomic_local_path(out, suffix=".pt") as tmp:
        torch.save(state, tmp)
    return out


def _is_hdf5(path: str) -> bool:
    with open(path, "rb") as fh:
        return fh.read(8) == _HDF5_MAGIC


def read_encoder_state(path: str | os.PathLike, size: str | PATConfig) -> dict[str, torch.Tensor]:
    """An encoder state dict from a .pt (converted, or a classifier's) or a Keras .h5 file."""
    where = str(path)
    with storage.local_copy(where) as local:
        if Path(local).stat().st_size == 0:
            raise WeightsFormatError("the weight file is empty", where=where, fix="copy or download it again")
        if _is_hdf5(local):
            return keras_to_torch(read_keras_h5(local), size, where=where)
        try:
            state = torch.load(local, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeightsFormatError(f"neither an HDF5 nor a torch weight file ({type(exc).__name__}: {exc})",
                                     where=where, fix="pass a .h5 released by the PAT authors or a .pt from "
                                                      "convert_keras_weights; the file may be truncated") from exc
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise WeightsFormatError(f"the .pt holds a {type(state).__name__}, not a state dict", where=where,
                                 fix="save with torch.save(model.state_dict(), path)")
    if any(k.startswith("encoder.") for k in state):  # a classifier's state dict: keep the encoder
        state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    return dict(state)


def load_encoder_weights(model: torch.nn.Module, path: str | os.PathLike) -> torch.nn.Module:
    """Load encoder weights (.pt or .h5) into a ``PATEncoder`` or anything with ``.encoder``."""
    encoder = model if isinstance(model, PATEncoder) else getattr(model, "encoder", None)
    if not isinstance(encoder, PATEncoder):
        raise WeightsError(f"cannot load PAT encoder weights into a {type(model).__name__}", where=str(path),
                           fix="pass a PATEncoder or PATClassifier")
    state = read_encoder_state(path, encoder.config)
    _load_encoder_state(encoder, state, where=str(path))
    return model
