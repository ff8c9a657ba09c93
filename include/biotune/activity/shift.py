"""Domain-shift check: after the diagnostic, is the new device's data a different domain?

Evidence, all from the shared drift code (:mod:`biotune.drift`):

* per-channel PSI of the scaled sensor values, new domain against the source domain;
* prediction collapse: >= 80% of the new domain's windows predicted as one or two classes
  (which the source predictions did not do);
* mean confidence (max class probability) on the new domain, against the source's;
* when the new domain is labelled: the model's accuracy there against the source.

Verdict: ``"pipeline bug"`` when the diagnostic failed (its failed checks are the evidence: a shift
check on mis-processed data would only measure the bug), else ``"domain shift"`` when any of the
evidence says so, else ``"no shift"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from biotune import drift
from biotune.activity import CLASSES, SENSOR_COLS
from biotune.errors import DriftError

PIPELINE_BUG, DOMAIN_SHIFT, NO_SHIFT = "pipeline bug", "domain shift", "no shift"
MAX_ROWS = 200_000  # sensor samples per side for PSI (subsampled evenly)
ACCURACY_DROP = 0.10  # labelled new domain: a drop this large against the source is shift evidence


@dataclass
class ShiftReport:
    verdict: str
    evidence: list[str]
    psi: dict[str, float | None] = field(default_factory=dict)
    drifted_channels: list[str] = field(default_factory=list)
    prediction: dict[str, Any] = field(default_factory=dict)
    confidence: dict[str, Any] = field(default_factory=dict)
    accuracy: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    failed_checks: list[str] = field(default_factory=list)

    @property
    def shift(self) -> bool:
        return self.verdict == DOMAIN_SHIFT

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "evidence": list(self.evidence), "psi": dict(self.psi),
                "drifted_channels": list(self.drifted_channels), "prediction": self.prediction,
                "confidence": self.confidence, "accuracy": dict(self.accuracy), "thresholds": dict(self.thresholds),
                "failed_checks": list(self.failed_checks)}


def channel_frame(x: np.ndarray, max_rows: int = MAX_ROWS) -> pd.DataFrame:
    """Sensor samples of (n, window, 6) windows as a frame (Ax..Gz), evenly subsampled."""
    flat = np.asarray(x).reshape(-1, x.shape[-1])
    if len(flat) > max_rows:
        flat = flat[np.linspace(0, len(flat) - 1, max_rows).astype(np.int64)]
    return pd.DataFrame(flat.astype(np.float64), columns=list(SENSOR_COLS)[: flat.shape[1]])


def _failed(diagnostic) -> list[str]:
    if diagnostic is None:
        return []
    if isinstance(diagnostic, dict):
        return list(diagnostic.get("failed", []))
    return list(diagnostic.failed())


def shift_check(reference_x: np.ndarray, current_x: np.ndarray, reference_proba: np.ndarray,
                current_proba: np.ndarray, diagnostic=None, reference_y: np.ndarray | None = None,
                current_y: np.ndarray | None = None, classes: Sequence[str] = CLASSES, psi_threshold: float = 0.2,
                psi_critical: float = 0.25, method: str = "quantile", bins: int = 10, dominance: float = 0.8,
                min_confidence: float = 0.6) -> ShiftReport:
    """The verdict with its evidence. ``*_x``: scaled windows; ``*_proba``: model probabilities."""
    thresholds = {"psi": psi_threshold, "psi_critical": psi_critical, "dominance": dominance,
                  "min_confidence": min_confidence, "accuracy_drop": ACCURACY_DROP}
    failed = _failed(diagnostic)
    if failed:
        return ShiftReport(PIPELINE_BUG, [f"pipeline diagnostic failed: {', '.join(failed)}; the data are processed "
                                          "differently from the training data, so shift cannot be judged"],
                           thresholds=thresholds, failed_checks=failed)
    if len(current_x) == 0 or len(reference_x) == 0:
        raise DriftError("no windows to compare", where="biotune.activity.shift.shift_check",
                         fix="pass the source windows and the new domain's windows")
    evidence: list[str] = []
    res = drift.psi_result(channel_frame(reference_x), channel_frame(current_x), method=method, bins=bins)
    summary = drift.drift_summary(res, threshold=psi_threshold, critical=psi_critical)
    psi = {k: (None if pd.isna(v) else round(float(v), 4)) for k, v in res.psi.items()}
    if summary["drifted"]:
        evidence.append(f"{len(summary['drifted'])} of {summary['n_features']} channels drifted "
                        f"(PSI >= {psi_threshold}): " + ", ".join(f"{c} {psi[c]:.2f}" for c in summary["drifted"]))
    k = len(classes)
    pred = drift.prediction_drift(np.asarray(reference_proba).argmax(1), np.asarray(current_proba).argmax(1),
                                  classes=list(range(k)), dominance=dominance)
    names = {str(i): c for i, c in enumerate(classes)}
    pred_out = {"collapse": pred["collapse"], "psi": round(pred["psi"], 4),
                "top_classes": [names.get(c, c) for c in pred["top_classes"]],
                "top1_share": round(pred["top1_share"], 4), "top2_share": round(pred["top2_share"], 4),
                "current_share": {names[c]: round(v, 4) for c, v in pred["current_share"].items()},
                "reference_share": {names[c]: round(v, 4) for c, v in pred["reference_share"].items()},
                "reasons": pred["reasons"]}
    if pred["collapse"]:
        evidence.append("prediction collapse: " + pred["reasons"][0].replace(
            "classes ", "").replace("class ", ""))
        evidence[-1] += f" ({', '.join(pred_out['top_classes'])})"
    conf_cur = drift.confidence_summary(current_proba, low=min_confidence)
    conf_ref = drift.confidence_summary(reference_proba, low=min_confidence)
    confidence = {"current_mean": round(conf_cur["mean_confidence"], 4),
                  "reference_mean": round(conf_ref["mean_confidence"], 4),
                  "current_share_below": round(conf_cur["share_below"], 4), "low": min_confidence}
    if conf_cur["mean_confidence"] < min_confidence:
        evidence.append(f"mean confidence {conf_cur['mean_confidence']:.2f} < {min_confidence} "
                        f"(source: {conf_ref['mean_confidence']:.2f})")
    accuracy: dict[str, float] = {}
    if current_y is not None:
        accuracy["current"] = float((np.asarray(current_proba).argmax(1) == np.asarray(current_y)).mean())
        if reference_y is not None:
            accuracy["reference"] = float((np.asarray(reference_proba).argmax(1) == np.asarray(reference_y)).mean())
            if accuracy["reference"] - accuracy["current"] >= ACCURACY_DROP:
                evidence.append(f"accuracy {accuracy['current']:.1%} on the new domain vs {accuracy['reference']:.1%} "
                                f"on the source (chance {1 / k:.1%})")
    verdict = DOMAIN_SHIFT if evidence else NO_SHIFT
    if not evidence:
        evidence.append(f"no channel reached PSI {psi_threshold} (max {summary['max_psi']:.3f} on "
                        f"{summary['max_feature']}), no prediction collapse, mean confidence "
                        f"{conf_cur['mean_confidence']:.2f}")
    return ShiftReport(verdict, evidence, psi=psi, drifted_channels=summary["drifted"], prediction=pred_out,
                       confidence=confidence, accuracy=accuracy, thresholds=thresholds)


def run_shift_check(model, reference, current, diagnostic=None, **kw) -> ShiftReport:
    """:func:`shift_check` with the model's predictions on two WindowSets (source, new domain)."""
    from biotune.activity.model import predict_proba

    if _failed(diagnostic):  # judged on the diagnostic alone: no windows needed
        empty = np.empty((0, 1, len(SENSOR_COLS)), dtype=np.float32)
        return shift_check(empty, empty, np.empty((0, 1)), np.empty((0, 1)), diagnostic, **kw)
    return shift_check(reference.x, current.x, predict_proba(model, reference.x), predict_proba(model, current.x),
                       diagnostic, reference_y=reference.y, current_y=current.y, **kw)
