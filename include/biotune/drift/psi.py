"""Drift measures: PSI per feature, prediction drift, confidence, Evidently HTML reports.

Two PSI modes, both vectorised over all columns of a frame (2-D numpy, blocked along rows):

``method="evidently"``
    Exactly what Evidently 0.7.23 computes on its normal path (``DataDriftPreset(method="psi")``
    / ``ValueDrift(method="psi")``): each column is first cleaned (``±inf`` -> NaN, NaN dropped),
    then ``evidently.legacy.calculations.stattests.utils.get_binned_data``:

    * numerical column whose *reference* has more than 20 distinct values: bin edges are
      ``np.histogram_bin_edges(reference + current, bins="sturges")`` (equal-width bins over the
      combined range, ``ceil(log2(n) + 1)`` of them), bins closed on the left, last bin closed;
    * otherwise (categorical columns, and numerical columns with <= 20 distinct reference
      values): one bin per distinct value seen in reference or current;
    * shares are counts / non-missing rows; an empty bin on one side gets
      ``min(non-zero share) / 1e6`` when that minimum is <= 1e-4, else ``1e-4`` (so with large
      samples the floor is much smaller than 1e-4);
    * ``PSI = sum((ref - cur) * ln(ref / cur))``; Evidently flags drift at PSI >= 0.1.

    Values equal Evidently's to ~1e-12 (same edges, exact bin membership, same floor).

``method="quantile"`` (the classic credit-scoring PSI)
    Interior bin edges are the reference quantiles at 1/bins .. (bins-1)/bins (linear
    interpolation); the outer bins are open-ended (-inf, q1) and [q_last, +inf); duplicate edges
    collapse (a column with few distinct values gets fewer bins). Bins are closed on the left.
    Epsilon floor: an empty bin's share is replaced by ``EPS = 1e-4`` on either side before the
    logarithm (non-empty shares are left alone). Categorical columns use one bin per value with
    the same floor. A numerical reference with at most ``bins`` distinct values is binned by
    value instead: one bin per reference value plus one per gap between and outside them, so a
    constant column that moves still shows.

Missing values never count as a bin: NaN and ``±inf`` are dropped per column, shares are over the
remaining rows. A column with nothing left on either side is *not computable*: its PSI is NaN
and the reason is recorded (``DriftResult.not_computable``; ``psi(...).attrs``), never 0.

Bool columns (numpy ``bool`` and pandas ``boolean``) are categorical: they are compared value
by value as the labels "True"/"False", never binned as numbers. Values whose range float64
cannot hold (e.g. ``-1e308`` and ``1e308`` in one column) make Evidently's equal-width edges
overflow: DriftError names the column (such values should have failed validation). Files are
read by :func:`read_frame`, which gives typed errors for a missing or non-parquet file.

The library never imports Airflow; Evidently is imported only by :func:`evidently_report_html`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from biotune.errors import BiotuneError, DriftError

EPS = 1e-4
"""Share given to an empty bin in quantile mode (and Evidently's floor for small samples)."""

EVIDENTLY_PSI_THRESHOLD = 0.1
"""Evidently's default PSI drift threshold (drift when PSI >= 0.1)."""

_EVIDENTLY_MAX_DISCRETE = 20  # Evidently bins a numerical column by value when nunique <= 20
_BLOCK = 16384  # rows per block: a (columns x block) slab stays in cache
_METHODS = ("quantile", "evidently")


# --------------------------------------------------------------------------------------------
# result object


@dataclass
class DriftResult:
    """PSI per column plus what could not be computed and what was ignored.

    ``psi``: float Series indexed by column (NaN where not computable).
    ``not_computable``: column -> reason (all values missing, unsupported dtype...).
    ``extra_columns``: columns present in current but not in reference (ignored).
    ``kinds``: column -> "numerical" | "categorical".
    """

    psi: pd.Series
    method: str
    kinds: dict[str, str] = field(default_factory=dict)
    not_computable: dict[str, str] = field(default_factory=dict)
    extra_columns: list[str] = field(default_factory=list)
    n_reference: int = 0
    n_current: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (NaN PSI values become None)."""
        return {
            "method": self.method,
            "psi": {str(k): (None if pd.isna(v) else float(v)) for k, v in self.psi.items()},
            "kinds": dict(self.kinds),
            "not_computable": dict(self.not_computable),
            "extra_columns": list(self.extra_columns),
            "n_reference": int(self.n_reference),
            "n_current": int(self.n_current),
        }


# --------------------------------------------------------------------------------------------
# helpers shared by both modes


def _check_method(method: str) -> None:
    if method not in _METHODS:
        raise DriftError(
            f"unknown PSI method {method!r}",
            where="biotune.drift.psi",
            fix=f"use one of {', '.join(_METHODS)}",
        )


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


# --------------------------------------------------------------------------------------------
# Evidently mode, numerical columns: Sturges edges, exact bin membership, vectorised


def _sturges_edges(mn: np.generic, mx: np.generic, n: int, dtype: np.dtype) -> np.ndarray:
    """``np.histogram_bin_edges(a, bins="sturges")`` for data of ``dtype``, size n, min/max."""
    first, last = mn, mx
    if first == last:
        first = first - 0.5
        last = last + 0.5
    ptp = _unsigned_subtract(mx, mn)
    width = ptp / (np.log2(n) + 1.0)
    if width:
        if np.issubdtype(dtype, np.integer) and width < 1:
            width = 1
        k = int(np.ceil(_unsigned_subtract(last, first) / width))
    else:
        k = 1
    bin_type = np.result_type(first, last, np.empty(0, dtype=dtype))
    if np.issubdtype(bin_type, np.integer):
        bin_type = np.result_type(bin_type, float)
    return np.linspace(first, last, k + 1, endpoint=True, dtype=bin_type)


def _unsigned_subtract(a, b):
    """numpy's own helper (``_histograms_impl._unsigned_subtract``): exact int ranges."""
    signed_to_unsigned = {
        np.byte: np.ubyte,
        np.short: np.ushort,
        np.intc: np.uintc,
        np.int_: np.uint,
        np.longlong: np.ulonglong,
    }
    dt = np.result_type(a, b)
    try:
        unsigned_dt = signed_to_unsigned[dt.type]
    except KeyError:
        return np.subtract(a, b, dtype=dt)
    return np.subtract(np.asarray(a, dtype=dt), np.asarray(b, dtype=dt), casting="unsafe", dtype=unsigned_dt)


def _uniform_counts(arrs: list[np.ndarray], edges: list[np.ndarray], nonfinite: np.ndarray) -> np.ndarray:
    """Counts per bin for each array in ``arrs`` against its near-uniform ``edges``.

    Membership is exactly numpy's (``edge[j] <= x < edge[j+1]``, last bin closed): the bin
    index comes from one multiply-add and a truncation on a (columns x block) slab; the few
    values whose position lies within rounding distance of an edge are re-binned by comparing
    with the real edges. Non-finite values (arrays flagged in ``nonfinite``) are not counted.
    Returns an int array (columns x K), K = largest number of bins (zero padded).
    """
    c = len(arrs)
    n = len(arrs[0])
    ks = np.array([len(e) - 1 for e in edges])
    K = int(ks.max())
    W = K + 1  # one spare slot per column for values at or just past the last edge
    first = np.array([float(e[0]) for e in edges])
    last = np.array([float(e[-1]) for e in edges])
    scale = ks / (last - first)
    offs = np.arange(c, dtype=np.float64) * W
    b = (offs - first * scale)[:, None]
    s = scale[:, None]
    # rounding bound, in bin units: data/edge magnitude relative to the bin width
    mag = np.maximum(np.abs(first), np.abs(last)) * scale
    dt_eps = np.array([np.finfo(e.dtype).eps if e.dtype.kind == "f" else np.finfo(np.float64).eps for e in edges])
    tol = float(np.max(1e-9 + 64 * dt_eps * (mag + ks) + 64 * np.finfo(np.float64).eps * (offs + W)))
    interior = np.full((c, max(K - 1, 1)), np.inf)  # edges 1..k-1 of each column
    for i, e in enumerate(edges):
        interior[i, : len(e) - 2] = e[1:-1].astype(np.float64)
    if tol > 1e-3:  # pathological magnitudes: let numpy bin each column
        out = np.zeros((c, K), dtype=np.int64)
        for i, e in enumerate(edges):
            x = np.asarray(arrs[i], dtype=np.float64)
            x = x[np.isfinite(x)] if nonfinite[i] else x
            out[i, : len(e) - 1] = np.histogram(x, e.astype(np.float64))[0]
        return out

    counts = np.zeros(c * W, dtype=np.int64)
    B = min(_BLOCK, n)
    t = np.empty((c, B))
    ib = np.empty((c, B), dtype=np.intp)
    fr = np.empty((c, B))
    any_nf = bool(nonfinite.any())
    park = np.broadcast_to(offs[:, None] + 0.5, (c, B))
    lo_tol, hi_tol = tol, 1.0 - tol
    for i0 in range(0, n, B):
        m = min(B, n - i0)
        tt, ii, ff = t[:, :m], ib[:, :m], fr[:, :m]
        for j, a in enumerate(arrs):  # the copy into the slab is the multiply
            np.multiply(a[i0 : i0 + m], scale[j], out=tt[j])
        tt += b
        if any_nf:  # park missing values mid-bin 0 of their column, removed below
            bad = ~np.isfinite(tt)
            if bad.any():
                tt[bad] = park[:, :m][bad]
        np.copyto(ii, tt, casting="unsafe")  # truncation == floor (t >= -rounding)
        np.subtract(tt, ii, out=ff)  # position inside the bin, in [0, 1)
        counts += np.bincount(ii.ravel(), minlength=c * W)
        if ff.min() < lo_tol or ff.max() > hi_tol:  # a value sits within rounding of an edge
            rows, cols = np.nonzero((ff < lo_tol) | (ff > hi_tol))
            xv = np.array([arrs[r][i0 + k] for r, k in zip(rows.tolist(), cols.tolist())], dtype=np.float64)
            exact = (xv[:, None] >= interior[rows]).sum(axis=1)
            np.add.at(counts, ii[rows, cols], -1)
            np.add.at(counts, rows * W + exact, 1)
    counts = counts.reshape(c, W)
    for i in np.nonzero(nonfinite)[0]:
        counts[i, 0] -= int((~np.isfinite(arrs[i])).sum())
    return counts[:, :K]


def _distinct_more_than(arrs: list[np.ndarray], limit: int, probe: int = 4096) -> np.ndarray:
    """Per array: does it hold more than ``limit`` distinct finite values?

    Vectorised probe on the first ``probe`` values of every column at once (one 2-D sort);
    only columns the probe cannot settle are counted in full (pandas hashing).
    """
    n = len(arrs[0])
    head = np.sort(np.stack([np.asarray(a[:probe], dtype=np.float64) for a in arrs]), axis=1)
    fin = np.isfinite(head)
    newval = np.ones_like(fin)
    newval[:, 1:] = head[:, 1:] != head[:, :-1]
    out = (newval & fin).sum(axis=1) > limit
    if n > probe:
        for i in np.nonzero(~out)[0]:
            v = arrs[i]
            out[i] = pd.Series(v[np.isfinite(v)]).nunique() > limit
    return out


def _evidently_numeric(
    ref: pd.DataFrame, cur: pd.DataFrame, cols: list[str]
) -> tuple[dict[str, float], dict[str, str]]:
    values: dict[str, float] = {}
    bad: dict[str, str] = {}
    if not cols:
        return values, bad
    R = _column_arrays(ref, cols)
    C = _column_arrays(cur, cols)
    rmin, rmax, rn, rnf = _finite_stats(R)
    cmin, cmax, cn, cnf = _finite_stats(C)
    many = _distinct_more_than(R, _EVIDENTLY_MAX_DISCRETE)
    hist_idx, edges = [], []
    for i, col in enumerate(cols):
        if rn[i] == 0 or cn[i] == 0:
            bad[col] = _missing_reason(col, rn[i] == 0, cn[i] == 0)
            continue
        if not many[i]:
            values[col] = _psi_by_value(_clean(ref[col]), _clean(cur[col]), "evidently")
            continue
        # dtype of pd.concat([ref, cur]) after Evidently's dropna
        dtype = np.result_type(_clean_dtype(ref[col]), _clean_dtype(cur[col]))
        lo, hi = min(rmin[i], cmin[i]), max(rmax[i], cmax[i])
        with np.errstate(over="ignore"):
            span = float(hi) - float(lo)
        if not np.isfinite(span):
            raise DriftError(
                f"column {col!r}: values from {lo:g} to {hi:g} span more than float64 can hold, so "
                "Evidently's equal-width (Sturges) bins cannot be made",
                where="biotune.drift.psi (method='evidently')",
                fix="such values are absurd: validate the data (finite, plausible range) before drift; "
                    "method='quantile' bins by rank and still works")
        mn = dtype.type(lo)
        mx = dtype.type(hi)
        edges.append(_sturges_edges(mn, mx, int(rn[i] + cn[i]), dtype))
        hist_idx.append(i)
    if hist_idx:
        idx = np.array(hist_idx)
        rc = _counts_chunked([R[i] for i in idx], edges, rnf[idx])
        cc = _counts_chunked([C[i] for i in idx], edges, cnf[idx])
        ks = np.array([len(e) - 1 for e in edges])
        valid = np.arange(rc.shape[1])[None, :] < ks[:, None]
        rp = rc / rn[idx][:, None]
        cp = cc / cn[idx][:, None]
        rp = _floor_evidently_rows(rp, valid)
        cp = _floor_evidently_rows(cp, valid)
        rp = np.where(valid, rp, 1.0)  # padding bins contribute (1 - 1) * ln 1 = 0
        cp = np.where(valid, cp, 1.0)
        for j, v in zip(idx, _psi_sum(rp, cp, axis=1)):
            values[cols[j]] = float(v)
    return values, bad


def _clean_dtype(s: pd.Series) -> np.dtype:
    """numpy dtype of the column once Evidently has dropped its missing values."""
    dt = s.dtype
    if isinstance(dt, np.dtype) and dt.kind in "iuf":
        return dt
    if isinstance(dt, np.dtype) and dt.kind == "b":
        return np.dtype(np.float64)
    try:  # nullable extension dtypes (Int64, Float32...) -> their numpy counterpart
        return np.dtype(dt.numpy_dtype)
    except (AttributeError, TypeError):
        return np.dtype(np.float64)


def _counts_chunked(arrs: list[np.ndarray], edges: list[np.ndarray], nf: np.ndarray) -> np.ndarray:
    """Bin counts for every array, columns processed together in chunks of 8, chunks spread
    over the machine's cores (numpy releases the GIL inside its loops)."""
    K = max(len(e) - 1 for e in edges)
    chunk = 8
    parts = [list(range(s, min(s + chunk, len(arrs)))) for s in range(0, len(arrs), chunk)]

    def run(p: list[int]) -> np.ndarray:
        got = _uniform_counts([arrs[j] for j in p], [edges[j] for j in p], nf[p])
        out = np.zeros((len(p), K), dtype=np.int64)
        out[:, : got.shape[1]] = got
        return out

    workers = min(len(parts), _workers())
    if workers > 1:
        with ThreadPoolExecutor(workers) as ex:
            res = list(ex.map(run, parts))
    else:
        res = [run(p) for p in parts]
    return np.vstack(res)


WORKERS: int = 1
"""Threads used for binning column chunks (numpy releases the GIL in its loops, np.bincount
does not); 1 by default: on a shared 2-core machine a second thread measured slower."""


def _workers() -> int:
    return max(1, int(WORKERS))


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


# --------------------------------------------------------------------------------------------
# public PSI API


def _select(
    reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str] | None, where: str
) -> tuple[list[str], list[str]]:
    for name, df in (("reference", reference), ("current", current)):
        if not isinstance(df, pd.DataFrame):
            raise DriftError(
                f"{name} must be a pandas DataFrame, got {type(df).__name__}",
                where=where,
                fix=f"pass the {name} batch as a DataFrame (one column per feature)",
            )
        if len(df) == 0:
            raise DriftError(
                f"{name} data has no rows: drift cannot be computed",
                where=where,
                fix=(
                    "check that the reference window was stored and loaded"
                    if name == "reference"
                    else "check that today's batch landed and was not filtered away before drift"
                ),
            )
    if columns is None:
        cols = list(reference.columns)
    else:
        cols = list(columns)
        absent = [c for c in cols if c not in reference.columns]
        if absent:
            raise DriftError(
                f"columns missing from the reference data: {absent}",
                where=where,
                fix="rebuild the reference with these features, or drop them from the column list",
            )
    missing = [c for c in cols if c not in current.columns]
    if missing:
        raise DriftError(
            f"columns missing from the current data: {missing}",
            where=where,
            fix="the current batch must carry every reference feature: fix the feature step "
            "that produced it, or restrict `columns` to the features it has",
        )
    extra = [c for c in current.columns if c not in reference.columns]
    if columns is not None:
        extra = [c for c in extra if c not in cols]
    return cols, extra


