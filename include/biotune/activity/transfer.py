"""Head-only transfer to a new device, the seed's policy: once, supervised, gated.

* Freeze every layer but the last ``trainable_last`` (default 4: Dense 32, its BatchNorm and
  Dropout, and the softmax). Frozen layers run in inference mode (BatchNorm on its moving
  statistics, dropout off): they are a fixed feature extractor, so their output is computed
  once and only the head is trained on it (on 2 CPU cores that turns 20 epochs of LSTM forward
  passes into one).
* Adam 1e-4, up to 20 epochs, early stop on validation accuracy (patience 5), batch 32.
* Training mix: 70% new-domain windows, 30% source-domain windows (the old domain keeps the
  head from forgetting it); validation on the new domain only, on held-out people (or sessions).
* Refuses to start below 500 labelled new-domain windows, or when the new-domain data come from a
  single person/session (validation would share a person with training), saying so.

Returns the tuned model plus what MLflow logs: accuracy before/after on the new-domain validation
set, per-class precision/recall/F1, the confusion matrix, frozen/trainable layer and parameter
counts, the mix, the learning rate and the history.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from biotune.activity import CLASSES
from biotune.activity.windows import WindowSet
from biotune.errors import DataValidationError, InputFormatError

MIN_NEW_WINDOWS = 500
HEAD_LAYERS = 4


@dataclass
class TransferResult:
    model: Any = field(repr=False)
    accuracy_before: float
    accuracy_after: float
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]]
    frozen_layers: int
    trainable_layers: int
    frozen_params: int
    trainable_params: int
    n_new_train: int
    n_new_val: int
    n_source: int
    source_share: float
    train_groups: list[str]
    val_groups: list[str]
    params: dict[str, Any]
    history: dict[str, list[float]]

    def metrics(self) -> dict[str, float]:
        """Flat numbers for MLflow (per-class F1 as ``f1_<class>``)."""
        out = {"val_accuracy_before": self.accuracy_before, "val_accuracy": self.accuracy_after,
               "frozen_layers": self.frozen_layers, "trainable_layers": self.trainable_layers,
               "frozen_params": self.frozen_params, "trainable_params": self.trainable_params,
               "n_new_train": self.n_new_train, "n_new_val": self.n_new_val, "n_source": self.n_source}
        for name, m in self.per_class.items():
            out[f"f1_{name}"] = m["f1"]
        return {k: float(v) for k, v in out.items()}

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "model"}
        return d


def groups_of(ws: WindowSet) -> tuple[np.ndarray, str]:
    """Grouping for the split: people when there are two or more, else sessions."""
    persons = np.unique(ws.person)
    return (ws.person, "person") if len(persons) >= 2 else (ws.session, "session")


def check_transfer_data(new: WindowSet, min_windows: int = MIN_NEW_WINDOWS, where: str = "new-domain data") -> None:
    """Refuse (DataValidationError, saying why) data a transfer must not start on."""
    problems = []
    n = len(new) if new.labelled else 0
    if not new.labelled:
        problems.append("the new-domain windows are unlabelled: head-only transfer is supervised")
    elif n < min_windows:
        problems.append(f"{n} labelled new-domain windows, fewer than the {min_windows} required")
    groups, kind = groups_of(new)
    if len(np.unique(groups)) < 2:
        problems.append(f"all new-domain windows come from one person/session ({np.unique(groups)[:1].tolist()}): "
                        "validation needs people the head was not tuned on")
    if problems:
        raise DataValidationError(
            "refusing head-only transfer", where=where,
            fix=f"label at least {min_windows} windows ({math.ceil(min_windows * 4 / 2 / 60)}+ minutes at 50% "
                "overlap) from at least two people or sessions of the new device, then run again",
            failures=problems)


def split_by_group(ws: WindowSet, val_fraction: float = 0.3, seed: int = 0):
    """Deterministic group split: (train_idx, val_idx, train_groups, val_groups)."""
    groups, _ = groups_of(ws)
    names = sorted(np.unique(groups).tolist())
    rng = np.random.default_rng(seed)
    order = [names[i] for i in rng.permutation(len(names))]
    n_val = min(len(names) - 1, max(1, int(round(len(names) * val_fraction))))
    val_groups = sorted(order[:n_val])
    val = np.isin(groups, val_groups)
    return np.nonzero(~val)[0], np.nonzero(val)[0], sorted(order[n_val:]), val_groups


def freeze_head_only(model, trainable_last: int = HEAD_LAYERS) -> tuple[int, int]:
    """Freeze all layers but the last ``trainable_last``; returns (frozen, trainable) layer counts."""
    layers = list(model.layers)
    if not 1 <= trainable_last <= len(layers):
        raise InputFormatError(f"trainable_last must be 1..{len(layers)}, got {trainable_last}",
                               where="biotune.activity.transfer.freeze_head_only",
                               fix=f"use e.g. {HEAD_LAYERS} (Dense 32 + BatchNorm + Dropout + softmax)")
    for i, layer in enumerate(layers):
        layer.trainable = i >= len(layers) - trainable_last
    return len(layers) - trainable_last, trainable_last


def split_at(model, k: int):
    """(base, head) Keras models over the same layer objects: layers[:k] and layers[k:].

    Training ``head`` updates ``model``'s own layers (weights are shared, not copied)."""
    import keras

    inp = keras.Input(model.input_shape[1:])
    z = inp
    for layer in model.layers[:k]:
        z = layer(z, training=False)
    base = keras.Model(inp, z, name="frozen_base")
    hin = keras.Input(tuple(z.shape[1:]))
    h = hin
    for layer in model.layers[k:]:
        h = layer(h)
    return base, keras.Model(hin, h, name="head")


