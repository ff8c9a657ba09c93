"""Evaluation on a held-out split, by the spec's task type: metrics and the plots people look at.

binary: AUC, PR-AUC, Brier, F1, sensitivity/specificity at a threshold chosen on validation;
multiclass: accuracy, macro F1, recall per class, confusion matrix; generation: the metrics the
family computes (BLEU, ROUGE-L, format and safety pass rates). Every task type reports ``n`` and
``error_rate``, the figure the retraining rule compares production with. Names: biotune.metrics.
Plots are PNG files written next to the metrics so the MLflow UI shows them with the run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def binary_metrics(y_true, proba, threshold: float = 0.5) -> dict[str, float]:
    from sklearn.metrics import (average_precision_score, brier_score_loss, confusion_matrix, f1_score,
                                 roc_auc_score)

    y_true = np.asarray(y_true).astype(int)
    proba = np.asarray(proba, dtype=float)
    pred = (proba >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y_true, pred, labels=[0, 1]).ravel()
    both = len(np.unique(y_true)) == 2
    return {
        "accuracy": float((pred == y_true).mean()) if len(y_true) else float("nan"),
        "error_rate": float((pred != y_true).mean()) if len(y_true) else float("nan"),
        "auc": float(roc_auc_score(y_true, proba)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y_true, proba)) if both else float("nan"),
        "brier": float(brier_score_loss(y_true, proba)),
        "f1": float(f1_score(y_true, pred, zero_division=0)),
        "sensitivity": float(tp / (tp + fn)) if tp + fn else float("nan"),
        "specificity": float(tn / (tn + fp)) if tn + fp else float("nan"),
        "threshold": float(threshold),
        "n": float(len(y_true)),
        "prevalence": float(y_true.mean()) if len(y_true) else float("nan"),
        "tp": float(tp), "fp": float(fp), "tn": float(tn), "fn": float(fn),
    }


def youden_threshold(y_true, proba) -> float:
    """The threshold maximising sensitivity + specificity (chosen on validation, applied on test)."""
    from sklearn.metrics import roc_curve

    y_true = np.asarray(y_true).astype(int)
    if len(np.unique(y_true)) < 2:
        return 0.5
    fpr, tpr, thr = roc_curve(y_true, proba)
    best = int(np.argmax(tpr - fpr))
    return float(np.clip(thr[best], 0.0, 1.0))


def binary_plots(y_true, proba, threshold: float, out_dir: str | Path, title: str) -> dict[str, str]:
    """ROC, PR, calibration and confusion-matrix PNGs; returns name -> path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_curve

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    y_true = np.asarray(y_true).astype(int)
    proba = np.asarray(proba, dtype=float)
    paths: dict[str, str] = {}
    m = binary_metrics(y_true, proba, threshold)
    if len(np.unique(y_true)) == 2:
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        fpr, tpr, _ = roc_curve(y_true, proba)
        ax.plot(fpr, tpr, label=f"AUC {m['auc']:.3f}")
        ax.plot([0, 1], [0, 1], "--", color="grey")
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC: {title}")
        ax.legend(loc="lower right")
        paths["roc"] = _save(fig, out / "roc.png")

        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        prec, rec, _ = precision_recall_curve(y_true, proba)
        ax.plot(rec, prec, label=f"PR-AUC {m['pr_auc']:.3f}")
        ax.axhline(y_true.mean(), ls="--", color="grey", label="prevalence")
        ax.set(xlabel="recall", ylabel="precision", title=f"Precision-recall: {title}")
        ax.legend()
        paths["pr"] = _save(fig, out / "pr.png")

        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        frac, mean_pred = calibration_curve(y_true, proba, n_bins=8, strategy="quantile")
        ax.plot(mean_pred, frac, "o-", label=f"Brier {m['brier']:.3f}")
        ax.plot([0, 1], [0, 1], "--", color="grey")
        ax.set(xlabel="mean predicted probability", ylabel="observed frequency", title=f"Calibration: {title}")
        ax.legend()
        paths["calibration"] = _save(fig, out / "calibration.png")

    fig, ax = plt.subplots(figsize=(4, 4))
    cm = confusion_matrix(y_true, (proba >= threshold).astype(int), labels=[0, 1])
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", color="black")
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["0", "1"], yticklabels=["0", "1"],
           xlabel="predicted", ylabel="true", title=f"Confusion @ {threshold:.2f}")
    paths["confusion"] = _save(fig, out / "confusion.png")
    return paths


