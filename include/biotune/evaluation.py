"""Binary classification evaluation on a held-out split: metrics and the plots people look at.

Plots are PNG files (ROC, precision-recall, calibration, confusion matrix) written next to
the metrics so the MLflow UI shows them with the run.
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
