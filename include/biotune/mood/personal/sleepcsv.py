"""Sleep-episode CSV (mood_ml's input, or a Fitbit dashboard sleep export) -> episodes and minutes.

Accepted headers:

- mood_ml: ``sleep_start, sleep_end, time_in_bed, minutes_sleep, minutes_awake`` with times
  'YYYY-MM-DD HH:MM' (seconds allowed) on the local clock and durations in minutes;
- Fitbit: ``Start Time, End Time, Minutes Asleep, Minutes Awake, ..., Time in Bed, ...`` with
  times like '2024-03-01 11:12PM'.

Every row is checked (line numbers are the file's, header = line 1): times parse, end after
start, counts are whole non-negative minutes, ``time_in_bed`` matches end - start (a column in
hours or seconds is named as such), asleep + awake fit in bed.

The minute series built from it has no activity (NaN): PAT cannot score these persons, the
XGBoost models can. Inside an episode the ``minutes_awake`` are laid out as wake blocks of
10-50 min spread over the night (or one block at the start when shorter than 10 min), so the
mood_ml wake-in-window indexes reproduce them; a local day (noon to noon) with no episode is
missing (state 3), not 24 hours awake.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
from pathlib import Path

import numpy as np
import pandas as pd

from biotune.errors import InputFormatError, MissingInputError
from biotune.mood.personal.minutes import (EPISODE_COLUMNS, STATE_NONWEAR, STATE_SLEEP, STATE_WAKE, MinuteSeries)

FITBIT_COLUMNS = {"Start Time": "sleep_start", "End Time": "sleep_end", "Time in Bed": "time_in_bed",
                  "Minutes Asleep": "minutes_sleep", "Minutes Awake": "minutes_awake"}
TIME_FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %I:%M%p", "%Y-%m-%d %I:%M %p",
                "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M")


def _time(text: str, where: str, column: str) -> dt.datetime:
    value = (text or "").strip()
    for fmt in TIME_FORMATS:
        try:
            return dt.datetime.strptime(value, fmt)
        except ValueError:
            continue
    raise InputFormatError(f"{column} {value!r} is not a time", where=where,
                           fix="write local clock times as 'YYYY-MM-DD HH:MM' (mood_ml) or '2024-03-01 11:12PM' (Fitbit)")


def _minutes(text: str, where: str, column: str) -> int:
    value = (text or "").strip()
    try:
        x = float(value)
    except ValueError:
        raise InputFormatError(f"{column} {value!r} is not a number of minutes", where=where,
                               fix="write whole minutes, e.g. 412") from None
    if not np.isfinite(x) or x < 0:
        raise InputFormatError(f"{column} {value!r} is negative or not finite", where=where,
                               fix="write whole minutes >= 0")
    if abs(x - round(x)) > 1e-6:
        raise InputFormatError(f"{column} {value!r} is not a whole number of minutes", where=where,
                               fix="this column looks like hours: multiply by 60 and round to whole minutes")
    return int(round(x))


def read_sleep_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Validated episodes: sleep_start/sleep_end (datetime64) + the three minute counts, sorted."""
    path = str(path)
    if not Path(path).exists():
        raise MissingInputError(f"no file at {path}", where=path, fix="check the path to the sleep CSV")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise InputFormatError("the CSV is empty", where=path, fix="export the sleep log again") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InputFormatError(f"not a CSV file: {exc}", where=path, fix="pass a comma-separated text file") from exc
        if all(c in header for c in EPISODE_COLUMNS):
            mapping = {c: c for c in EPISODE_COLUMNS}
        elif all(c in header for c in FITBIT_COLUMNS):
            mapping = {v: k for k, v in FITBIT_COLUMNS.items()}
        else:
            raise InputFormatError(
                f"unknown sleep CSV columns {header}", where=f"{path}, line 1",
                fix=f"use mood_ml's columns {', '.join(EPISODE_COLUMNS)} (times 'YYYY-MM-DD HH:MM', durations in "
                    f"minutes) or a Fitbit sleep export ({', '.join(FITBIT_COLUMNS)})")
        col = {k: header.index(v) for k, v in mapping.items()}
        rows = []
        try:
            for lineno, row in enumerate(reader, start=2):
                if not any(x.strip() for x in row):
                    continue
                where = f"{path}, line {lineno}"
                if len(row) < len(header):
                    raise InputFormatError(f"row has {len(row)} fields, the header {len(header)}", where=where,
                                           fix="every row needs a value for every column")
                start = _time(row[col["sleep_start"]], where, mapping["sleep_start"])
                end = _time(row[col["sleep_end"]], where, mapping["sleep_end"])
                tib, slp, awk = (_minutes(row[col[c]], where, mapping[c])
                                 for c in ("time_in_bed", "minutes_sleep", "minutes_awake"))
                _check_units(start, end, tib, slp, awk, where, mapping)
                rows.append((start, end, tib, slp, awk))
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InputFormatError(f"the CSV cannot be read: {exc}", where=path, fix="save it as UTF-8 CSV") from exc
    if not rows:
        raise InputFormatError("the CSV has no sleep episodes", where=path, fix="export a sleep log with data")
    frame = pd.DataFrame(rows, columns=EPISODE_COLUMNS).sort_values("sleep_start", kind="stable")
    return frame.reset_index(drop=True)


