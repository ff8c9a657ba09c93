"""Measuring one batch against a model's reference: PSI per feature, prediction drift,
confidence and the error rate on labelled rows. Pure: frames and arrays in, a dict out."""

from __future__ import annotations

from biotune.errors import DriftError
from biotune.specs import ModelSpec

COLLAPSE_MIN_GAIN = 0.25  # share a dominant predicted class must gain over the reference to count as collapse


def reference_error_rate(metrics: dict) -> float | None:
    """The model's error rate on its held-out test split: the logged ``test_error_rate`` (every task
    type: wrong predictions, or a generation model's bad answers), else the binary confusion counts
    of versions logged before it."""
    if metrics.get("test_error_rate") is not None:
        return float(metrics["test_error_rate"])
    try:
        fp, fn, n = (float(metrics[k]) for k in ("test_fp", "test_fn", "test_n"))
    except (KeyError, TypeError, ValueError):
        return None
    return (fp + fn) / n if n > 0 else None


def reference_predictions(metrics: dict):
    """Predicted classes on the held-out test split (from test_tp/fp/tn/fn), the reference for
    prediction drift: the reference artifact holds features, not every model's raw input."""
    import numpy as np

    try:
        tp, fp, tn, fn = (int(round(float(metrics[k]))) for k in ("test_tp", "test_fp", "test_tn", "test_fn"))
    except (KeyError, TypeError, ValueError):
        return None
    if tp + fp + tn + fn == 0:
        return None
    return np.r_[np.ones(tp + fp, dtype=np.int8), np.zeros(tn + fn, dtype=np.int8)]


def measure(reference, current, spec: ModelSpec, *, proba, prediction, labels=None,
            reference_prediction=None, low_confidence: float | None = None, confidence=None,
            output_errors=None) -> dict:
    """PSI per feature, prediction drift, confidence and labelled error of one batch: the fields of a
    ``drift_history`` row (status 'ok'). Pure: frames and arrays in, a dict out.

    ``reference``/``current``: feature frames (the spec's ``drift.features`` when set, else the
    reference's columns). ``labels``: float array with NaN where unlabeled.
    """
    import numpy as np

    from biotune import drift

    if current is None or len(current) == 0:
        raise DriftError("the current batch has no rows", where=f"{spec.name}",
                         fix="land a non-empty batch (an empty day should have no batch at all)")
    if reference is None or len(reference) == 0:
        raise DriftError("the reference has no rows", where=f"{spec.name}",
                         fix="re-run the fine-tuning DAG so the model logs its training features")
    columns = list(spec.drift.features) if spec.drift.features else list(reference.columns)
    missing = [c for c in columns if c not in current.columns]
    if missing:
        raise DriftError(f"the current features lack {missing[:5]} ({len(missing)} columns)", where=spec.name,
                         fix="compute the batch features with the family's feature function")
    result = drift.psi_result(reference[columns], current[columns], method=spec.drift.method,
                              bins=spec.drift.bins, columns=columns)
    summary = drift.drift_summary(result, threshold=spec.drift.threshold, critical=spec.drift.critical)
    if summary["n_computable"] == 0:
        raise DriftError("no feature could be compared with the reference (all missing in the batch or "
                         "the reference): " + "; ".join(list(summary["not_computable"].values())[:3]),
                         where=spec.name, fix="check the batch: its minute columns may be empty or all NaN")
    proba = np.asarray(proba, dtype=np.float64) if spec.task_type != "generation" else list(proba)
    prediction = np.asarray(prediction)
    low = spec.retraining.min_confidence if low_confidence is None else low_confidence
    conf = {"mean_confidence": None, "share_below": None}
    if confidence is not None and len(confidence):  # the task type's confidence, computed by scoring
        c = np.asarray(confidence, dtype=np.float64)
        conf = {"mean_confidence": float(c.mean()), "share_below": float((c < low).mean())}
    elif confidence is None and spec.task_type != "generation" and len(proba):
        conf = drift.confidence_summary(proba, low=low)
    classes = {"binary": [0, 1], "multiclass": list(range(len(spec.classes))) if spec.classes else None}.get(
        spec.task_type)
    pred_psi, collapse, pred_reasons = None, False, []
    if reference_prediction is not None and len(reference_prediction) and len(prediction):
        pdrift = drift.prediction_drift(reference_prediction, prediction, classes=classes)
        pred_psi, pred_reasons = pdrift["psi"], list(pdrift["reasons"])
        # a binary task's majority class naturally holds ~80%: call it a collapse only when the
        # dominant class also gained >= COLLAPSE_MIN_GAIN over its reference share
        top = pdrift["top_classes"][0] if pdrift["top_classes"] else None
        gain = (pdrift["current_share"][top] - pdrift["reference_share"][top]) if top is not None else 0.0
        collapse = bool(pdrift["collapse"]) and gain >= COLLAPSE_MIN_GAIN
        if pdrift["collapse"] and not collapse:
            pred_reasons.append(f"class {top} dominates but gained only {gain:+.2f} over the reference: not a collapse")
    labeled_n, label_counts, error_rate = 0, {}, None
    if labels is not None and spec.task_type != "generation":
        y = np.asarray(labels, dtype=np.float64)
        mask = np.isfinite(y)
        labeled_n = int(mask.sum())
        if labeled_n:
            values, counts = np.unique(y[mask].astype(int), return_counts=True)
            label_counts = {str(int(v)): int(c) for v, c in zip(values, counts)}
            error_rate = float((prediction[mask].astype(int) != y[mask].astype(int)).mean())
    if spec.task_type == "generation" and output_errors is not None and len(output_errors):
        # every answer is judged on its own (e.g. malformed): the share of bad ones, no label needed
        error_rate = float(np.mean(np.asarray(output_errors, dtype=bool)))
    return {
        "status": "ok",
        "n_rows": int(len(current)),
        "max_psi": summary["max_psi"],
        "max_feature": summary["max_feature"],
        "drifted_features": summary["n_drifted"],
        "drifted": summary["drifted"],
        "psi": result.to_dict()["psi"],
        "not_computable": summary["not_computable"],
        "critical": bool(summary["critical"]),
        "mean_confidence": conf["mean_confidence"],
        "share_low_confidence": conf["share_below"],
        "positive_share": float(prediction.mean()) if spec.task_type == "binary" and len(prediction) else None,
        "prediction_psi": pred_psi,
        "prediction_collapse": collapse,
        "labeled_n": labeled_n,
        "label_counts": label_counts,
        "error_rate": error_rate,
        "reasons": summary["reasons"] + pred_reasons,
    }

