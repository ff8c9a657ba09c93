"""Dated mood-episode labels per person, in the biotune database (table ``mood_episode_labels``).

The database is the SQLAlchemy store the drift history uses (``settings.drift_db_uri()``:
SQLite by default, PostgreSQL in the stack); this module owns its own table there. Persons are
stored under their pseudonym (``crypto.pseudonym``), never under the id a clinician types.

Rules: an episode or baseline period may not overlap another live label of the same person
(the error names both); dates are inclusive and the end may not precede the start; an episode
shorter than its DSM-5 minimum (depressive 14 d, manic 7 d, hypomanic 4 d, mixed 7 d) is stored
with a warning. ``undo`` withdraws the person's most recent live label (kept, marked deleted).

Day labels for the models (``day_targets``): day D is positive for task K when D+1 lies in an
episode of kind K (mixed counts for depressive and manic), negative when D+1 is covered by any
other label, and unknown (NaN) when nobody labelled D+1.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from biotune.errors import InputFormatError, MissingInputError

TABLE = "mood_episode_labels"
EPISODE_KINDS = ("depressive", "manic", "hypomanic", "mixed")
KINDS = (*EPISODE_KINDS, "baseline")
DSM5_MIN_DAYS = {"depressive": 14, "manic": 7, "hypomanic": 4, "mixed": 7}
TASKS = ("depressive", "manic", "hypomanic")
TASK_KINDS = {"depressive": ("depressive", "mixed"), "manic": ("manic", "mixed"), "hypomanic": ("hypomanic",)}

_lock = threading.Lock()
_metadata = None


class LabelOverlapError(InputFormatError):
    """A new label overlaps a live label of the same person."""


@dataclass
class Label:
    id: int
    person: str
    kind: str
    start: dt.date
    end: dt.date
    severity: int | None
    created_at: dt.datetime
    deleted_at: dt.datetime | None = None

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def as_dict(self) -> dict:
        d = asdict(self)
        d["days"] = self.days
        return d

    def describe(self) -> str:
        sev = f", severity {self.severity}" if self.severity else ""
        return f"#{self.id} {self.kind} {self.start}..{self.end} ({self.days} d{sev})"


def _table():
    global _metadata
    import sqlalchemy as sa

    with _lock:
        if _metadata is None:
            md = sa.MetaData()
            sa.Table(
                TABLE, md,
                sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                sa.Column("person", sa.String(64), nullable=False, index=True),
                sa.Column("kind", sa.String(16), nullable=False),
                sa.Column("start_date", sa.Date, nullable=False),
                sa.Column("end_date", sa.Date, nullable=False),
                sa.Column("severity", sa.Integer),
                sa.Column("source", sa.String(32), nullable=False, default="cli"),
                sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
                sa.Column("deleted_at", sa.DateTime(timezone=True)),
            )
            _metadata = md
    return _metadata.tables[TABLE]


def engine(uri: str | None = None):
    """The biotune database engine (shared with the drift history), with this table created."""
    from biotune import monitoring

    eng = monitoring.engine(uri)
    _table().metadata.create_all(eng, checkfirst=True)
    return eng


def _date(value, what: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise InputFormatError(f"{what} {value!r} is not a date", where=f"--{what}", fix="write YYYY-MM-DD") from None


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes; every stamp here was written in UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value


def _row(r) -> Label:
    return Label(r.id, r.person, r.kind, r.start_date, r.end_date, r.severity, _utc(r.created_at), _utc(r.deleted_at))


def person_key(person: str) -> str:
    """The stored id: the keyed pseudonym (needs BIOTUNE_PERSONAL_KEY)."""
    from biotune.mood.personal.crypto import pseudonym

    return pseudonym(person)


def _check_known(key: str, person: str, store_base: str | None) -> None:
    from biotune.mood.personal import store

    if key not in store.known_persons(store_base):
        raise MissingInputError(f"unknown person {person!r}: no imported data", where="--person",
                                fix="import the person's data first (biotune mood import-health EXPORT.zip --person "
                                    "P) or pass --new-person to label someone whose data comes later")


def add(person: str, kind: str, start, end, severity: int | None = None, *, uri: str | None = None,
        require_known: bool = True, store_base: str | None = None, source: str = "cli") -> tuple[Label, list[str]]:
    """Store one label; returns it and the DSM-5 warnings. Overlaps are refused naming both labels."""
    import sqlalchemy as sa

    if kind not in KINDS:
        raise InputFormatError(f"unknown label kind {kind!r}", where="--kind", fix=f"use one of {', '.join(KINDS)}")
    start, end = _date(start, "from"), _date(end, "to")
    if end < start:
        raise InputFormatError(f"the label ends ({end}) before it starts ({start})", where="--from/--to",
                               fix="swap the dates; both are inclusive")
    if severity is not None and not (1 <= int(severity) <= 5):
        raise InputFormatError(f"severity {severity} is outside 1-5", where="--severity", fix="use 1 (mild) to 5")
    if kind == "baseline" and severity is not None:
        raise InputFormatError("a baseline period has no severity", where="--severity", fix="drop --severity")
    key = person_key(person)
    if require_known:
        _check_known(key, person, store_base)
    t = _table()
    eng = engine(uri)
    with eng.begin() as conn:
        clash = conn.execute(sa.select(t).where(
            t.c.person == key, t.c.deleted_at.is_(None), t.c.start_date <= end, t.c.end_date >= start)
            .order_by(t.c.start_date)).first()
        if clash is not None:
            other = _row(clash)
            raise LabelOverlapError(
                f"the new {kind} label {start}..{end} overlaps the {other.kind} label {other.describe()}",
                where=f"person {key}",
                fix=f"change the dates, or withdraw #{other.id} first (biotune mood label undo --person ...) if it "
                    "was entered wrongly")
        now = dt.datetime.now(dt.timezone.utc)
        res = conn.execute(t.insert().values(person=key, kind=kind, start_date=start, end_date=end,
                                             severity=None if severity is None else int(severity), source=source,
                                             created_at=now))
        label = Label(int(res.inserted_primary_key[0]), key, kind, start, end,
                      None if severity is None else int(severity), now)
    warnings = []
    if kind in DSM5_MIN_DAYS and label.days < DSM5_MIN_DAYS[kind]:
        warnings.append(f"a {kind} episode lasts at least {DSM5_MIN_DAYS[kind]} days by DSM-5; this one lasts "
                        f"{label.days} (stored anyway: check the dates)")
    return label, warnings


def list_labels(person: str | None = None, *, include_deleted: bool = False, uri: str | None = None) -> list[Label]:
    import sqlalchemy as sa

    t = _table()
    q = sa.select(t).order_by(t.c.person, t.c.start_date, t.c.id)
    if person is not None:
        q = q.where(t.c.person == person_key(person))
    if not include_deleted:
        q = q.where(t.c.deleted_at.is_(None))
    with engine(uri).connect() as conn:
        return [_row(r) for r in conn.execute(q)]


def undo(person: str, *, uri: str | None = None) -> Label:
    """Withdraw the person's most recently entered live label (marked deleted, never erased)."""
    import sqlalchemy as sa

    t = _table()
    key = person_key(person)
    with engine(uri).begin() as conn:
        last = conn.execute(sa.select(t).where(t.c.person == key, t.c.deleted_at.is_(None))
                            .order_by(t.c.created_at.desc(), t.c.id.desc())).first()
        if last is None:
            raise MissingInputError(f"person {key} has no label to undo", where="--person",
                                    fix="list the labels with biotune mood label list")
        now = dt.datetime.now(dt.timezone.utc)
        conn.execute(t.update().where(t.c.id == last.id).values(deleted_at=now))
    label = _row(last)
    label.deleted_at = now
    return label