def _check_units(start, end, tib, slp, awk, where, mapping) -> None:
    span = (end - start).total_seconds() / 60.0
    if span <= 0:
        raise InputFormatError(f"{mapping['sleep_end']} {end} is not after {mapping['sleep_start']} {start}",
                               where=where, fix="swap the two times or fix the date of the end")
    if span > 24 * 60:
        raise InputFormatError(f"episode lasts {span / 60:.1f} h (more than a day)", where=where,
                               fix="check the dates: a sleep episode is shorter than 24 h")
    tol = max(5.0, 0.05 * span)
    if abs(tib - span) > tol:
        if abs(tib * 60 - span) <= tol:
            hint = f"{mapping['time_in_bed']} looks like hours: convert it to minutes"
        elif abs(tib / 60 - span) <= tol:
            hint = f"{mapping['time_in_bed']} looks like seconds: convert it to minutes"
        else:
            hint = f"{mapping['time_in_bed']} must be the minutes from start to end"
        raise InputFormatError(f"{mapping['time_in_bed']} is {tib} but the episode spans {span:.0f} minutes",
                               where=where, fix=hint)
    if slp > tib + 1 or awk > tib + 1 or slp + awk > tib + tol:
        raise InputFormatError(f"asleep {slp} + awake {awk} minutes exceed {tib} minutes in bed", where=where,
                               fix="the asleep/awake columns must be minutes within the time in bed")
    if tib >= 120 and 0 < slp * 60 <= tib and slp < 0.1 * tib:
        raise InputFormatError(f"{mapping['minutes_sleep']} {slp} is under 10% of {tib} minutes in bed",
                               where=where, fix=f"{mapping['minutes_sleep']} looks like hours: convert it to minutes")


def _awake_blocks(length: int, awake: int) -> list[tuple[int, int]]:
    """Where the awake minutes go inside an episode of ``length`` minutes (offsets, lengths)."""
    awake = min(awake, length)
    if awake <= 0:
        return []
    if awake < 10:
        return [(0, awake)]
    n = int(np.ceil(awake / 50))
    sizes = [awake // n + (1 if i < awake % n else 0) for i in range(n)]
    gap = (length - awake) / (n + 1)
    out, pos = [], gap
    for s in sizes:
        out.append((int(round(pos)), s))
        pos += s + gap
    return out


def series_from_episodes(episodes: pd.DataFrame) -> MinuteSeries:
    """Minute series on the local clock from validated episodes (see module doc)."""
    first = episodes["sleep_start"].min().normalize().to_pydatetime().date()
    last = episodes["sleep_end"].max().normalize().to_pydatetime().date()
    days = (last - first).days + 1
    T = days * 1440
    state = np.full(T, STATE_WAKE, np.int8)
    in_rec = np.zeros(T, bool)
    origin = pd.Timestamp(first)
    covered_day = np.zeros(days + 1, bool)
    for row in episodes.itertuples(index=False):
        a = int((row.sleep_start - origin).total_seconds() // 60)
        b = int((row.sleep_end - origin).total_seconds() // 60)
        state[a:b] = STATE_SLEEP
        in_rec[a:b] = True
        for off, n in _awake_blocks(b - a, int(row.minutes_awake)):
            state[a + off:a + off + n] = STATE_WAKE
        mid = (a + b) / 2
        covered_day[int((mid + 720) // 1440)] = True        # the day of the nearest midnight
    for d in range(days + 1):              # noon-to-noon window around midnight d with no episode
        if not covered_day[d]:
            seg = slice(max(d * 1440 - 720, 0), min(d * 1440 + 720, T))
            state[seg] = np.where(in_rec[seg], state[seg], STATE_NONWEAR)
    nan = np.full(T, np.nan, np.float32)
    return MinuteSeries(first, nan.copy(), state, np.zeros(T, np.float32), nan.copy(), np.zeros(T, np.int16),
                        in_rec, source="sleep_csv")


def episodes_text(episodes: pd.DataFrame) -> pd.DataFrame:
    """Episodes with mood_ml's 'YYYY-MM-DD HH:MM' strings."""
    out = episodes.copy()
    for c in ("sleep_start", "sleep_end"):
        out[c] = pd.to_datetime(out[c]).dt.strftime("%Y-%m-%d %H:%M")
    return out[EPISODE_COLUMNS]


def import_sleep_csv(path: str | os.PathLike, quarantine: bool = True):
    """CSV -> (MinuteSeries, episodes frame with mood_ml strings, report); bad input quarantined."""
    from biotune.errors import BiotuneError
    from biotune.mood.personal.health import quarantine_input

    try:
        episodes = read_sleep_csv(path)
        series = series_from_episodes(episodes)
    except BiotuneError as exc:
        if quarantine and Path(str(path)).exists():
            raise quarantine_input(exc, str(path)) from exc
        raise
    report = {"input": Path(str(path)).name, "sleep_episodes": int(len(episodes)), "days": series.days,
              "start_date": series.start_date.isoformat()}
    return series, episodes_text(episodes), report
