"""PAT inference in numpy, for the serving path (no torch: a prediction process stays small).

``weights`` is a PATClassifier state dict as numpy arrays (``to_numpy_state``) and the
architecture as a dict (``PATConfig`` fields). A LoRA adapter is merged into the weights it
adapts (W + (alpha / r) B A, exactly what peft computes at run time). The forward pass mirrors
``biotune.mood.pat`` layer for layer (post-norm blocks, LayerNorm eps 1e-6, [sin | cos]
position encoding, mean pooling, Dense 128 ReLU, Dense 1); a unit test holds it to the torch
model's logits.
"""

from __future__ import annotations

import math

import numpy as np

LN_EPS = 1e-6


def to_numpy_state(model) -> dict[str, np.ndarray]:
    """A torch PATClassifier (without LoRA layers) -> {name: float32 array}."""
    return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()}


def positional_encoding(num_patches: int, embed_dim: int) -> np.ndarray:
    position = np.arange(num_patches, dtype=np.float32)[:, None]
    div = np.exp(np.arange(0, embed_dim, 2, dtype=np.float32) * (-math.log(10000.0) / embed_dim))
    return np.concatenate([np.sin(position * div), np.cos(position * div)], axis=-1).astype(np.float32)


def merge_lora(weights: dict[str, np.ndarray], adapter: dict[str, np.ndarray], scaling: float) -> dict[str, np.ndarray]:
    """Weights with the adapter folded in: LoRA pairs merged, any other adapter tensor (a retrained
    head) replacing the population's."""
    out = dict(weights)
    for key, a in adapter.items():
        if ".lora_A." in key:
            base = key.split(".lora_A.")[0]
            b = adapter[key.replace(".lora_A.", ".lora_B.")]
            out[f"{base}.weight"] = (weights[f"{base}.weight"] + scaling * (b @ a)).astype(np.float32)
        elif ".lora_B." not in key:
            out[key] = a.astype(np.float32)
    return out


def _layer_norm(x, g, b):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + LN_EPS) * g + b


def _linear(x, w, name):
    return x @ w[f"{name}.weight"].T + w[f"{name}.bias"]


def logits(weights: dict[str, np.ndarray], config: dict, x: np.ndarray) -> np.ndarray:
    """x: [B, input_minutes] standardized activity -> [B] logits."""
    x = np.asarray(x, dtype=np.float32)
    B = x.shape[0]
    P, E = int(config["patch_size"]), int(config["embed_dim"])
    H, K = int(config["num_heads"]), int(config["key_dim"])
    N = int(config["input_minutes"]) // P
    h = _linear(x.reshape(B, N, P), weights, "encoder.patch_embed") + positional_encoding(N, E)
    for i in range(int(config["num_layers"])):
        p = f"encoder.layers.{i}"

        def heads(t):
            return t.reshape(B, N, H, K).transpose(0, 2, 1, 3)

        q = heads(_linear(h, weights, f"{p}.attention.query"))
        k = heads(_linear(h, weights, f"{p}.attention.key"))
        v = heads(_linear(h, weights, f"{p}.attention.value"))
        s = (q / np.float32(math.sqrt(K))) @ k.transpose(0, 1, 3, 2)
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        s /= s.sum(axis=-1, keepdims=True)
        ctx = (s @ v).transpose(0, 2, 1, 3).reshape(B, N, H * K)
        a = _linear(ctx, weights, f"{p}.attention.attention_output")
        out1 = _layer_norm(h + a, weights[f"{p}.norm1.weight"], weights[f"{p}.norm1.bias"])
        ff = _linear(np.maximum(_linear(out1, weights, f"{p}.ff1"), 0.0), weights, f"{p}.ff2")
        h = _layer_norm(out1 + ff, weights[f"{p}.norm2.weight"], weights[f"{p}.norm2.bias"])
    pooled = h.mean(axis=1)
    z = np.maximum(_linear(pooled, weights, "head.dense"), 0.0)
    return _linear(z, weights, "head.out")[:, 0]


def predict_proba(weights, config, x) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits(weights, config, x).astype(np.float64)))
