"""The monitoring loop's services: drift history, measuring one (model, date), retraining decisions, alerts.

Family-independent. A family plugs in through a module with ``FAMILY``, ``batch_uri(date)``,
``load_current(model_name, date, version)`` (returns an object with ``features``, ``proba``,
``prediction``, ``labels``, ``threshold``, ``predictions_uri``, ``n_rows``) and
``reference_features(frame)``; see :mod:`biotune.mood.scoring`. This module never imports a
family: the caller passes the module in.

History (SQLAlchemy; :func:`biotune.settings.drift_db_uri`, SQLite by default, PostgreSQL when
configured):

``drift_history``  one row per (model, date), upserted: a re-run date replaces its row.
    status is 'ok' (measured), 'missing' (no batch landed that day: not drift) or 'error' (the
    batch or the reference was unusable; ``error`` holds the typed message).
``retraining_decisions``  append-only log: every evaluation of the retraining rule, yes or no,
    with its reasons and the facts it was given.

Decisions are pure: :func:`retraining_decision` takes history rows, the spec and
:class:`RetrainFacts` and returns a :class:`biotune.policy.Decision` whose reasons say, for each
condition, ``yes: ...`` or ``not: ...``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

from biotune import settings
from biotune.errors import DataValidationError, DriftError, InputFormatError, MissingInputError
from biotune.policy import Decision
from biotune.specs import ModelSpec

log = logging.getLogger(__name__)

DRIFT_TABLE = "drift_history"
DECISIONS_TABLE = "retraining_decisions"
STATUSES = ("ok", "missing", "error")
COLLAPSE_MIN_GAIN = 0.25  # share a dominant predicted class must gain over the reference to count as collapse
# bad input: recorded as status 'error' (a retry will not fix it); anything else propagates
BAD_INPUT = (DriftError, MissingInputError, DataValidationError, InputFormatError)

_tables_lock = threading.Lock()
_engines: dict[str, Any] = {}
_metadata = None


# ============================================================================ dates


def as_date(value) -> dt.date:
    """A date from a date, datetime, pendulum object or ISO string ('2026-10-01', '2026-10-01T00:00:00+00:00')."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip()[:10])
    except ValueError as exc:
        raise InputFormatError(f"not a date: {value!r}", where="biotune.monitoring",
                               fix="use YYYY-MM-DD") from exc


# ============================================================================ tables


def _tables():
    global _metadata
    import sqlalchemy as sa

    with _tables_lock:
        if _metadata is None:
            md = sa.MetaData()
            sa.Table(
                DRIFT_TABLE, md,
                sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                sa.Column("model", sa.String(200), nullable=False),
                sa.Column("model_version", sa.String(50)),
                sa.Column("date", sa.Date, nullable=False),
                sa.Column("status", sa.String(16), nullable=False),
                sa.Column("n_rows", sa.Integer, nullable=False, default=0),
                sa.Column("max_psi", sa.Float),
                sa.Column("max_feature", sa.String(200)),
                sa.Column("drifted_features", sa.Integer, nullable=False, default=0),
                sa.Column("drifted", sa.JSON),
                sa.Column("psi", sa.JSON),
                sa.Column("not_computable", sa.JSON),
                sa.Column("critical", sa.Boolean, nullable=False, default=False),
                sa.Column("mean_confidence", sa.Float),
                sa.Column("share_low_confidence", sa.Float),
                sa.Column("positive_share", sa.Float),
                sa.Column("prediction_psi", sa.Float),
                sa.Column("prediction_collapse", sa.Boolean, nullable=False, default=False),
                sa.Column("labeled_n", sa.Integer, nullable=False, default=0),
                sa.Column("label_counts", sa.JSON),
                sa.Column("error_rate", sa.Float),
                sa.Column("reference_error_rate", sa.Float),
                sa.Column("report_uri", sa.Text),
                sa.Column("predictions_uri", sa.Text),
                sa.Column("error", sa.Text),
                sa.Column("run_id", sa.String(250)),
                sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
                sa.UniqueConstraint("model", "date", name="uq_drift_history_model_date"),
            )
            sa.Table(
                DECISIONS_TABLE, md,
                sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                sa.Column("model", sa.String(200), nullable=False, index=True),
                sa.Column("date", sa.Date, nullable=False),
                sa.Column("decision", sa.String(8), nullable=False),
                sa.Column("reasons", sa.JSON, nullable=False),
                sa.Column("facts", sa.JSON),
                sa.Column("dag_id", sa.String(250)),
                sa.Column("run_id", sa.String(250)),
                sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            )
            _metadata = md
    return _metadata