def _count(weights) -> int:
    return int(sum(int(np.prod(w.shape)) for w in weights))


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes=CLASSES) -> tuple[dict, list]:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    labels = list(range(len(classes)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    per_class = {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                 for i, c in enumerate(classes)}
    return per_class, confusion_matrix(y_true, y_pred, labels=labels).tolist()


def head_only_transfer(model, source: WindowSet, new: WindowSet, *, val_fraction: float = 0.3,
                       min_new_windows: int = MIN_NEW_WINDOWS, seed: int = 0, **kw) -> TransferResult:
    """Tune ``model`` (in place) to the new domain; see the module docstring for the policy.

    Checks the new-domain data (refusals), holds out ``val_fraction`` of its people (sessions when
    one person) for validation, then :func:`head_only_fit`."""
    check_transfer_data(new, min_new_windows)
    tr, va, tr_groups, va_groups = split_by_group(new, val_fraction, seed)
    result = head_only_fit(model, source, new.subset(tr), new.subset(va), seed=seed, **kw)
    result.train_groups, result.val_groups = [str(g) for g in tr_groups], [str(g) for g in va_groups]
    result.params["val_fraction"] = val_fraction
    return result


def head_only_fit(model, source: WindowSet, new_train: WindowSet, new_val: WindowSet, *,
                  trainable_last: int = HEAD_LAYERS, learning_rate: float = 1e-4, epochs: int = 20, patience: int = 5,
                  batch_size: int = 32, source_share: float = 0.3, seed: int = 0, classes=CLASSES,
                  progress: Callable[[str], None] | None = None) -> TransferResult:
    """The transfer itself on given new-domain training and validation windows (the DAG's splits):
    the 30/70 mix, the frozen base run once, the head trained with early stopping on ``new_val``."""
    from biotune.activity.model import fit, predict_proba

    for name, ws in (("source-domain", source), ("new-domain training", new_train),
                     ("new-domain validation", new_val)):
        if not ws.labelled or len(ws) == 0:
            raise DataValidationError("refusing head-only transfer", where=f"{name} windows",
                                      fix="pass labelled windows for every part of the transfer",
                                      failures=[f"no labelled {name} windows"])
    if not 0 <= source_share < 1:
        raise InputFormatError(f"source_share must be in [0, 1), got {source_share}",
                               where="biotune.activity.transfer", fix="use 0.3 (the seed's 30/70 mix)")
    rng = np.random.default_rng(seed)
    n_new = len(new_train)
    n_src = int(round(n_new * source_share / (1 - source_share)))
    src_idx = rng.choice(len(source), n_src, replace=n_src > len(source)) if n_src else np.array([], dtype=int)
    x = np.concatenate([new_train.x, source.x[src_idx]])
    y = np.concatenate([new_train.y, source.y[src_idx]]).astype(np.int32)
    x_val, y_val = new_val.x, new_val.y.astype(np.int32)

    before = float((predict_proba(model, x_val).argmax(1) == y_val).mean())
    frozen, trainable = freeze_head_only(model, trainable_last)
    if progress:
        progress(f"head-only transfer: {frozen} layers frozen, {trainable} trainable; {n_new} new + {n_src} source "
                 f"windows; validation {len(x_val)} new-domain windows; accuracy before {before:.3f}")
    # the frozen layers are a fixed function: run them once, train the head on their output
    base, head = split_at(model, frozen)
    f, f_val = predict_proba(base, x, dtype=np.float32), predict_proba(base, x_val, dtype=np.float32)
    history = fit(head, f, y, f_val, y_val, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                  patience=patience, seed=seed, progress=progress, label="head")
    pred = predict_proba(model, x_val).argmax(1)
    per_class, cm = classification_metrics(y_val, pred, classes)
    return TransferResult(
        model=model, accuracy_before=before, accuracy_after=float((pred == y_val).mean()), per_class=per_class,
        confusion=cm, frozen_layers=frozen, trainable_layers=trainable,
        frozen_params=_count(model.non_trainable_weights), trainable_params=_count(model.trainable_weights),
        n_new_train=int(n_new), n_new_val=int(len(x_val)), n_source=int(n_src),
        source_share=float(n_src / max(1, n_src + n_new)),
        train_groups=sorted({str(g) for g in new_train.person}), val_groups=sorted({str(g) for g in new_val.person}),
        params={"learning_rate": learning_rate, "epochs": epochs, "patience": patience, "batch_size": batch_size,
                "trainable_last": trainable_last, "source_share": source_share, "seed": seed},
        history=history)


def confusion_plot(cm: list[list[int]], out_path: str | Path, classes=CLASSES, title: str = "") -> str:
    """A confusion-matrix PNG (rows true, columns predicted) for the MLflow run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.imshow(a, cmap="Blues")
    for (i, j), v in np.ndenumerate(a):
        if v:
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                    color="white" if v > a.max() / 2 else "black")
    ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xlabel="predicted", ylabel="true",
           title=title or "confusion (new-domain validation)")
    ax.set_xticklabels(classes, rotation=60, ha="right", fontsize=7)
    ax.set_yticklabels(classes, fontsize=7)
    fig.tight_layout()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return str(out)