def last_change(person: str, *, uri: str | None = None) -> dt.datetime | None:
    """When the person's labels last changed (an entry or an undo): the calibration DAG's trigger."""
    rows = list_labels(person, include_deleted=True, uri=uri)
    stamps = [r.created_at for r in rows] + [r.deleted_at for r in rows if r.deleted_at]
    return max(stamps) if stamps else None


def day_targets(labels: list[Label], dates) -> pd.DataFrame:
    """Per date D and task: 1 if D+1 is in an episode of that task's kinds, 0 if D+1 carries any other
    label, NaN if D+1 is unlabelled. Index: the given dates."""
    dates = pd.Index(list(dates), name="date")
    nxt = np.array([d + dt.timedelta(days=1) for d in dates], dtype="datetime64[D]")
    covered = np.zeros(len(dates), bool)
    pos = {k: np.zeros(len(dates), bool) for k in TASKS}
    for lab in labels:
        inside = (nxt >= np.datetime64(lab.start)) & (nxt <= np.datetime64(lab.end))
        covered |= inside
        for task, kinds in TASK_KINDS.items():
            if lab.kind in kinds:
                pos[task] |= inside
    return pd.DataFrame({t: np.where(covered, pos[t].astype(float), np.nan) for t in TASKS}, index=dates)


def add_rows(rows: list[dict], *, uri: str | None = None, require_known: bool = False,
             store_base: str | None = None) -> list[Label]:
    """Store labels from dicts (person_id, kind, start, end, severity), e.g. a generated labels.csv."""
    out = []
    for r in rows:
        sev = r.get("severity")
        label, _ = add(r["person_id"], r["kind"], r["start"], r["end"],
                       int(sev) if sev not in (None, "", "nan") and r["kind"] != "baseline" else None,
                       uri=uri, require_known=require_known, store_base=store_base, source="import")
        out.append(label)
    return out