def psi_result(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    method: str = "quantile",
    bins: int = 10,
    columns: Sequence[str] | None = None,
) -> DriftResult:
    """PSI of every column of ``reference`` (or ``columns``) against ``current``, with details.

    Numerical columns (numeric dtypes) are binned per ``method`` (see the module docstring);
    object, category, string and bool columns are compared value by value
    (:func:`psi_categorical_frame`). ``bins`` is used by quantile mode only (Evidently mode uses
    Sturges' rule, as Evidently does).

    Raises :class:`DriftError` for an empty reference or current, columns missing from current
    (named), an unknown method, or a column whose kind differs between reference and current.
    Columns only in current are ignored and listed in ``extra_columns``; columns with no value
    left after dropping NaN/inf are listed in ``not_computable`` with NaN PSI.
    """
    where = "biotune.drift.psi"
    _check_method(method)
    if method == "quantile" and (not isinstance(bins, (int, np.integer)) or bins < 2):
        raise DriftError(f"bins must be an integer >= 2, got {bins!r}", where=where, fix="use bins=10")
    cols, extra = _select(reference, current, columns, where)
    kinds: dict[str, str] = {}
    bad: dict[str, str] = {}
    for col in cols:
        kr, kc = _kind(reference[col]), _kind(current[col])
        if kr is None:
            bad[col] = f"column {col!r} has dtype {reference[col].dtype}, which PSI does not support"
            continue
        if kc != kr:
            raise DriftError(
                f"column {col!r} is {kr} ({reference[col].dtype}) in reference but "
                f"{kc or 'unsupported'} ({current[col].dtype}) in current",
                where=where,
                fix="cast the column to the reference dtype in the feature step (or rebuild the reference)",
            )
        kinds[col] = kr
    num = [c for c in cols if kinds.get(c) == "numerical"]
    cat = [c for c in cols if kinds.get(c) == "categorical"]
    try:
        if method == "evidently":
            values, nb = _evidently_numeric(reference, current, num)
        else:
            values, nb = _quantile_numeric(reference, current, num, bins)
        bad.update(nb)
        cvals, cb = _categorical_values(reference, current, cat, method)
    except BiotuneError:
        raise
    except (ValueError, TypeError, OverflowError, FloatingPointError) as exc:  # never a raw traceback
        raise DriftError(f"PSI could not be computed: {type(exc).__name__}: {exc}", where=where,
                         fix="check the feature columns (types, finite values) of reference and current") from exc
    values.update(cvals)
    bad.update(cb)
    series = pd.Series(
        [values.get(c, np.nan) for c in cols], index=pd.Index(cols, dtype=object), dtype=np.float64, name="psi"
    )
    series.attrs.update({"method": method, "not_computable": dict(bad), "extra_columns": list(extra)})
    return DriftResult(
        psi=series,
        method=method,
        kinds=kinds,
        not_computable=bad,
        extra_columns=extra,
        n_reference=len(reference),
        n_current=len(current),
    )