def _save(fig, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)


def multiclass_metrics(y_true, proba, classes: list[str]) -> dict[str, float]:
    """Accuracy, macro F1 and recall per class from class indices and [n, k] probabilities."""
    from sklearn.metrics import f1_score, recall_score

    y_true = np.asarray(y_true).astype(int)
    proba = np.asarray(proba, dtype=float)
    pred = proba.argmax(axis=1) if len(proba) else np.zeros(0, dtype=int)
    labels = list(range(len(classes)))
    out = {
        "accuracy": float((pred == y_true).mean()) if len(y_true) else float("nan"),
        "error_rate": float((pred != y_true).mean()) if len(y_true) else float("nan"),
        "macro_f1": float(f1_score(y_true, pred, labels=labels, average="macro", zero_division=0)),
        "n": float(len(y_true)),
    }
    recalls = recall_score(y_true, pred, labels=labels, average=None, zero_division=0)
    for name, r in zip(classes, recalls):
        out[f"recall_{name}"] = float(r)
    return out


def multiclass_plots(y_true, proba, classes: list[str], out_dir: str | Path, title: str) -> dict[str, str]:
    """The confusion matrix (row-normalised, counts written in) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    y_true = np.asarray(y_true).astype(int)
    pred = np.asarray(proba).argmax(axis=1)
    cm = confusion_matrix(y_true, pred, labels=list(range(len(classes))))
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.45 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), v in np.ndenumerate(cm):
        if v:
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7)
    ticks = list(range(len(classes)))
    ax.set(xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="true", title=f"Confusion: {title}")
    ax.set_xticklabels(classes, rotation=60, ha="right", fontsize=7)
    ax.set_yticklabels(classes, fontsize=7)
    return {"confusion": _save(fig, out / "confusion.png")}


def evaluate(task_type: str, y_true, outputs, *, threshold: float | None = None, classes: list[str] | None = None,
             generation_metrics=None) -> dict[str, float]:
    """The task type's metrics of ``outputs`` (binary: P(1); multiclass: [n, k]; generation: texts)
    against ``y_true``. ``generation_metrics(references, outputs) -> dict`` is the family's."""
    if task_type == "binary":
        return binary_metrics(y_true, outputs, 0.5 if threshold is None else threshold)
    if task_type == "multiclass":
        return multiclass_metrics(y_true, outputs, list(classes or []))
    if task_type == "generation":
        if generation_metrics is None:
            raise ValueError("a generation task needs the family's metric function")
        metrics = dict(generation_metrics(list(y_true), list(outputs)))
        metrics.setdefault("n", float(len(outputs)))
        return metrics
    raise ValueError(f"unknown task type {task_type!r}")


def plots(task_type: str, y_true, outputs, out_dir: str | Path, title: str, *, threshold: float | None = None,
          classes: list[str] | None = None) -> dict[str, str]:
    """The task type's plots (generation: none; its examples are logged as a table instead)."""
    if task_type == "binary":
        return binary_plots(y_true, outputs, 0.5 if threshold is None else threshold, out_dir, title)
    if task_type == "multiclass":
        return multiclass_plots(y_true, outputs, list(classes or []), out_dir, title)
    return {}


def predicted_labels(task_type: str, outputs, threshold: float | None = None) -> np.ndarray:
    """The predicted class per row (binary 0/1 at the threshold, multiclass the top class index);
    generation outputs have no class: an empty array."""
    if task_type == "binary":
        return (np.asarray(outputs, dtype=float) >= (0.5 if threshold is None else threshold)).astype(np.int64)
    if task_type == "multiclass":
        arr = np.asarray(outputs, dtype=float)
        return arr.argmax(axis=1) if len(arr) else np.zeros(0, dtype=np.int64)
    return np.zeros(0, dtype=np.int64)


def confidence(task_type: str, outputs) -> np.ndarray | None:
    """How sure the model is per row: binary max(p, 1-p), multiclass the top probability;
    generation: None (a text has no probability here)."""
    if task_type == "binary":
        p = np.asarray(outputs, dtype=np.float64)
        return np.maximum(p, 1.0 - p)
    if task_type == "multiclass":
        arr = np.asarray(outputs, dtype=np.float64)
        return arr.max(axis=1) if len(arr) else np.zeros(0)
    return None
