"""The 36 mood_ml features per person and day, from the existing population feature code.

1. Daily indexes: :func:`biotune.mood.features.daily_sleep_indexes` on the person's whole
   local-clock minute series (sleep = state 2, awake = state 1, anything else missing). Days run
   noon to noon, so a night belongs to the date of the midnight nearest its midpoint (mood_ml's
   rule): index day d covers noon of local day d to noon of day d+1 and is dated d+1. The
   circadian pacemaker is integrated over the whole record once (one burn-in pass for records
   of two weeks or more: the record itself entrains the oscillator). A day needs 3/4 of its
   minutes known (not 2/3 as for NHANES): a night nobody measured is missing, not sleepless.
2. Per-day MN / SD / Zscore of each index, by :func:`biotune.mood.features.summarize_daily`
   (ddof 1, circular statistics for the phase, the same noise-level SD rule):

   - ``mode="trailing"`` (default; what a daily prediction can know): MN and SD over the valid
     days in the ``window_days`` ending at the day, Zscore = that day's deviation. Days with
     fewer than ``min_days`` valid days in the window, or invalid themselves, get NaN.
   - ``mode="record"`` (mood_ml's published features): MN and SD over the whole record, one
     Zscore per day. It looks into the future, so it is for reproducing mood_ml, not for
     evaluating a forecast.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from biotune.errors import InputFormatError
from biotune.mood.features import SLEEP_FEATURE_NAMES, SLEEP_INDEXES, daily_sleep_indexes, summarize_daily
from biotune.mood.personal.minutes import MinuteSeries

DAY_START = 720   # noon: a night falls inside one day
# NHANES' 2/3 rule would keep a day whose whole night is missing (Watch off, no sleep record: ~8 h
# of 24 missing) and score it as a sleepless day; with 3/4 such a day is invalid instead
MIN_VALID_FRACTION = 0.75


def daily_indexes(series: list[MinuteSeries], **kwargs) -> list[pd.DataFrame]:
    """The 12 daily indexes per person: a frame indexed by date with a ``valid`` column.

    Persons whose records have the same length are integrated together (one vectorized pass).
    Extra keyword arguments go to ``daily_sleep_indexes`` (wake_lux, min_valid_fraction, ...).
    """
    out: list[pd.DataFrame | None] = [None] * len(series)
    groups: dict[int, list[int]] = {}
    for i, s in enumerate(series):
        if len(s.state) % 1440:
            raise InputFormatError(f"minute series of {len(s.state)} minutes is not whole days",
                                   where="daily_indexes", fix="pass series from import_health / import_sleep_csv")
        groups.setdefault(len(s.state), []).append(i)
    for T, idx in groups.items():
        sleep = np.stack([series[i].sleep_binary() for i in idx])
        kw = {"burn_in_repeats": 1 if T >= 14 * 1440 else 3, "min_valid_fraction": MIN_VALID_FRACTION, **kwargs}
        daily = daily_sleep_indexes(sleep, None, 1440, start_clock_minute=0.0, day_start_clock_minute=DAY_START, **kw)
        D = daily[SLEEP_INDEXES[0]].shape[1]
        for row, i in enumerate(idx):
            dates = [series[i].start_date + dt.timedelta(days=d + 1) for d in range(D)]
            frame = pd.DataFrame({k: daily[k][row] for k in SLEEP_INDEXES}, index=pd.Index(dates, name="date"))
            frame.insert(0, "valid", np.isfinite(frame[SLEEP_INDEXES]).all(axis=1))
            out[i] = frame
    return out  # type: ignore[return-value]


def rolling_features(indexes: pd.DataFrame, window_days: int = 30, min_days: int = 7,
                     mode: str = "trailing") -> pd.DataFrame:
    """Per-day MN/SD/Zscore (SLEEP_FEATURE_NAMES) from one person's daily indexes."""
    arr = {k: indexes[k].to_numpy(np.float64) for k in SLEEP_INDEXES}
    D = len(indexes)
    valid = indexes["valid"].to_numpy(bool)
    if mode == "record":
        feats = summarize_daily({k: a[None, :] for k, a in arr.items()})
        rows = pd.DataFrame(np.repeat(feats.to_numpy(), D, axis=0), columns=SLEEP_FEATURE_NAMES, index=indexes.index)
        for k in SLEEP_INDEXES:
            mn, sd = rows[f"{k}_MN"].to_numpy(), rows[f"{k}_SD"].to_numpy()
            dev = arr[k] - mn
            if k == "Circadian_phase":
                dev = (dev + 12.0) % 24.0 - 12.0
            with np.errstate(invalid="ignore", divide="ignore"):
                z = np.where(sd <= 1e-4 * (1 + np.abs(mn)), 0.0, dev / sd)
            rows[f"{k}_Zscore"] = np.where(np.isfinite(arr[k]), z, np.nan)
        return rows
    if mode != "trailing":
        raise InputFormatError(f"unknown feature mode {mode!r}", where="rolling_features", fix="use trailing or record")
    w = int(window_days)
    # windows as rows: row d holds days d-w+1 .. d (NaN before the record), so one summarize_daily
    # call computes every day's statistics with the population code
    pad = np.full(w - 1, np.nan)
    stacked = {k: np.lib.stride_tricks.sliding_window_view(np.concatenate([pad, a]), w) for k, a in arr.items()}
    feats = summarize_daily(stacked)
    feats.index = indexes.index
    enough = np.lib.stride_tricks.sliding_window_view(np.concatenate([np.zeros(w - 1, bool), valid]), w).sum(axis=1)
    bad = ~valid | (enough < min_days)
    feats.loc[bad, :] = np.nan
    return feats


def person_features(series: MinuteSeries, window_days: int = 30, min_days: int = 7, mode: str = "trailing",
                    **kwargs) -> pd.DataFrame:
    """Daily indexes + the 36 features of one person, indexed by date."""
    return features_for([series], window_days, min_days, mode, **kwargs)[0]


def features_for(series: list[MinuteSeries], window_days: int = 30, min_days: int = 7, mode: str = "trailing",
                 **kwargs) -> list[pd.DataFrame]:
    """Daily indexes + the 36 features for several persons (integrated together when possible)."""
    return [ix.join(rolling_features(ix, window_days, min_days, mode))
            for ix in daily_indexes(series, **kwargs)]
