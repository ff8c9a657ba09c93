"""Prediction drift (class shares, collapse) and confidence of a batch's predictions."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from biotune.errors import DriftError
from biotune.drift.psi import EVIDENTLY_PSI_THRESHOLD, psi_categorical


def _labels(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim == 2:  # class probabilities -> predicted class index
        a = a.argmax(axis=1)
    a = a.ravel()
    if a.size == 0:
        raise DriftError(
            f"{name} predictions are empty",
            where="biotune.drift.prediction_drift",
            fix=f"pass the {name} batch's predicted labels (or class probabilities)",
        )
    return a


def prediction_drift(
    ref_pred: Any,
    cur_pred: Any,
    classes: Sequence[Any] | None = None,
    dominance: float = 0.8,
) -> dict[str, Any]:
    """Compare predicted-class shares of a current batch with the reference.

    ``ref_pred``/``cur_pred``: predicted labels (1-D) or class probabilities (n x k, argmax
    taken). Returns shares per class on both sides, PSI on the class shares (Evidently's
    categorical rule, classes never predicted on either side are ignored), the top classes, and
    ``collapse``: True when one class, or (with more than two classes) two classes together,
    take >= ``dominance`` of current predictions while they did not in the reference. The
    ``reasons`` list says why, in words.
    """
    if not 0 < dominance <= 1:
        raise DriftError(
            f"dominance must be in (0, 1], got {dominance}",
            where="biotune.drift.prediction_drift",
            fix="use a share such as 0.8",
        )
    r = _labels(ref_pred, "reference")
    c = _labels(cur_pred, "current")
    rs = pd.Series(r)
    cs = pd.Series(c)
    if classes is None:
        classes = sorted(set(rs.dropna().unique()) | set(cs.dropna().unique()), key=lambda v: (str(type(v)), v))
    classes = list(classes)
    rv = rs.value_counts(normalize=True)
    cv = cs.value_counts(normalize=True)
    unknown = sorted(set(cv.index) - set(classes), key=str)
    ref_share = {str(k): float(rv.get(k, 0.0)) for k in classes}
    cur_share = {str(k): float(cv.get(k, 0.0)) for k in classes}
    value = psi_categorical(rs, cs, method="evidently")
    order = sorted(classes, key=lambda k: -cur_share[str(k)])
    top1 = [str(order[0])] if order else []
    top2 = [str(k) for k in order[:2]]
    cur1 = cur_share[top1[0]] if top1 else 0.0
    cur2 = sum(cur_share[k] for k in top2)
    ref1 = ref_share[top1[0]] if top1 else 0.0
    ref2 = sum(ref_share[k] for k in top2)
    reasons: list[str] = []
    collapse = False
    if cur1 >= dominance and ref1 < dominance:
        collapse = True
        reasons.append(
            f"class {top1[0]} takes {cur1:.1%} of current predictions (>= {dominance:.0%}); "
            f"it took {ref1:.1%} in the reference"
        )
    elif len(classes) > 2 and cur2 >= dominance and ref2 < dominance:
        collapse = True
        reasons.append(
            f"classes {top2[0]} and {top2[1]} take {cur2:.1%} of current predictions "
            f"(>= {dominance:.0%}); they took {ref2:.1%} in the reference"
        )
    elif cur1 >= dominance or (len(classes) > 2 and cur2 >= dominance):
        reasons.append(
            f"current predictions are concentrated ({cur1:.1%} top class, {cur2:.1%} top two) "
            f"but the reference was as concentrated ({ref1:.1%}, {ref2:.1%}): not a collapse"
        )
    absent = [str(k) for k in classes if cur_share[str(k)] == 0 and ref_share[str(k)] > 0]
    if absent:
        reasons.append(f"classes never predicted in current but present in reference: {absent}")
    if unknown:
        reasons.append(f"current predicts classes outside `classes`: {[str(u) for u in unknown]}")
    if value >= EVIDENTLY_PSI_THRESHOLD:
        reasons.append(f"PSI of predicted-class shares is {value:.3f} (>= {EVIDENTLY_PSI_THRESHOLD})")
    return {
        "classes": [str(k) for k in classes],
        "reference_share": ref_share,
        "current_share": cur_share,
        "psi": float(value),
        "top_classes": top2,
        "top1_share": cur1,
        "top2_share": cur2,
        "dominance": dominance,
        "collapse": collapse,
        "reasons": reasons,
        "n_reference": int(r.size),
        "n_current": int(c.size),
    }


def confidence_summary(proba: Any, low: float = 0.6) -> dict[str, Any]:
    """Mean confidence and the share of predictions below ``low``.

    ``proba``: 1-D probabilities of the positive class (binary: confidence max(p, 1 - p)),
    an (n x 1) column (same), or an (n x k) matrix (confidence = max class probability).
    """
    where = "biotune.drift.confidence_summary"
    a = np.asarray(proba, dtype=np.float64)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim not in (1, 2) or a.size == 0:
        raise DriftError(
            f"probabilities must be a non-empty 1-D vector or n x k matrix, got shape {a.shape}",
            where=where,
            fix="pass the model's predicted probabilities for the batch",
        )
    if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
        raise DriftError(
            "probabilities contain NaN/inf or values outside [0, 1]",
            where=where,
            fix="pass probabilities (apply sigmoid/softmax to logits first)",
        )
    conf = np.maximum(a, 1.0 - a) if a.ndim == 1 else a.max(axis=1)
    return {
        "n": int(conf.size),
        "mean_confidence": float(conf.mean()),
        "share_below": float((conf < low).mean()),
        "low": float(low),
        "kind": "binary" if a.ndim == 1 else f"{a.shape[1]}-class",
    }


# --------------------------------------------------------------------------------------------
# summary

