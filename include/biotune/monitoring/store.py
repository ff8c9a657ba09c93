"""The monitoring history store (SQLAlchemy; :func:`biotune.settings.drift_db_uri`, SQLite by
default, PostgreSQL when configured). Readers (the CLI, the UI page, the retraining rule) go
through these functions, never raw SQL.

``drift_history``  one row per (model, date), upserted: a re-run date replaces its row.
    status is 'ok' (measured), 'missing' (no batch landed that day: not drift) or 'error' (the
    batch or the reference was unusable; ``error`` holds the typed message).
``retraining_decisions``  append-only log: every evaluation of the retraining rule, yes or no,
    with its reasons and the facts it was given.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import threading
from typing import Any

from biotune import settings
from biotune.dates import as_date
from biotune.errors import DriftError, redact
from biotune.policy import Decision

DRIFT_TABLE = "drift_history"
DECISIONS_TABLE = "retraining_decisions"
STATUSES = ("ok", "small", "missing", "error")  # small: too few rows to judge drift

_tables_lock = threading.Lock()
_engines: dict[str, Any] = {}
_metadata = None


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
                           f"{redact(str(exc))}", where=redact(uri),
                           fix="check BIOTUNE_DRIFT_DB (a SQLAlchemy URI) and that the database answers") from exc
    _engines[uri] = eng
    return eng


def dispose(uri: str | None = None) -> None:
    """Close the pooled connections of one URI (or all): tests dropping a database call this first."""
    for key in [uri] if uri else list(_engines):
        eng = _engines.pop(key, None)
        if eng is not None:
            eng.dispose()


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


def _select(table, model: str | None, since, until):
    """Rows of ``table`` for one model (all when None) between two dates (inclusive, each optional)."""
    import sqlalchemy as sa

    q = sa.select(table)
    if model:
        q = q.where(table.c.model == model)
    if since is not None:
        q = q.where(table.c.date >= as_date(since))
    if until is not None:
        q = q.where(table.c.date <= as_date(until))
    return q


def history(model: str | None = None, *, since=None, until=None, uri: str | None = None) -> list[dict]:
    """Drift history rows (dates as ISO strings), oldest first."""
    table = _table(DRIFT_TABLE)
    q = _select(table, model, since, until)
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


def decisions(model: str | None = None, *, since=None, until=None, uri: str | None = None) -> list[dict]:
    """Recorded decisions, oldest first."""
    table = _table(DECISIONS_TABLE)
    q = _select(table, model, since, until)
    q = q.order_by(table.c.id)
    with engine(uri).connect() as conn:
        return [_row_dict(r) for r in conn.execute(q)]



def latest(uri: str | None = None) -> dict[str, dict]:
    """{model: its latest measured row}: a day recorded 'missing' (no batch) never hides the last
    real measurement; an 'error' day does (it is news). {} when nothing was measured yet."""
    import sqlalchemy as sa

    table = _table(DRIFT_TABLE)
    q = sa.select(table).where(table.c.status != "missing").order_by(table.c.model, table.c.date.desc())
    out: dict[str, dict] = {}
    with engine(uri).connect() as conn:
        for r in conn.execute(q):
            out.setdefault(r.model, _row_dict(r))
    return out


def unjudged_dates(uri: str | None = None) -> list[str]:
    """Dates (ISO, oldest first) of drift rows written after the latest retraining decision: what
    the retraining rule has not judged yet. A run of ``retraining_triggers`` is woken by asset events,
    but Airflow 3.3 drops the events that arrive while its one active run is going (apache/airflow
    issue 56050: a backfill's later dates), so the run also takes what the history says is new."""
    import sqlalchemy as sa

    drift, decided = _table(DRIFT_TABLE), _table(DECISIONS_TABLE)
    with engine(uri).connect() as conn:
        last = conn.execute(sa.select(sa.func.max(decided.c.created_at))).scalar()
        q = sa.select(drift.c.date).distinct().order_by(drift.c.date)
        if last is not None:
            q = q.where(drift.c.created_at > last)
        return [as_date(r.date).isoformat() for r in conn.execute(q)]


def exists(uri: str | None = None) -> bool:
    """Whether the history database exists (a page looking at it must not create an empty one)."""
    uri = uri or settings.drift_db_uri()
    if uri.startswith("sqlite:///"):
        return os.path.exists(uri[len("sqlite:///"):])
    return True


def shown_decision(day_decisions: list[dict]) -> dict | None:
    """The decision to show for one (model, date): the 'yes' that fired a retrain when there was one
    (a later 'no' for the same date, e.g. 'already in flight', must not hide it), else the latest."""
    if not day_decisions:
        return None
    fired = [d for d in day_decisions if d["decision"] == "yes"]
    return fired[-1] if fired else day_decisions[-1]


def decisions_by_day(model: str | None = None, *, since=None, until=None,
                     uri: str | None = None) -> dict[tuple[str, str], list]:
    """{(model, date): every decision recorded for it, oldest first}."""
    out: dict[tuple[str, str], list] = {}
    for d in decisions(model, since=since, until=until, uri=uri):
        out.setdefault((d["model"], d["date"]), []).append(d)
    return out


def timeline(days: int = 90, uri: str | None = None) -> dict[str, dict]:
    """What the page charts, per model: {model: {"rows": its drift history rows (oldest first),
    "decisions": {date: the decision shown for that date (see :func:`shown_decision`)}}} over the
    ``days`` days up to the latest date recorded. {} before any drift run."""
    import sqlalchemy as sa

    table = _table(DRIFT_TABLE)
    with engine(uri).connect() as conn:
        last = conn.execute(sa.select(sa.func.max(table.c.date))).scalar()
    if last is None:
        return {}
    since = as_date(last) - dt.timedelta(days=days)
    out: dict[str, dict] = {}
    for row in history(since=since, uri=uri):
        out.setdefault(row["model"], {"rows": [], "decisions": {}})["rows"].append(row)
    for (model, date), day in decisions_by_day(since=since, uri=uri).items():
        out.setdefault(model, {"rows": [], "decisions": {}})["decisions"][date] = shown_decision(day)
    return out
