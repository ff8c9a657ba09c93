"""The Evidently HTML drift report (Evidently imported only here), showing biotune's own PSI.

One computation is the source of truth: :func:`biotune.drift.psi_result` with the model spec's
method and bins, the numbers the drift history records. Evidently's own ``psi`` stattest bins
numerical columns with Sturges equal-width edges over reference + current and floors empty bins
at ``min share / 1e6`` (see :mod:`biotune.drift.psi`), so for a ``quantile`` spec it gives other
values and another drifted count (on a generated mood day: 11 of 36 features drifted, max PSI 4.14,
against the history's 9 of 36, max 3.65). The report therefore runs Evidently with a stattest that
*is* biotune's PSI for that method and bins (Evidently mode keeps Evidently's own ``psi``, which
biotune reproduces), then reads the values back from Evidently's snapshot and refuses to write a
report whose figures differ from the measured ones.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from biotune.drift.psi import DriftResult, _as_labels, _kind, _select, psi_result
from biotune.drift.shares import EVIDENTLY_PSI_THRESHOLD
from biotune.errors import DriftError

_TOLERANCE = 1e-9  # relative: the same code computes both sides, so they agree to rounding


@dataclass
class ReportFigures:
    """What the report shows, read back from Evidently's snapshot (equal to the measured PSI)."""

    path: str
    psi: dict[str, float]       # per reported column
    n_drifted: int              # Evidently's drifted-columns count (PSI >= threshold)
    n_columns: int
    threshold: float
    method: str
    bins: int | None


def method_label(method: str, bins: int | None = None) -> str:
    """The PSI method in words, as the report title and the page show it."""
    if method == "quantile":
        return f"PSI, {bins} reference-quantile bins, empty bins 1e-4"
    return "PSI, Evidently binning (Sturges equal-width over reference + current)"


def _stattest(method: str, bins: int):
    """Evidently's stattest for a biotune PSI method: ``psi`` itself in Evidently mode, else a
    registered stattest whose value is :func:`psi_result` on the column (registered once per bins)."""
    if method == "evidently":
        return "psi"
    from evidently.legacy.calculations.stattests.registry import (StatTest, _registered_stat_tests,
                                                                  register_stattest)
    from evidently.legacy.core import ColumnType

    name = f"biotune_psi_{method}_{bins}"
    if name not in _registered_stat_tests:
        def _impl(reference: pd.Series, current: pd.Series, feature_type, threshold: float):
            value = float(psi_result(reference.to_frame("x"), current.to_frame("x"), method=method, bins=bins).psi["x"])
            return value, value >= threshold  # drifted exactly as drift_summary counts it

        register_stattest(StatTest(name=name, display_name=f"PSI ({bins} quantile bins)",
                                   allowed_feature_types=[ColumnType.Numerical, ColumnType.Categorical],
                                   default_threshold=0.2), _impl)
    return name


def _snapshot_figures(snapshot) -> tuple[dict[str, float], int | None]:
    """Per-column drift scores and the drifted-columns count from an Evidently 0.7 snapshot."""
    values: dict[str, float] = {}
    count = None
    for metric in snapshot.dict().get("metrics", []):
        name, config, value = metric.get("metric_name", ""), metric.get("config") or {}, metric.get("value")
        if name.startswith("ValueDrift"):
            values[str(config.get("column"))] = float(value)
        elif name.startswith("DriftedColumnsCount") and isinstance(value, dict):
            count = int(round(float(value.get("count", 0))))
    return values, count


