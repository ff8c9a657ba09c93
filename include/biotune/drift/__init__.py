"""Drift measures, one concern per module:

- :mod:`.psi`          PSI per feature, both modes (Evidently-exact and quantile), vectorised: the
                       result and the public functions; the binning is in :mod:`.shares` (both
                       modes), :mod:`.sturges` (Evidently mode) and :mod:`.quantile`;
- :mod:`.predictions`  prediction drift over the class shares, collapse, confidence;
- :mod:`.summary`      a PSI result against a spec's thresholds;
- :mod:`.report`       the Evidently HTML report, showing exactly the PSI that was measured;
- :mod:`.io`           reading a drift input with typed errors.
"""

from biotune.drift.io import read_frame
from biotune.drift.predictions import confidence_summary, prediction_drift
from biotune.drift.psi import (EPS, EVIDENTLY_PSI_THRESHOLD, METHODS, WORKERS, DriftResult, _sturges_edges, psi,
                               psi_categorical, psi_categorical_frame, psi_result)
from biotune.drift.report import ReportFigures, evidently_report_html, method_label
from biotune.drift.summary import drift_summary

__all__ = [
    "EPS", "EVIDENTLY_PSI_THRESHOLD", "DriftResult", "psi", "psi_result", "psi_categorical",
    "psi_categorical_frame", "prediction_drift", "confidence_summary", "drift_summary", "evidently_report_html",
    "read_frame", "WORKERS", "_sturges_edges", "METHODS", "ReportFigures", "method_label",
]
