"""The Evidently HTML drift report of one (model, date): in the lake and on the champion's MLflow run."""

from __future__ import annotations

import logging
from typing import Sequence

from biotune.dates import as_date

log = logging.getLogger(__name__)


def report_dir(model: str, date) -> str:
    from biotune import storage

    return storage.lake_path("reports", "drift", model, as_date(date).isoformat())


def write_report(reference, current, model: str, date, run_id: str | None, columns: Sequence[str], *,
                 version: str | None = None, method: str = "quantile", bins: int = 10,
                 threshold: float | None = None, psi: dict | None = None, notes: Sequence[str] = ()) -> str | None:
    """Evidently HTML in the lake and attached to the champion's MLflow run under monitoring/<date>/.

    ``psi``: the per-feature PSI the history row records (``measure(...)["psi"]``): the report shows
    exactly these values and their drifted count, or is not written. Titled with model, version,
    date and method."""
    import tempfile
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from biotune import drift, registry, storage

    day = as_date(date).isoformat()
    columns = list(columns)
    measured = None
    if psi is not None:
        values = pd.Series([psi.get(str(c)) for c in columns], index=pd.Index(columns, dtype=object), dtype=np.float64)
        measured = drift.DriftResult(psi=values, method=method)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "drift_report.html"
        try:
            title = f"{model} v{version or '?'} · {day} · {drift.method_label(method, bins)}"
            drift.evidently_report_html(reference[columns], current[columns], local, columns=columns, method=method,
                                        bins=bins, threshold=threshold, title=title, measured=measured, notes=notes)
        except Exception as exc:  # the report is documentation; the PSI row does not depend on it
            log.warning("%s %s: the Evidently report could not be written (%s: %s)", model, day,
                        type(exc).__name__, exc)
            return None
        uri = storage.join(report_dir(model, day), "drift_report.html")
        storage.upload_file(str(local), uri)
        if run_id:
            client = registry.configure()
            with registry._registry_call(f"attach the drift report of {model} {day}"):
                client.log_artifact(run_id, str(local), artifact_path=f"monitoring/{day}")
    return uri
