"""PSI in Evidently mode, numerical columns: Sturges equal-width edges over reference + current,
exact bin membership, vectorised over columns (see :mod:`biotune.drift.psi` for the rules)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from biotune.drift.shares import (_clean, _finite_stats, _column_arrays, _floor_evidently_rows, _missing_reason,
                                  _psi_by_value, _psi_sum)
from biotune.errors import DriftError

_EVIDENTLY_MAX_DISCRETE = 20  # Evidently bins a numerical column by value when nunique <= 20
_BLOCK = 16384  # rows per block: a (columns x block) slab stays in cache


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
