"""What both PSI modes share: column kinds, cleaning, shares per value, empty-bin floors, the PSI sum."""

from __future__ import annotations

import numpy as np
import pandas as pd

EPS = 1e-4
"""Share given to an empty bin in quantile mode (and Evidently's floor for small samples)."""

EVIDENTLY_PSI_THRESHOLD = 0.1
"""Evidently's default PSI drift threshold (drift when PSI >= 0.1)."""


def _kind(s: pd.Series) -> str | None:
    dt = s.dtype
    if pd.api.types.is_bool_dtype(dt):
        return "categorical"
    if pd.api.types.is_numeric_dtype(dt):
        return "numerical"
    if (
        isinstance(dt, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(dt)
        or pd.api.types.is_string_dtype(dt)
    ):
        return "categorical"
    return None  # datetimes, timedeltas, periods, intervals...


def _floor_evidently(p: np.ndarray) -> np.ndarray:
    """Evidently's ``feel_zeroes`` rule on a 1-D share vector (in place, returned)."""
    nz = p[p != 0]
    if nz.size == 0:  # cannot happen with a non-empty sample; Evidently would raise here
        return p
    m = nz.min()
    np.place(p, p == 0, m / 10**6 if m <= 0.0001 else 0.0001)
    return p


def _floor_evidently_rows(p: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Row-wise Evidently floor for a (columns x bins) share matrix; ``valid`` masks real bins."""
    nz = np.where(valid & (p != 0), p, np.inf).min(axis=1)
    fill = np.where(nz <= 0.0001, nz / 10**6, 0.0001)
    return np.where(valid & (p == 0), fill[:, None], p)


def _psi_sum(r: np.ndarray, c: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.sum((r - c) * np.log(r / c), axis=axis)


def _as_labels(s: pd.Series) -> pd.Series:
    """A bool column as object labels "True"/"False" (missing kept): compared value by value."""
    if pd.api.types.is_bool_dtype(s.dtype):
        out = s.astype(object).where(s.notna(), None)
        return out.map(lambda v: None if v is None else ("True" if bool(v) else "False")).astype(object)
    return s


def _clean(s: pd.Series) -> pd.Series:
    """Evidently's cleaning: ``±inf`` -> NaN, then drop NaN."""
    s = _as_labels(s)
    if s.dtype == object:
        return s.dropna()
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        v = s.to_numpy()
        if v.dtype.kind == "f" and np.isfinite(v).all():
            return s
        return s.replace([-np.inf, np.inf], np.nan).dropna()
    return s.replace([-np.inf, np.inf], np.nan).dropna()


def _shares_by_value(ref: pd.Series, cur: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Shares per distinct value (union of both sides, values seen in neither dropped)."""
    rc = ref.value_counts(dropna=True)
    cc = cur.value_counts(dropna=True)
    rc = rc[rc > 0]
    cc = cc[cc > 0]
    both = pd.concat([rc.rename("r"), cc.rename("c")], axis=1).fillna(0)
    return (
        both["r"].to_numpy(dtype=np.float64) / len(ref),
        both["c"].to_numpy(dtype=np.float64) / len(cur),
    )


def _psi_by_value(ref: pd.Series, cur: pd.Series, method: str) -> float:
    rp, cp = _shares_by_value(ref, cur)
    if method == "evidently":
        _floor_evidently(rp)
        _floor_evidently(cp)
    else:
        rp = np.where(rp == 0, EPS, rp)
        cp = np.where(cp == 0, EPS, cp)
    return float(_psi_sum(rp, cp))


def _column_arrays(df: pd.DataFrame, cols: list[str]) -> list[np.ndarray]:
    """One 1-D numpy array per column: a view for numpy int/float columns, else float64."""
    out = []
    for col in cols:
        s = df[col]
        if isinstance(s.dtype, np.dtype) and s.dtype.kind in "iuf":
            out.append(s.to_numpy())
        else:
            out.append(s.to_numpy(dtype=np.float64, na_value=np.nan))
    return out


def _finite_stats(arrs: list[np.ndarray]):
    """min, max, count of finite values, and has-non-finite flag, per array."""
    c = len(arrs)
    mn = np.empty(c)
    mx = np.empty(c)
    n = np.empty(c, dtype=np.int64)
    nonfinite = np.zeros(c, dtype=bool)
    with np.errstate(invalid="ignore"):
        for i, a in enumerate(arrs):
            n[i] = a.size
            if a.size == 0:
                nonfinite[i] = True
                continue
            lo, hi = a.min(), a.max()
            if a.dtype.kind == "f" and not (np.isfinite(lo) and np.isfinite(hi)):
                nonfinite[i] = True
                fin = np.isfinite(a)
                n[i] = int(fin.sum())
                if n[i]:
                    lo, hi = a[fin].min(), a[fin].max()
            mn[i], mx[i] = lo, hi
    return mn, mx, n, nonfinite


def _missing_reason(col: str, ref_empty: bool, cur_empty: bool) -> str:
    side = "reference and current" if ref_empty and cur_empty else ("reference" if ref_empty else "current")
    return f"column {col!r} has no values in {side} (all missing or infinite): PSI not computable"