def engine(uri: str | None = None):
    """A SQLAlchemy engine for the history (created once per URI per process; tables created if absent)."""
    import sqlalchemy as sa

    uri = uri or settings.drift_db_uri()
    eng = _engines.get(uri)
    if eng is not None:
        return eng
    kwargs: dict[str, Any] = {"future": True, "pool_pre_ping": True}
    if uri.startswith("sqlite"):
        path = uri.split("///", 1)[1] if "///" in uri else ""
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        kwargs["connect_args"] = {"timeout": 60}
    try:
        eng = sa.create_engine(uri, **kwargs)
        _tables().create_all(eng, checkfirst=True)
    except Exception as exc:
        from biotune.errors import StorageError

        raise StorageError(f"cannot open the drift history database: {type(exc).__name__}: "
                           f"{_redact_uri(str(exc))}", where=_redact_uri(uri),
                           fix="check BIOTUNE_DRIFT_DB (a SQLAlchemy URI) and that the database answers") from exc
    _engines[uri] = eng
    return eng


def dispose(uri: str | None = None) -> None:
    """Close the pooled connections of one URI (or all): tests dropping a database call this first."""
    for key in [uri] if uri else list(_engines):
        eng = _engines.pop(key, None)
        if eng is not None:
            eng.dispose()


def _redact_uri(text: str) -> str:
    """Hide passwords in ``scheme://user:password@host`` strings."""
    import re

    return re.sub(r"(://[^:/@\s]+):[^@\s]+@", r"\1:***@", text)


def _table(name: str):
    return _tables().tables[name]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


_DRIFT_DEFAULTS = {
    "model_version": None, "n_rows": 0, "max_psi": None, "max_feature": None, "drifted_features": 0,
    "drifted": [], "psi": {}, "not_computable": {}, "critical": False, "mean_confidence": None,
    "share_low_confidence": None, "positive_share": None, "prediction_psi": None, "prediction_collapse": False,
    "labeled_n": 0, "label_counts": {}, "error_rate": None, "reference_error_rate": None, "report_uri": None,
    "predictions_uri": None, "error": None, "run_id": None,
}


