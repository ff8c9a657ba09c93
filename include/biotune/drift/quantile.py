"""PSI in quantile mode, numerical columns: reference-quantile edges, open outer bins, EPS floor
(see :mod:`biotune.drift.psi` for the rules)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from biotune.drift.shares import EPS, _column_arrays, _finite_stats, _missing_reason, _psi_sum


# --------------------------------------------------------------------------------------------
# quantile mode, numerical columns


def _quantile_numeric(
    ref: pd.DataFrame, cur: pd.DataFrame, cols: list[str], bins: int
) -> tuple[dict[str, float], dict[str, str]]:
    values: dict[str, float] = {}
    bad: dict[str, str] = {}
    if not cols:
        return values, bad
    R = _column_arrays(ref, cols)
    C = _column_arrays(cur, cols)
    _, _, rn, rnf = _finite_stats(R)
    _, _, cn, cnf = _finite_stats(C)
    ok = (rn > 0) & (cn > 0)
    for i in np.nonzero(~ok)[0]:
        bad[cols[i]] = _missing_reason(cols[i], rn[i] == 0, cn[i] == 0)
    idx = np.nonzero(ok)[0]
    if idx.size == 0:
        return values, bad
    qs = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    chunk = 8
    for s0 in range(0, idx.size, chunk):
        part = idx[s0 : s0 + chunk]
        rs = _sorted_finite([R[i] for i in part], rnf[part])
        cs = _sorted_finite([C[i] for i in part], cnf[part])
        for j, i in enumerate(part):
            r = rs[j]
            distinct = r[np.r_[True, r[1:] != r[:-1]]]
            if distinct.size <= bins:  # few reference values: bin by value, plus the gaps
                rp = _point_gap_shares(r, distinct)
                cp = _point_gap_shares(cs[j], distinct)
            else:  # reference quantiles (of sorted data: cheap); duplicate edges collapse
                edges = np.unique(np.quantile(r, qs))
                rp = _sorted_shares(r, edges)
                cp = _sorted_shares(cs[j], edges)
            rp = np.where(rp == 0, EPS, rp)
            cp = np.where(cp == 0, EPS, cp)
            values[cols[i]] = float(_psi_sum(rp, cp))
    return values, bad


def _sorted_finite(arrs: list[np.ndarray], nonfinite: np.ndarray) -> list[np.ndarray]:
    """Sorted finite values of each array; columns of equal length sorted as one 2-D block."""
    if not nonfinite.any() and len({len(a) for a in arrs}) == 1:
        return list(np.sort(np.stack(arrs).astype(np.float64, copy=False), axis=1))
    return [np.sort(a[np.isfinite(a)] if f else a).astype(np.float64, copy=False) for a, f in zip(arrs, nonfinite)]


def _point_gap_shares(sorted_x: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Shares of: below values[0], == values[0], between, == values[1], ..., above values[-1]."""
    left = np.searchsorted(sorted_x, values, side="left")
    right = np.searchsorted(sorted_x, values, side="right")
    bounds = np.r_[0, np.column_stack([left, right]).ravel(), sorted_x.size]
    return np.diff(bounds) / sorted_x.size


def _sorted_shares(sorted_x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Shares of left-closed bins (-inf, e1) [e1, e2) ... [e_last, inf) from sorted data."""
    cut = np.searchsorted(sorted_x, edges, side="left")  # values < edge (inf edge -> n)
    cnt = np.diff(np.concatenate(([0], cut, [sorted_x.size])))
    return cnt / sorted_x.size