def psi(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    method: str = "quantile",
    bins: int = 10,
    columns: Sequence[str] | None = None,
) -> pd.Series:
    """PSI per column (index = column). See :func:`psi_result` for the rules and errors.

    Columns that cannot be computed hold NaN; ``series.attrs`` carries ``not_computable``
    (column -> reason), ``extra_columns`` and ``method``.
    """
    return psi_result(reference, current, method=method, bins=bins, columns=columns).psi


def _categorical_values(
    reference: pd.DataFrame, current: pd.DataFrame, cols: list[str], method: str
) -> tuple[dict[str, float], dict[str, str]]:
    values: dict[str, float] = {}
    bad: dict[str, str] = {}
    for col in cols:
        r, c = _clean(reference[col]), _clean(current[col])
        if len(r) == 0 or len(c) == 0:
            bad[col] = _missing_reason(col, len(r) == 0, len(c) == 0)
            continue
        values[col] = _psi_by_value(r, c, method)
    return values, bad


def psi_categorical(ref: pd.Series | Iterable, cur: pd.Series | Iterable, method: str = "evidently") -> float:
    """PSI of one categorical variable: one bin per value seen in either sample.

    ``method="evidently"`` applies Evidently's empty-bin floor (equal to its psi stattest on a
    categorical column); ``method="quantile"`` floors empty bins at :data:`EPS`.
    Missing values are dropped. Raises :class:`DriftError` when a side has no values.
    """
    _check_method(method)
    r = _clean(ref if isinstance(ref, pd.Series) else pd.Series(list(ref), dtype=object))
    c = _clean(cur if isinstance(cur, pd.Series) else pd.Series(list(cur), dtype=object))
    for name, s in (("reference", r), ("current", c)):
        if len(s) == 0:
            raise DriftError(
                f"{name} sample has no non-missing values",
                where="biotune.drift.psi_categorical",
                fix=f"pass a non-empty {name} sample",
            )
    return _psi_by_value(r, c, method)


def psi_categorical_frame(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    method: str = "evidently",
    columns: Sequence[str] | None = None,
) -> pd.Series:
    """:func:`psi_categorical` for every object/category/string/bool column of the frames."""
    _check_method(method)
    if columns is None:
        columns = [c for c in reference.columns if _kind(reference[c]) == "categorical"]
    return psi(reference, current, method=method, columns=list(columns))


# --------------------------------------------------------------------------------------------
# predictions