def _clean_json(value):
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {str(k): _clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_json(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def upsert_drift(row: dict, uri: str | None = None) -> dict:
    """Insert or replace the (model, date) row of ``drift_history``; return the stored row.

    One statement (``INSERT ... ON CONFLICT (model, date) DO UPDATE``) on SQLite and PostgreSQL,
    so a re-run date never leaves two rows, even with concurrent writers.
    """
    import sqlalchemy as sa

    if not row.get("model"):
        raise DriftError("a drift history row needs a model", where="biotune.monitoring.upsert_drift",
                         fix="pass model=<registered name>")
    status = row.get("status", "ok")
    if status not in STATUSES:
        raise DriftError(f"status {status!r} is not one of {STATUSES}", where="biotune.monitoring.upsert_drift",
                         fix="use 'ok', 'missing' or 'error'")
    values = {**_DRIFT_DEFAULTS, **{k: v for k, v in row.items() if k in _DRIFT_DEFAULTS or k in
                                     ("model", "date", "status")}}
    values["date"] = as_date(row["date"])
    values["status"] = status
    values["created_at"] = _now()
    for key in ("drifted", "psi", "not_computable", "label_counts"):
        values[key] = _clean_json(values[key] if values[key] is not None else _DRIFT_DEFAULTS[key])
    for key in ("max_psi", "mean_confidence", "share_low_confidence", "positive_share", "prediction_psi",
                "error_rate", "reference_error_rate"):
        v = values[key]
        values[key] = None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)
    for key in ("n_rows", "drifted_features", "labeled_n"):
        values[key] = int(values[key] or 0)
    values["critical"] = bool(values["critical"])
    values["prediction_collapse"] = bool(values["prediction_collapse"])
    if values["model_version"] is not None:
        values["model_version"] = str(values["model_version"])
    table = _table(DRIFT_TABLE)
    eng = engine(uri)
    update = {k: v for k, v in values.items() if k not in ("model", "date")}
    with eng.begin() as conn:
        dialect = eng.dialect.name
        if dialect in ("sqlite", "postgresql"):
            if dialect == "sqlite":
                from sqlalchemy.dialects.sqlite import insert
            else:
                from sqlalchemy.dialects.postgresql import insert
            stmt = insert(table).values(**values)
            stmt = stmt.on_conflict_do_update(index_elements=["model", "date"], set_=update)
            conn.execute(stmt)
        else:  # other databases: replace inside one transaction
            conn.execute(sa.delete(table).where(table.c.model == values["model"], table.c.date == values["date"]))
            conn.execute(sa.insert(table).values(**values))
    return {**values, "date": values["date"].isoformat()}


def _row_dict(row) -> dict:
    d = dict(row._mapping)
    for key in ("date",):
        if isinstance(d.get(key), dt.date):
            d[key] = d[key].isoformat()
    if isinstance(d.get("created_at"), dt.datetime):
        d["created_at"] = d["created_at"].isoformat()
    return d


def history(model: str | None = None, *, since=None, until=None, uri: str | None = None) -> list[dict]:
    """Drift history rows (dates as ISO strings), oldest first."""
    import sqlalchemy as sa

    table = _table(DRIFT_TABLE)
    q = sa.select(table)
    if model:
        q = q.where(table.c.model == model)
    if since is not None:
        q = q.where(table.c.date >= as_date(since))
    if until is not None:
        q = q.where(table.c.date <= as_date(until))
    q = q.order_by(table.c.model, table.c.date)
    with engine(uri).connect() as conn:
        return [_row_dict(r) for r in conn.execute(q)]


def record_decision(model: str, date, decision: Decision, *, facts: dict | None = None, dag_id: str | None = None,
                    run_id: str | None = None, uri: str | None = None) -> dict:
    """Append one evaluation of the retraining rule to ``retraining_decisions``."""
    import sqlalchemy as sa

    values = {"model": model, "date": as_date(date), "decision": "yes" if decision.yes else "no",
              "reasons": list(decision.reasons), "facts": _clean_json(facts or {}), "dag_id": dag_id,
              "run_id": run_id, "created_at": _now()}
    with engine(uri).begin() as conn:
        conn.execute(sa.insert(_table(DECISIONS_TABLE)).values(**values))
    return {**values, "date": values["date"].isoformat(), "created_at": values["created_at"].isoformat()}


def decisions(model: str | None = None, *, until=None, uri: str | None = None) -> list[dict]:
    """Recorded decisions, oldest first."""
    import sqlalchemy as sa

    table = _table(DECISIONS_TABLE)
    q = sa.select(table)
    if model:
        q = q.where(table.c.model == model)
    if until is not None:
        q = q.where(table.c.date <= as_date(until))
    q = q.order_by(table.c.id)
    with engine(uri).connect() as conn:
        return [_row_dict(r) for r in conn.execute(q)]


# ============================================================================ measuring


def reference_error_rate(metrics: dict) -> float | None:
    """The model's error rate on its held-out test split, from the logged test confusion counts."""
    try:
        fp, fn, n = (float(metrics[k]) for k in ("test_fp", "test_fn", "test_n"))
    except (KeyError, TypeError, ValueError):
        return None
    return (fp + fn) / n if n > 0 else None


def reference_predictions(metrics: dict):
    """Predicted classes on the held-out test split (from test_tp/fp/tn/fn), the reference for
    prediction drift: the reference artifact holds features, not every model's raw input."""
    import numpy as np

    try:
        tp, fp, tn, fn = (int(round(float(metrics[k]))) for k in ("test_tp", "test_fp", "test_tn", "test_fn"))
    except (KeyError, TypeError, ValueError):
        return None
    if tp + fp + tn + fn == 0:
        return None
    return np.r_[np.ones(tp + fp, dtype=np.int8), np.zeros(tn + fn, dtype=np.int8)]


def measure(reference, current, spec: ModelSpec, *, proba, prediction, labels=None,
            reference_prediction=None, low_confidence: float | None = None) -> dict:
    """PSI per feature, prediction drift, confidence and labelled error of one batch: the fields of a
    ``drift_history`` row (status 'ok'). Pure: frames and arrays in, a dict out.

    ``reference``/``current``: feature frames (the spec's ``drift.features`` when set, else the
    reference's columns). ``labels``: float array with NaN where unlabeled.
    """
    import numpy as np

    from biotune import drift

    if current is None or len(current) == 0:
        raise DriftError("the current batch has no rows", where=f"{spec.name}",
                         fix="land a non-empty batch (an empty day should have no batch at all)")
    if reference is None or len(reference) == 0:
        raise DriftError("the reference has no rows", where=f"{spec.name}",
                         fix="re-run the fine-tuning DAG so the model logs its training features")
    columns = list(spec.drift.features) if spec.drift.features else list(reference.columns)
    missing = [c for c in columns if c not in current.columns]
    if missing:
        raise DriftError(f"the current features lack {missing[:5]} ({len(missing)} columns)", where=spec.name,
                         fix="compute the batch features with the family's feature function")
    result = drift.psi_result(reference[columns], current[columns], method=spec.drift.method,
                              bins=spec.drift.bins, columns=columns)
    summary = drift.drift_summary(result, threshold=spec.drift.threshold, critical=spec.drift.critical)
    if summary["n_computable"] == 0:
        raise DriftError("no feature could be compared with the reference (all missing in the batch or "
                         "the reference): " + "; ".join(list(summary["not_computable"].values())[:3]),
                         where=spec.name, fix="check the batch: its minute columns may be empty or all NaN")
    proba = np.asarray(proba, dtype=np.float64)
    prediction = np.asarray(prediction)
    low = spec.retraining.min_confidence if low_confidence is None else low_confidence
    conf = drift.confidence_summary(proba, low=low) if len(proba) else {"mean_confidence": None, "share_below": None}
    pred_psi, collapse, pred_reasons = None, False, []
    if reference_prediction is not None and len(prediction):
        pdrift = drift.prediction_drift(reference_prediction, prediction, classes=[0, 1])
        pred_psi, pred_reasons = pdrift["psi"], list(pdrift["reasons"])
        # a binary task's majority class naturally holds ~80%: call it a collapse only when the
        # dominant class also gained >= COLLAPSE_MIN_GAIN over its reference share
        top = pdrift["top_classes"][0] if pdrift["top_classes"] else None
        gain = (pdrift["current_share"][top] - pdrift["reference_share"][top]) if top is not None else 0.0
        collapse = bool(pdrift["collapse"]) and gain >= COLLAPSE_MIN_GAIN
        if pdrift["collapse"] and not collapse:
            pred_reasons.append(f"class {top} dominates but gained only {gain:+.2f} over the reference: not a collapse")
    labeled_n, label_counts, error_rate = 0, {}, None
    if labels is not None:
        y = np.asarray(labels, dtype=np.float64)
        mask = np.isfinite(y)
        labeled_n = int(mask.sum())
        if labeled_n:
            values, counts = np.unique(y[mask].astype(int), return_counts=True)
            label_counts = {str(int(v)): int(c) for v, c in zip(values, counts)}
            error_rate = float((prediction[mask].astype(int) != y[mask].astype(int)).mean())
    return {
        "status": "ok",
        "n_rows": int(len(current)),
        "max_psi": summary["max_psi"],
        "max_feature": summary["max_feature"],
        "drifted_features": summary["n_drifted"],
        "drifted": summary["drifted"],
        "psi": result.to_dict()["psi"],
        "not_computable": summary["not_computable"],
        "critical": bool(summary["critical"]),
        "mean_confidence": conf["mean_confidence"],
        "share_low_confidence": conf["share_below"],
        "positive_share": float(prediction.mean()) if len(prediction) else None,
        "prediction_psi": pred_psi,
        "prediction_collapse": collapse,
        "labeled_n": labeled_n,
        "label_counts": label_counts,
        "error_rate": error_rate,
        "reasons": summary["reasons"] + pred_reasons,
    }


def champions_by_family(specs: Sequence[ModelSpec] | None = None) -> dict[str, list[str]]:
    """{family: [model names that have a champion]} over the specs in models/."""
    from biotune import registry
    from biotune.specs import all_specs

    out: dict[str, list[str]] = {}
    for spec in specs if specs is not None else all_specs():
        if registry.champion(spec.name) is not None:
            out.setdefault(spec.family, []).append(spec.name)
        else:
            log.info("%s has no champion: not monitored", spec.name)
    return out


def reference_frame(run_id: str, model: str):
    """The ``reference/features.parquet`` artifact logged with the model's training run."""
    import pandas as pd

    from biotune import registry

    client = registry.configure()
    with registry._registry_call(f"list the artifacts of {model}'s run {run_id}"):
        names = {a.path for a in client.list_artifacts(run_id, "reference")}
    if "reference/features.parquet" not in names:
        raise DriftError(f"{model}'s training run {run_id} logged no reference/features.parquet",
                         where=f"MLflow run {run_id}",
                         fix="drift needs the training features logged with the model: re-run the "
                             "fine-tuning DAG (registry.publish logs them) and promote the new version")
    local = registry.download_run_artifact(run_id, "reference/features.parquet")
    return pd.read_parquet(local)


def report_dir(model: str, date) -> str:
    from biotune import storage

    return storage.lake_path("reports", "drift", model, as_date(date).isoformat())


def write_report(reference, current, model: str, date, run_id: str | None, columns: Sequence[str]) -> str | None:
    """Evidently HTML in the lake and attached to the champion's MLflow run under monitoring/<date>/."""
    import tempfile
    from pathlib import Path

    from biotune import drift, registry, storage

    day = as_date(date).isoformat()
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "drift_report.html"
        try:
            drift.evidently_report_html(reference[list(columns)], current[list(columns)], local,
                                        columns=list(columns))
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


def monitor_model(spec: ModelSpec, date, family, *, run_id: str = "", report: bool = True,
                  uri: str | None = None) -> dict:
    """Measure one champion on one date and upsert its ``drift_history`` row; return the row.

    No batch that day -> status 'missing'. Bad input (unusable batch, no logged reference, nothing
    comparable) -> status 'error' with the typed message in ``error``, logged, and returned (the
    history stays one row per date). Registry/storage faults propagate so the task retries.
    """
    from biotune import registry, storage

    day = as_date(date).isoformat()
    version = registry.champion(spec.name)
    base = {"model": spec.name, "date": day, "run_id": run_id,
            "model_version": version.version if version else None}
    if version is None:
        row = upsert_drift({**base, "status": "error", "error": f"{spec.name} has no champion"}, uri)
        log.error("%s %s: no champion to monitor", spec.name, day)
        return row
    batch = family.batch_uri(day)
    if not storage.exists(batch):
        log.info("%s %s: no batch at %s: recorded as 'missing' (not drift)", spec.name, day, batch)
        return {**upsert_drift({**base, "status": "missing", "error": f"no batch at {batch}"}, uri), "reasons": []}
    try:
        reference = family.reference_features(reference_frame(version.run_id, spec.name))
        current = family.load_current(spec.name, day, version=version)
        measured = measure(reference, current.features, spec, proba=current.proba, prediction=current.prediction,
                           labels=current.labels, reference_prediction=reference_predictions(version.metrics))
    except BAD_INPUT as exc:
        log.error("%s %s: drift not measured: %s: %s", spec.name, day, type(exc).__name__, exc)
        row = upsert_drift({**base, "status": "error", "error": f"{type(exc).__name__}: {exc}"}, uri)
        return {**row, "reasons": [f"{type(exc).__name__}: {exc.what}"]}
    report_uri = None
    if report:
        cols = list(spec.drift.features) if spec.drift.features else list(reference.columns)
        report_uri = write_report(reference, current.features, spec.name, day, version.run_id, cols)
    reasons = measured.pop("reasons")
    row = upsert_drift({**base, **measured, "report_uri": report_uri, "predictions_uri": current.predictions_uri,
                        "reference_error_rate": reference_error_rate(version.metrics)}, uri)
    storage.write_json(storage.join(report_dir(spec.name, day), "drift.json"), {**row, "reasons": reasons})
    log.info("%s v%s %s: %d rows, max PSI %s on %s, %d drifted features, mean confidence %s, error rate %s",
             spec.name, version.version, day, row["n_rows"], _fmt(row["max_psi"]), row["max_feature"],
             row["drifted_features"], _fmt(row["mean_confidence"]), _fmt(row["error_rate"]))
    return {**row, "reasons": reasons}


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


# ============================================================================ retraining rule


@dataclass(frozen=True)
class RetrainFacts:
    """What the rule needs beyond the drift history.

    ``as_of``: the date evaluated; ``last_retrain``: the latest retrain on or before it (a
    triggered retrain or the champion's registration), None when none is on record;
    ``in_flight``: a run of the fine-tune DAG is queued or running; ``test_error_rate``: the
    champion's error on its held-out test split (None: use the rows' ``reference_error_rate``).
    """

    as_of: dt.date
    last_retrain: dt.date | None = None
    in_flight: bool = False
    test_error_rate: float | None = None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["as_of"] = self.as_of.isoformat()
        d["last_retrain"] = self.last_retrain.isoformat() if self.last_retrain else None
        return d


def _latest_per_date(rows: Iterable[dict], model: str) -> dict[dt.date, dict]:
    out: dict[dt.date, dict] = {}
    for r in rows:
        if r.get("model", model) != model:
            continue
        d = as_date(r["date"])
        prev = out.get(d)
        if prev is None or str(r.get("created_at") or "") >= str(prev.get("created_at") or ""):
            out[d] = r
    return out


def drift_streak(rows: Iterable[dict], spec: ModelSpec, as_of) -> tuple[list[dict], list[str]]:
    """The consecutive drifted batches ending at ``as_of`` (newest first, at most
    ``consecutive_batches``) and why the streak stopped.

    Walking back one day at a time from ``as_of``: a batch (status 'ok') with at least
    ``min_drifted_features`` features at PSI >= ``drift.threshold`` extends the streak; a day with
    status 'missing' (no batch landed) is not a batch and is stepped over; a day without a
    measurement, an 'error' day, a batch below the bar, or a batch measured against another model
    version ends it.
    """
    as_of = as_date(as_of)
    by_date = _latest_per_date(rows, spec.name)
    need = spec.retraining.consecutive_batches
    k = spec.retraining.min_drifted_features
    thr = spec.drift.threshold
    streak: list[dict] = []
    notes: list[str] = []
    if not by_date:
        return streak, [f"no drift measurement for {spec.name} on record"]
    earliest = min(by_date)
    day = as_of
    version = None
    skipped: list[str] = []
    while len(streak) < need:
        if day < earliest:
            notes.append(f"no drift measurement before {earliest.isoformat()}")
            break
        row = by_date.get(day)
        if row is None:
            notes.append(f"no drift measurement on {day.isoformat()}")
            break
        status = row.get("status")
        if status == "missing":
            skipped.append(day.isoformat())
            day -= dt.timedelta(days=1)
            continue
        if status != "ok":
            notes.append(f"drift could not be measured on {day.isoformat()} ({(row.get('error') or status)[:120]})")
            break
        if version is None:
            version = row.get("model_version")
        elif row.get("model_version") != version:
            notes.append(f"{day.isoformat()} was measured against version {row.get('model_version')}, "
                         f"not the current {version}")
            break
        n = int(row.get("drifted_features") or 0)
        if n < k:
            notes.append(f"{day.isoformat()}: {n} features at PSI >= {thr} (needs {k})")
            break
        streak.append(row)
        day -= dt.timedelta(days=1)
    if skipped:
        notes.append(f"days without a batch stepped over: {', '.join(skipped)}")
    return streak, notes


def retraining_decision(rows: Sequence[dict], spec: ModelSpec, facts: RetrainFacts) -> Decision:
    """Retrain only when every condition holds (thresholds from ``spec.retraining``/``spec.drift``):

    1. drift: PSI >= ``drift.threshold`` in >= ``min_drifted_features`` features for
       ``consecutive_batches`` consecutive batches ending on ``as_of`` (see :func:`drift_streak`);
    2. performance: over those batches (or the latest batch when there is no streak), mean
       confidence < ``min_confidence``, or the error rate on labelled samples exceeds the model's
       test error by >= ``max_error_rate_increase``;
    3. labels: >= ``min_new_labels`` labelled samples since the last retrain (and, when
       ``min_classes`` is set, at least that many distinct classes among them);
    4. time: >= ``min_days_since_last`` days since the last retrain;
    5. no retrain of this model in flight.

    Every condition adds one reason starting with ``yes:`` or ``not:``.
    """
    r = spec.retraining
    as_of = as_date(facts.as_of)
    rows = [x for x in rows if as_date(x["date"]) <= as_of and x.get("model", spec.name) == spec.name]
    reasons: list[str] = []
    ok = True

    # 5. in flight (first: the reason that matters most when it holds)
    if facts.in_flight:
        ok = False
        reasons.append(f"not: a retrain is already in flight ({r.dag_id} has a queued or running run)")

    # 1. drift streak
    streak, notes = drift_streak(rows, spec, as_of)
    dates = ", ".join(sorted(as_date(x["date"]).isoformat() for x in streak))
    if len(streak) >= r.consecutive_batches:
        reasons.append(f"yes: {len(streak)} consecutive batches with >= {r.min_drifted_features} features at PSI "
                       f">= {spec.drift.threshold} ({dates})")
    else:
        ok = False
        why = "; ".join(notes) if notes else ""
        reasons.append(f"not: drift in {len(streak)} consecutive batch(es), needs {r.consecutive_batches}"
                       + (f" ({dates})" if dates else "") + (f": {why}" if why else ""))

    # 2. performance
    window = streak or [x for x in sorted(rows, key=lambda x: as_date(x["date"])) if x.get("status") == "ok"][-1:]
    perf_bits: list[str] = []
    degraded = False
    weights = [(x.get("mean_confidence"), int(x.get("n_rows") or 0)) for x in window
               if x.get("mean_confidence") is not None]
    if weights and sum(w for _, w in weights) > 0:
        conf = sum(c * w for c, w in weights) / sum(w for _, w in weights)
        if conf < r.min_confidence:
            degraded = True
            perf_bits.append(f"mean confidence {conf:.3f} < {r.min_confidence}")
        else:
            perf_bits.append(f"mean confidence {conf:.3f} >= {r.min_confidence}")
    else:
        perf_bits.append("no confidence measured")
    labelled = [(x.get("error_rate"), int(x.get("labeled_n") or 0)) for x in window
                if x.get("error_rate") is not None and int(x.get("labeled_n") or 0) > 0]
    base_error = facts.test_error_rate
    if base_error is None:
        refs = [x.get("reference_error_rate") for x in window if x.get("reference_error_rate") is not None]
        base_error = refs[0] if refs else None
    if labelled and base_error is not None:
        n = sum(w for _, w in labelled)
        err = sum(e * w for e, w in labelled) / n
        rise = err - base_error
        if rise >= r.max_error_rate_increase:
            degraded = True
            perf_bits.append(f"error rate {err:.3f} on {n} labelled samples is {rise:+.3f} over the test "
                             f"error {base_error:.3f} (limit +{r.max_error_rate_increase})")
        else:
            perf_bits.append(f"error rate {err:.3f} on {n} labelled samples vs test error {base_error:.3f} "
                             f"({rise:+.3f}, limit +{r.max_error_rate_increase})")
    elif not labelled:
        perf_bits.append("no labelled samples to measure the error rate")
    else:
        perf_bits.append("the model's test error is unknown")
    if degraded:
        reasons.append("yes: performance degraded: " + "; ".join(perf_bits))
    else:
        ok = False
        reasons.append("not: performance not degraded: " + "; ".join(perf_bits))

    # 3. labels since the last retrain
    since = facts.last_retrain
    fresh = [x for x in rows if x.get("status") == "ok" and (since is None or as_date(x["date"]) > since)]
    new_labels = sum(int(x.get("labeled_n") or 0) for x in fresh)
    classes: set[str] = set()
    for x in fresh:
        classes |= {k for k, v in (x.get("label_counts") or {}).items() if int(v or 0) > 0}
    span = f"since {since.isoformat()}" if since else "on record"
    if new_labels >= r.min_new_labels:
        reasons.append(f"yes: {new_labels} new labels {span} (needs {r.min_new_labels})")
    else:
        ok = False
        reasons.append(f"not: {new_labels} new labels {span}, needs {r.min_new_labels}")
    if r.min_classes is not None:
        if len(classes) >= r.min_classes:
            reasons.append(f"yes: {len(classes)} classes among the new labels (needs {r.min_classes})")
        else:
            ok = False
            reasons.append(f"not: {len(classes)} classes among the new labels, needs {r.min_classes}")

    # 4. days since the last retrain
    if since is None:
        reasons.append(f"yes: no retrain on record on or before {as_of.isoformat()}")
    else:
        days = (as_of - since).days
        if days >= r.min_days_since_last:
            reasons.append(f"yes: {days} days since the last retrain on {since.isoformat()} "
                           f"(needs {r.min_days_since_last})")
        else:
            ok = False
            reasons.append(f"not: {days} days since the last retrain on {since.isoformat()}, "
                           f"needs {r.min_days_since_last}")
    return Decision(ok, reasons)


def last_retrain(model: str, as_of, champion_registered=None, uri: str | None = None) -> dt.date | None:
    """The latest retrain on or before ``as_of``: a recorded 'yes' decision or the champion's
    registration date. Events after ``as_of`` are ignored, so a backfill judges each date with
    what was known then."""
    as_of = as_date(as_of)
    events = [as_date(d["date"]) for d in decisions(model, until=as_of, uri=uri) if d["decision"] == "yes"]
    if champion_registered is not None and as_date(champion_registered) <= as_of:
        events.append(as_date(champion_registered))
    return max(events) if events else None


def evaluate(spec: ModelSpec, as_of, *, in_flight: bool = False, run_id: str | None = None,
             uri: str | None = None) -> dict:
    """Gather the facts for one model, apply :func:`retraining_decision`, record and return it."""
    from biotune import registry

    as_of = as_date(as_of)
    version = registry.champion(spec.name)
    registered = None
    test_error = None
    if version is not None:
        client = registry.configure()
        with registry._registry_call(f"read {spec.name} v{version.version}"):
            mv = client.get_model_version(spec.name, version.version)
        registered = dt.datetime.fromtimestamp(int(mv.creation_timestamp) / 1000, dt.timezone.utc).date()
        test_error = reference_error_rate(version.metrics)
    facts = RetrainFacts(as_of=as_of, last_retrain=last_retrain(spec.name, as_of, registered, uri=uri),
                         in_flight=in_flight, test_error_rate=test_error)
    rows = history(spec.name, until=as_of, uri=uri)
    decision = retraining_decision(rows, spec, facts)
    facts_dict = {**facts.as_dict(), "champion_version": version.version if version else None,
                  "champion_registered": registered.isoformat() if registered else None}
    record_decision(spec.name, as_of, decision, facts=facts_dict, dag_id=spec.retraining.dag_id, run_id=run_id,
                    uri=uri)
    verdict = "RETRAIN" if decision.yes else "no retrain"
    log.info("%s as of %s: %s\n  %s", spec.name, as_of.isoformat(), verdict, "\n  ".join(decision.reasons))
    return {"model": spec.name, "date": as_of.isoformat(), "yes": decision.yes, "reasons": decision.reasons,
            "dag_id": spec.retraining.dag_id, "facts": facts_dict}


def retrain_plans(evaluated: Sequence[dict], *, run_tag: str = "") -> list[dict]:
    """One trigger per fine-tune DAG for the models that said yes (models sharing a DAG retrain in one
    run): kwargs for TriggerDagRunOperator (trigger_dag_id, trigger_run_id, conf with the reasons)."""
    by_dag: dict[str, list[dict]] = {}
    for e in evaluated:
        if e.get("yes"):
            by_dag.setdefault(e["dag_id"], []).append(e)
    plans = []
    for dag_id, items in sorted(by_dag.items()):
        date = max(i["date"] for i in items)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_tag)
        plans.append({
            "trigger_dag_id": dag_id,
            "trigger_run_id": f"retrain__{date}" + (f"__{safe}" if safe else ""),
            "conf": {"retrain": {"date": date, "models": {i["model"]: i["reasons"] for i in items},
                                 "triggered_by": "retraining_triggers"}},
        })
    return plans


