"""A person's days as model inputs: the 36 features, the PAT week, and next-day targets.

Date D (the night that ends on the morning of D is dated D):

- XGBoost input: the 36 mood_ml features of D (trailing window, daily.py), known by the
  evening of D;
- PAT input: the 7 local days D-6..D, midnight to midnight (the cohort layout, activity =
  steps/min, NaN where unknown), standardized by the population scaler;
- target for task K: an episode of kind K on D+1 (labels.day_targets).

``DailyTable`` is the daily features of a person cached in the encrypted store
(``daily.npz.enc``) with a digest of the minute series it came from, so a prediction reads one
row instead of re-running the circadian model over the whole record.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from dataclasses import dataclass

import numpy as np

from biotune.mood.personal.names import SLEEP_FEATURE_NAMES
from biotune.mood.personal.minutes import MinuteSeries

DAILY = "daily.npz.enc"
WEEK = 7 * 1440


def series_digest(series: MinuteSeries) -> str:
    h = hashlib.sha256()
    h.update(series.start_date.isoformat().encode())
    for k in ("state", "activity"):
        h.update(np.ascontiguousarray(getattr(series, k)).tobytes())
    return h.hexdigest()[:24]


@dataclass
class DailyTable:
    dates: np.ndarray          # datetime64[D]
    X: np.ndarray              # [n, 36] float64, SLEEP_FEATURE_NAMES order
    valid: np.ndarray          # bool: the day itself had enough data
    digest: str = ""

    def index_of(self, date: dt.date) -> int | None:
        i = np.searchsorted(self.dates, np.datetime64(date, "D"))
        return int(i) if i < len(self.dates) and self.dates[i] == np.datetime64(date, "D") else None

    def to_npz(self) -> bytes:
        buf = io.BytesIO()
        np.savez_compressed(buf, dates=self.dates.astype("datetime64[D]").astype(np.int64), X=self.X,
                            valid=self.valid, digest=np.array(self.digest), names=np.array(SLEEP_FEATURE_NAMES))
        return buf.getvalue()

    @classmethod
    def from_npz(cls, data: bytes) -> "DailyTable":
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return cls(z["dates"].astype("datetime64[D]"), z["X"], z["valid"], str(z["digest"]))


def compute_daily(series: MinuteSeries, **kwargs) -> DailyTable:
    from biotune.mood.personal.daily import person_features

    feats = person_features(series, **kwargs)
    return DailyTable(np.array(feats.index, dtype="datetime64[D]"), feats[SLEEP_FEATURE_NAMES].to_numpy(np.float64),
                      feats["valid"].to_numpy(bool), series_digest(series))


def daily_table(person: str, series: MinuteSeries | None = None, base: str | None = None) -> DailyTable:
    """The cached daily features of a stored person, recomputed when the minutes changed."""
    from biotune.mood.personal import store

    series = series if series is not None else store.read_series(person, base)
    digest = series_digest(series)
    if store.exists(person, DAILY, base):
        table = DailyTable.from_npz(store.read_file(person, DAILY, base))
        if table.digest == digest:
            return table
    table = compute_daily(series)
    store.write_file(person, DAILY, table.to_npz(), base)
    return table


def weeks(series: MinuteSeries, dates) -> np.ndarray:
    """[n, 10080] float32 activity of the 7 local days ending with each date (NaN unknown)."""
    out = np.full((len(dates), WEEK), np.nan, np.float32)
    for i, d in enumerate(dates):
        day = (np.datetime64(d, "D") - np.datetime64(series.start_date, "D")).astype(int)
        out[i] = series.week(int(day))[0]
    return out


def has_activity(series: MinuteSeries) -> bool:
    return bool(np.isfinite(series.activity).any()) and series.source != "sleep_csv"


@dataclass
class PersonDays:
    """Labelled days of one person for one task, in date order."""
    person: str
    task: str
    dates: np.ndarray          # datetime64[D]
    X: np.ndarray              # [n, 36]
    weeks: np.ndarray | None   # [n, 10080] or None (no activity data)
    y: np.ndarray              # 0/1

    def __len__(self) -> int:
        return len(self.dates)

    def take(self, idx) -> "PersonDays":
        return PersonDays(self.person, self.task, self.dates[idx], self.X[idx],
                          None if self.weeks is None else self.weeks[idx], self.y[idx])


def person_days(person: str, task: str, series: MinuteSeries, table: DailyTable, labels) -> PersonDays:
    """The days with a label for ``task`` and a valid feature row."""
    from biotune.mood.personal.labels import day_targets

    dates = [d.astype(object) for d in table.dates]
    y = day_targets(labels, dates)[task].to_numpy()
    keep = np.isfinite(y) & table.valid & np.isfinite(table.X).any(axis=1)
    idx = np.flatnonzero(keep)
    sel_dates = table.dates[idx]
    w = weeks(series, [d.astype(object) for d in sel_dates]) if has_activity(series) else None
    return PersonDays(person, task, sel_dates, table.X[idx], w, y[idx].astype(int))