def evidently_report_html(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    out_path: str | os.PathLike,
    columns: Sequence[str] | None = None,
    method: str = "quantile",
    bins: int = 10,
    threshold: float | None = None,
    title: str | None = None,
    measured: DriftResult | None = None,
    notes: Sequence[str] = (),
) -> ReportFigures:
    """Write Evidently 0.7's data-drift report (``DataDriftPreset``) as HTML, with biotune's PSI.

    ``method``/``bins`` are the spec's (``drift.method``, ``drift.bins``); ``threshold`` the spec's
    drifted-feature threshold (None: Evidently's 0.1). ``measured``: the PSI the history records
    (computed here when None); the report must show exactly these values and the same drifted count,
    else :class:`DriftError`. Columns PSI cannot compute are left out of Evidently (it rejects empty
    columns) and named in the banner. ``title`` heads the page (model, version, date, method);
    ``notes`` are lines under it. Uses the 0.7 API: ``Report([...]).run(current, reference)``
    returns a snapshot whose ``save_html`` writes the file (atomically here).
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    where = "biotune.drift.evidently_report_html"
    cols, _extra = _select(reference, current, columns, where)
    result = measured if measured is not None else psi_result(reference, current, method=method, bins=bins,
                                                              columns=cols)
    if result.method != method:
        raise DriftError(f"the measured PSI used method {result.method!r}, the report {method!r}", where=where,
                         fix="render the report with the spec's drift.method, the one the history used")
    threshold = EVIDENTLY_PSI_THRESHOLD if threshold is None else float(threshold)
    usable = [c for c in cols if c in result.psi.index and pd.notna(result.psi[c])]
    num = [c for c in usable if _kind(reference[c]) == "numerical"]
    cat = [c for c in usable if _kind(reference[c]) == "categorical"]
    if not usable:
        raise DriftError("no column has a computable PSI to report on", where=where,
                         fix="check the batch: every feature is missing on one side (see the drift history)")
    ref = reference[usable].copy()
    cur = current[usable].copy()
    for col in cat:  # Evidently's categorical handling expects hashable, comparable labels
        ref[col], cur[col] = _as_labels(ref[col]), _as_labels(cur[col])
    names = {c: str(c) for c in usable}
    ref.columns = cur.columns = [names[c] for c in usable]
    definition = DataDefinition(numerical_columns=[names[c] for c in num],
                                categorical_columns=[names[c] for c in cat])
    preset = DataDriftPreset(columns=[names[c] for c in usable], method=_stattest(method, bins), threshold=threshold)
    try:
        snapshot = Report([preset]).run(Dataset.from_pandas(cur, data_definition=definition),
                                        Dataset.from_pandas(ref, data_definition=definition))
    except (ValueError, TypeError, OverflowError, FloatingPointError, KeyError) as exc:
        raise DriftError(f"Evidently could not build the drift report: {type(exc).__name__}: {exc}", where=where,
                         fix="check the feature columns (types, finite values) of reference and current") from exc
    shown, count = _snapshot_figures(snapshot)
    expected = {names[c]: float(result.psi[c]) for c in usable}
    differ = [f"{c}: report {shown.get(c)} vs measured {v}" for c, v in expected.items()
              if c not in shown or not np.isclose(shown[c], v, rtol=_TOLERANCE, atol=1e-12)]
    n_drifted = sum(v >= threshold for v in expected.values())
    if differ or count != n_drifted:
        raise DriftError(f"the Evidently report disagrees with the measured PSI ({method}): "
                         f"{count} vs {n_drifted} drifted; " + "; ".join(differ[:3]), where=where,
                         fix="report a bug: the report must be built with the spec's method and bins")
    skipped = [c for c in cols if c not in usable]
    top = max(expected, key=expected.get)
    lines = [f"{method_label(method, bins)} · {n_drifted} of {len(usable)} features drifted at PSI >= {threshold:g}"
             f" · max PSI {expected[top]:.3f} on {top}", *notes]
    if skipped:
        lines.append(f"not computable (left out): {', '.join(map(str, skipped))}")
    from biotune import storage

    with storage.atomic_local_path(str(out_path), suffix=".html") as tmp:
        snapshot.save_html(tmp)
        page = Path(tmp).read_text()
        head = title or "drift report"
        banner = ('<div style="font:600 16px system-ui;padding:10px 16px;background:#edf2f7">'
                  f'{html.escape(head)}' + "".join(f'<div style="font-weight:400;font-size:14px">{html.escape(x)}</div>'
                                                   for x in lines) + "</div>")
        page = page.replace("<head>", f"<head><title>{html.escape(head)}</title>", 1)
        page = page.replace("<body>", "<body>" + banner, 1) if "<body>" in page else banner + page
        Path(tmp).write_text(page)
    return ReportFigures(path=str(out_path), psi=expected, n_drifted=n_drifted, n_columns=len(usable),
                         threshold=threshold, method=method, bins=bins if method == "quantile" else None)