# ============================================================================ alerts


def alert_payload(row: dict, spec: ModelSpec | None = None, *, source: str = "biotune") -> dict:
    """The JSON an alert carries for one drift row (no health data: model, date, PSI figures)."""
    critical = spec.drift.critical if spec else None
    top = sorted(((k, v) for k, v in (row.get("psi") or {}).items() if v is not None), key=lambda kv: -kv[1])[:5]
    if row.get("status") == "error":
        title = f"{row['model']} {row['date']}: drift could not be measured"
        severity = "error"
    else:
        title = (f"{row['model']} {row['date']}: PSI {_fmt(row.get('max_psi'))} on {row.get('max_feature')} "
                 f">= critical {critical}")
        severity = "critical"
    return {
        "source": source, "kind": "drift", "severity": severity, "title": title,
        "model": row.get("model"), "model_version": row.get("model_version"), "date": row.get("date"),
        "status": row.get("status"), "max_psi": row.get("max_psi"), "max_feature": row.get("max_feature"),
        "critical_threshold": critical, "drifted_features": row.get("drifted_features"),
        "top_psi": {k: round(float(v), 4) for k, v in top}, "mean_confidence": row.get("mean_confidence"),
        "prediction_collapse": row.get("prediction_collapse"), "error": row.get("error"),
        "report_uri": row.get("report_uri"),
    }


