"""The Evidently HTML drift report (Evidently imported only here)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from biotune.drift.psi import _as_labels, _kind, _select
from biotune.errors import DriftError


def evidently_report_html(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    out_path: str | os.PathLike,
    columns: Sequence[str] | None = None,
    method: str | None = "psi",
    threshold: float | None = None,
    title: str | None = None,
) -> str:
    """Write Evidently 0.7's data-drift report (``DataDriftPreset``) as HTML; return the path.

    Uses the 0.7 API: ``Report([DataDriftPreset(...)]).run(current, reference)`` returns a
    snapshot whose ``save_html`` writes the file. Columns are typed explicitly through a
    ``DataDefinition`` (numeric dtypes numerical, object/category/bool categorical), so the
    per-column drift test is the same PSI as :func:`psi` in Evidently mode (``method="psi"``;
    pass ``None`` for Evidently's automatic choice), flagged at ``threshold`` (the spec's; None:
    Evidently's 0.1). ``title`` heads the page (model, version, date, method). Written atomically.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    where = "biotune.drift.evidently_report_html"
    cols, _extra = _select(reference, current, columns, where)
    num, cat, skipped = [], [], []
    for col in cols:
        k = _kind(reference[col])
        if k == "numerical":
            num.append(col)
        elif k == "categorical":
            cat.append(col)
        else:
            skipped.append(col)
    usable = [c for c in cols if c in num or c in cat]
    if not usable:
        raise DriftError(
            "no numerical or categorical column to report on",
            where=where,
            fix="pass frames with numeric, object, category or bool feature columns",
        )
    ref = reference[usable].copy()
    cur = current[usable].copy()
    for col in cat:  # Evidently's categorical handling expects hashable, comparable labels
        if pd.api.types.is_bool_dtype(ref[col].dtype) or pd.api.types.is_bool_dtype(cur[col].dtype):
            ref[col] = _as_labels(ref[col])
            cur[col] = _as_labels(cur[col])
    rename = {c: str(c) for c in usable}
    ref.columns = [rename[c] for c in usable]
    cur.columns = [rename[c] for c in usable]
    definition = DataDefinition(
        numerical_columns=[rename[c] for c in num],
        categorical_columns=[rename[c] for c in cat],
    )
    for col in num:  # the same overflow check as psi(): Evidently would fail deep inside numpy
        both = pd.concat([ref[rename[col]], cur[rename[col]]]).replace([np.inf, -np.inf], np.nan).dropna()
        if len(both):
            with np.errstate(over="ignore"):
                span = float(both.max()) - float(both.min())
            if not np.isfinite(span):
                raise DriftError(f"column {col!r}: values from {both.min():g} to {both.max():g} span more than "
                                 "float64 can hold; Evidently cannot bin them", where=where,
                                 fix="validate the data (finite, plausible range) before drift")
    report = Report([DataDriftPreset(columns=[rename[c] for c in usable], method=method, threshold=threshold)])
    try:
        snapshot = report.run(
            Dataset.from_pandas(cur, data_definition=definition),
            Dataset.from_pandas(ref, data_definition=definition),
        )
    except (ValueError, TypeError, OverflowError, FloatingPointError, KeyError) as exc:
        raise DriftError(f"Evidently could not build the drift report: {type(exc).__name__}: {exc}", where=where,
                         fix="check the feature columns (types, finite values) of reference and current") from exc
    from biotune import storage

    with storage.atomic_local_path(str(out_path), suffix=".html") as tmp:
        snapshot.save_html(tmp)
        if title:
            import html as _html

            page = Path(tmp).read_text()
            banner = (f'<div style="font:600 16px system-ui;padding:10px 16px;background:#edf2f7">'
                      f'{_html.escape(title)}</div>')
            page = page.replace("<head>", f"<head><title>{_html.escape(title)}</title>", 1)
            page = page.replace("<body>", "<body>" + banner, 1) if "<body>" in page else banner + page
            Path(tmp).write_text(page)
    return str(out_path)

