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
                 version: str | None = None, method: str = "quantile", threshold: float | None = None) -> str | None:
    """Evidently HTML in the lake and attached to the champion's MLflow run under monitoring/<date>/."""
    import tempfile
    from pathlib import Path

    from biotune import drift, registry, storage

    day = as_date(date).isoformat()
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "drift_report.html"
        try:
            title = (f"{model} v{version or '?'} · {day} · PSI ({'Evidently binning' if method == 'evidently' else 'quantile bins in the history; Evidently binning here'}) "
                     f"· drift at PSI >= {threshold if threshold is not None else 0.1}")
            drift.evidently_report_html(reference[list(columns)], current[list(columns)], local,
                                        columns=list(columns), threshold=threshold, title=title)
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

