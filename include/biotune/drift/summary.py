"""A PSI result summarised against a spec's thresholds: which features drifted, what is critical."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from biotune.drift.psi import DriftResult
from biotune.errors import DriftError


def drift_summary(
    psi_series: pd.Series | DriftResult, threshold: float = 0.2, critical: float = 0.25
) -> dict[str, Any]:
    """Decide from PSI values: which features drifted (PSI >= threshold), is any critical.

    Returns counts, the drifted feature names (largest PSI first), max PSI and its feature,
    ``critical`` (max PSI >= critical), the not-computable features, and ``reasons`` in words.
    """
    if threshold > critical:
        raise DriftError(
            f"threshold {threshold} is above critical {critical}",
            where="biotune.drift.drift_summary",
            fix="set critical >= threshold (e.g. threshold 0.2, critical 0.25)",
        )
    not_computable: dict[str, str] = {}
    extra: list[str] = []
    if isinstance(psi_series, DriftResult):
        not_computable = dict(psi_series.not_computable)
        extra = list(psi_series.extra_columns)
        s = psi_series.psi
    else:
        s = psi_series
        not_computable = dict(s.attrs.get("not_computable", {}))
        extra = list(s.attrs.get("extra_columns", []))
    s = pd.Series(s, dtype=np.float64)
    for k in s.index[s.isna()]:
        not_computable.setdefault(str(k), f"column {k!r}: PSI not computable")
    ok = s.dropna().sort_values(ascending=False)
    drifted = [str(k) for k, v in ok.items() if v >= threshold]
    crit = [str(k) for k, v in ok.items() if v >= critical]
    max_psi = float(ok.iloc[0]) if len(ok) else None
    max_feature = str(ok.index[0]) if len(ok) else None
    reasons = [f"{k}: PSI {ok[k]:.3f} >= critical {critical}" for k in crit]
    reasons += [f"{k}: PSI {ok[k]:.3f} >= threshold {threshold}" for k in drifted if k not in crit]
    reasons += [f"{k}: {why}" for k, why in not_computable.items()]
    if not reasons:
        reasons.append(
            f"no feature reached PSI {threshold} (max {max_psi:.3f} on {max_feature})"
            if max_psi is not None
            else "no feature could be computed"
        )
    return {
        "n_features": int(len(s)),
        "n_computable": int(len(ok)),
        "n_drifted": len(drifted),
        "share_drifted": (len(drifted) / len(ok)) if len(ok) else 0.0,
        "drifted": drifted,
        "critical_features": crit,
        "max_psi": max_psi,
        "max_feature": max_feature,
        "threshold": threshold,
        "critical_threshold": critical,
        "critical": bool(crit),
        "drift": bool(drifted),
        "not_computable": not_computable,
        "extra_columns": extra,
        "reasons": reasons,
    }


# --------------------------------------------------------------------------------------------
# Evidently HTML

