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

Where the code is: :mod:`.shares` (what both modes share), :mod:`.sturges` (Evidently mode,
numerical), :mod:`.quantile` (quantile mode, numerical); this module holds the result and the
public functions. The library never imports Airflow; Evidently is imported only by
:mod:`biotune.drift.report`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from biotune.drift.quantile import _quantile_numeric
from biotune.drift.shares import (EPS, EVIDENTLY_PSI_THRESHOLD, _as_labels, _clean, _kind, _missing_reason,
                                  _psi_by_value)
from biotune.drift.sturges import WORKERS, _evidently_numeric, _sturges_edges
from biotune.errors import BiotuneError, DriftError

METHODS = ("quantile", "evidently")

__all__ = ["EPS", "EVIDENTLY_PSI_THRESHOLD", "METHODS", "WORKERS", "DriftResult", "psi", "psi_result",
           "psi_categorical", "psi_categorical_frame", "_sturges_edges", "_as_labels", "_clean", "_kind"]


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
# method check


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise DriftError(
            f"unknown PSI method {method!r}",
            where="biotune.drift.psi",
            fix=f"use one of {', '.join(METHODS)}",
        )


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