def needs_alert(row: dict) -> bool:
    return bool(row.get("critical")) or row.get("status") == "error"


def redact_url(url: str) -> str:
    """scheme://host[:port] only: webhook paths and queries often carry the secret."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "(unparsable URL)"
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


def send_alert(payload: dict, webhook_url: str | None = None, token: str | None = None,
               timeout: float = 10.0) -> dict:
    """Log the alert; POST it as JSON to ``webhook_url`` when given (``Authorization: Bearer`` from
    ``token``). Never raises on a delivery failure (alerting must not break monitoring) and never
    logs the URL's path, query or the token."""
    log.warning("ALERT [%s] %s", payload.get("severity", "info"), payload.get("title", ""))
    if not webhook_url:
        return {"logged": True, "posted": False}
    data = json.dumps(payload, default=str).encode("utf-8")
    headers = {"Content-Type": "application/json", "User-Agent": "biotune-alerts"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    where = redact_url(webhook_url)
    try:
        req = urllib.request.Request(webhook_url, data=data, headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (URL from the operator's config)
            status = resp.status
        log.info("alert posted to %s (HTTP %s)", where, status)
        return {"logged": True, "posted": True, "status": status}
    except urllib.error.HTTPError as exc:
        log.error("alert webhook %s answered HTTP %s", where, exc.code)
        return {"logged": True, "posted": False, "status": exc.code}
    except Exception as exc:  # network, DNS, TLS
        log.error("alert webhook %s unreachable: %s", where, type(exc).__name__)
        return {"logged": True, "posted": False, "error": type(exc).__name__}


__all__ = [
    "DRIFT_TABLE", "DECISIONS_TABLE", "RetrainFacts", "as_date", "engine", "dispose", "upsert_drift", "history",
    "record_decision", "decisions", "measure", "champions_by_family", "monitor_model", "reference_frame", "write_report",
    "reference_error_rate", "reference_predictions", "drift_streak", "retraining_decision", "last_retrain",
    "evaluate", "retrain_plans", "alert_payload", "needs_alert", "send_alert", "redact_url", "Decision",
]
