"""PAT's input summarised for drift: the minute activity week in 26 numbers per person.

A PAT model reads 10,080 minutes of activity (7 days x 1440, column 0 = midnight of day 1), not
the 36 mood_ml sleep features XGBoost reads, so it is monitored on what it reads: the mean
activity in each clock hour over the week (24, the daily activity profile the transformer sees
minute by minute), the share of recorded minutes scored asleep (PAXPREDM 2 of 1-2) and the share
of minutes with no activity value (PAT sees them as the training mean). Missing minutes are left
out of the hourly means, so a wear gap is a change of ``missing_share``, not of activity.
Computed the same way for the training cohort (the reference logged with the model) and for each
daily batch.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from biotune.errors import InputFormatError

WEEK_MINUTES = 10_080
HOURS = 24
ACTIVITY_WEEK_FEATURE_NAMES: list[str] = [f"activity_h{h:02d}" for h in range(HOURS)] + ["sleep_share",
                                                                                       "missing_share"]


def activity_week_features(activity: np.ndarray, state: np.ndarray) -> pd.DataFrame:
    """One row per person: ``activity_h00``..``activity_h23`` (mean MIMS per clock hour, NaN when
    the hour was never recorded), ``sleep_share`` and ``missing_share`` (columns
    :data:`ACTIVITY_WEEK_FEATURE_NAMES`). ``activity`` float [n, 10080] with NaN missing;
    ``state`` PAXPREDM codes [n, 10080] (1 wake, 2 sleep, else unknown)."""
    a = np.asarray(activity, dtype=np.float64)
    s = np.asarray(state)
    if a.ndim != 2 or a.shape[1] != WEEK_MINUTES or s.shape != a.shape:
        raise InputFormatError(f"activity {a.shape} and state {s.shape} must both be [n, {WEEK_MINUTES}]",
                               where="biotune.mood.activity_week",
                               fix="pass the batch's (or cohort's) activity and state matrices, one week per row")
    n = len(a)
    by_hour = a.reshape(n, 7, HOURS, 60)
    with warnings.catch_warnings():  # an hour never recorded in the week is NaN, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        hourly = np.nanmean(by_hour, axis=(1, 3))
    scored = (s == 1) | (s == 2)
    n_scored = scored.sum(axis=1)
    sleep = np.where(n_scored > 0, (s == 2).sum(axis=1) / np.maximum(n_scored, 1), np.nan)
    out = pd.DataFrame(hourly, columns=ACTIVITY_WEEK_FEATURE_NAMES[:HOURS])
    out["sleep_share"] = sleep
    out["missing_share"] = np.isnan(a).mean(axis=1) if n else np.zeros(0)
    return out
