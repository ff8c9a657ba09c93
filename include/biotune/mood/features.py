"""The 36 mood_ml sleep and circadian features, computed for a whole cohort at once.

Reference: Lim, Jeong et al. (2024), "Accurately predicting mood episodes in mood
disorder patients using wearable sleep and circadian rhythm features", npj Digital
Medicine (code: github.com/mcqeen1207/mood_ml). Their index code (``mnsd.p``) is
MATLAB p-code; what is reproduced here follows the paper's description, the sleep
indexes of Katori et al. (PNAS 2022) that the README points to, the circadian
model of ojwalch/predicting_dlmo, and the published ``test.csv`` (whose columns
show e.g. LongSleepWindow_length = ST_long + WT_long, MN and SD constant over the
record, and one Zscore per day).

Input: ``sleep`` [n, T] minute series (1 asleep, 0 awake, NaN missing) with T a
whole number of days; ``valid`` optionally marks worn/known minutes.

Pipeline (all steps vectorized over participants; run-length encoding on the
flattened array, no Python loop per person):

1. Missing minutes (NaN or valid == False) are read as "not asleep", as in
   mood_ml, whose input lists only sleep episodes (anything outside an episode is
   wake). They still count as missing for day validity and percentages (below).
2. Bouts < 10 min are disregarded (Katori): first wake bouts < 10 min become
   sleep, then sleep bouts < 10 min become wake.
3. Sleep windows: runs of sleep, merged when separated by < 1 h of wake.
   A window is long when it lasts >= 3.75 h, otherwise short.
4. Days: 24-h periods from ``day_start_clock_minute`` (default noon) so that a
   night's sleep falls in one day; only whole days inside the record count
   (a 7-day midnight-aligned record gives 6 noon-to-noon days). A window belongs
   to the day holding its midpoint. A day is valid when at least
   ``min_valid_fraction`` of its minutes are valid; invalid days are NaN.
5. Daily indexes (hours unless noted):
   ST_long / ST_short      minutes asleep (after step 2) inside long / short windows
   WT_long / WT_short      window length - ST (the merged gaps of wake)
   LongSleepWindow_length  total length of long windows; _number how many
   ShortSleepWindow_length total length of short windows; _number how many
   Sleep_percentage        fraction of the day's valid minutes asleep (0-1)
   Sleep_amplitude         coefficient of variation (SD / mean) of the amount of
                           wake in the day's 144 ten-minute bins (Katori)
   Circadian_phase         DLMO clock time, hours [0, 24) (circadian.py)
   Circadian_amplitude     half the daily range of the pacemaker's x (circadian.py)
   The circadian model is driven by light = ``wake_lux`` while not asleep
   (step 2 series), 0 lux asleep.
6. Per participant over valid days: _MN mean, _SD sample standard deviation
   (ddof = 1, as MATLAB's std), _Zscore = (last valid day - MN) / SD, i.e. mood_ml's
   daily z-score taken on the final day of the record. SD == 0 gives Zscore 0 (the
   day equals the mean; an SD at noise level, <= 1e-4 (1 + |MN|), counts as 0);
   fewer than 2 valid days give NaN SD and Zscore; no valid
   day gives NaN everywhere. Circadian_phase uses circular statistics on the 24-h
   clock (circular mean; deviations wrapped to [-12, 12) h), so a DLMO moving
   across midnight does not explode the SD.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from biotune.errors import InputFormatError
from biotune.mood.circadian import ForgerParams, light_to_alpha, simulate_from_alpha

__all__ = [
    "SLEEP_INDEXES",
    "SLEEP_FEATURE_NAMES",
    "sleep_from_paxpredm",
    "daily_sleep_indexes",
    "summarize_daily",
    "mood_ml_features",
]

SLEEP_INDEXES: list[str] = [
    "ST_long", "ST_short", "WT_long", "WT_short",
    "LongSleepWindow_length", "LongSleepWindow_number",
    "ShortSleepWindow_length", "ShortSleepWindow_number",
    "Sleep_percentage", "Sleep_amplitude", "Circadian_phase", "Circadian_amplitude",
]
SLEEP_FEATURE_NAMES: list[str] = [f"{i}_{s}" for i in SLEEP_INDEXES for s in ("MN", "SD", "Zscore")]

BOUT_MIN = 10.0          # minutes: shorter bouts are flipped
MERGE_GAP_MIN = 60.0     # minutes: windows closer than this merge
LONG_WINDOW_MIN = 225.0  # minutes (3.75 h): long window threshold
# entrained x-minimum sits about this long after the circular mean sleep midpoint
# (Forger 1999, 250 lux awake); used only to start the oscillator near its final phase
_CBT_AFTER_MIDSLEEP_H = 1.6


def sleep_from_paxpredm(state: np.ndarray) -> np.ndarray:
    """NHANES PAXPREDM (1 wake, 2 sleep, 3 non-wear, 4 unknown) -> float sleep (1/0/NaN).

    0 is the cohort's code for a minute outside the recording; it is missing like non-wear."""
    s = np.asarray(state, dtype=np.float64)
    known = np.isnan(s) | np.isin(s, (0.0, 1.0, 2.0, 3.0, 4.0))
    if not known.all():
        bad = np.unique(s[~known])[:5]
        raise InputFormatError(
            f"PAXPREDM holds codes outside 0-4: {bad.tolist()}",
            "sleep_from_paxpredm(state)",
            "pass the PAXPREDM column of PAXMIN_H (1 wake, 2 sleep, 3 non-wear, 4 unknown)")
    out = np.full(s.shape, np.nan)
    out[s == 1.0] = 0.0
    out[s == 2.0] = 1.0
    return out


# ----------------------------------------------------------------------------- run-length helpers
def _runs(flat: np.ndarray, T: int):
    """Runs of a flattened [n, T] int8 array, never crossing a row: (starts, lengths, values)."""
    N = flat.size
    change = np.empty(N, dtype=bool)
    change[0] = True
    np.not_equal(flat[1:], flat[:-1], out=change[1:])
    change[::T] = True
    starts = np.flatnonzero(change)
    lengths = np.diff(np.append(starts, N))
    return starts, lengths, flat[starts].copy()


def _flip_short(starts, lengths, values, T, value, min_len):
    """Runs equal to ``value`` shorter than ``min_len`` take the other value; merge equal neighbours."""
    values = values.copy()
    values[(values == value) & (lengths < min_len)] = 1 - value
    boundary = np.ones(starts.size, dtype=bool)
    boundary[1:] = values[1:] != values[:-1]
    boundary |= (starts % T) == 0
    group = np.cumsum(boundary) - 1
    return starts[boundary], np.bincount(group, weights=lengths).astype(np.int64), values[boundary]


def _check_input(sleep, valid):
    sleep = np.asarray(sleep)
    if sleep.ndim != 2:
        raise InputFormatError(f"sleep must be a 2-D array [participants, minutes], got shape {sleep.shape}",
                               "mood_ml_features(sleep)", "stack one row of minutes per participant")
    if sleep.dtype == bool:
        sleep = sleep.astype(np.int8)
    if valid is not None:
        valid = np.asarray(valid)
        if valid.shape != sleep.shape:
            raise InputFormatError(f"valid has shape {valid.shape}, sleep has {sleep.shape}",
                                   "mood_ml_features(valid)", "pass a boolean mask of the same shape as sleep")
        valid = valid.astype(bool, copy=False)
    return sleep, valid


def _binarize(chunk: np.ndarray, vchunk: np.ndarray | None, where: str):
    """-> (asleep int8 with missing as 0, valid bool)."""
    if np.issubdtype(chunk.dtype, np.floating):
        nan = np.isnan(chunk)
        ok = nan | (chunk == 0) | (chunk == 1)
        valid = ~nan
    else:
        ok = (chunk == 0) | (chunk == 1)
        valid = np.ones(chunk.shape, dtype=bool)
    if not ok.all():
        bad = np.unique(chunk[~ok])[:5]
        raise InputFormatError(f"sleep holds values other than 0, 1 and NaN: {bad.tolist()}", where,
                               "encode asleep as 1, awake as 0 and missing as NaN (see sleep_from_paxpredm)")
    if vchunk is not None:
        valid &= vchunk
    asleep = np.zeros(chunk.shape, dtype=np.int8)
    asleep[valid & (chunk == 1)] = 1
    return asleep, valid


# ----------------------------------------------------------------------------- daily indexes
def daily_sleep_indexes(sleep: np.ndarray, valid: np.ndarray | None = None, minutes_per_day: int = 1440, *,
                        start_clock_minute: float = 0.0, day_start_clock_minute: float = 720.0,
                        min_valid_fraction: float = 2.0 / 3.0, wake_lux: float = 250.0,
                        burn_in_repeats: int = 3, step_minutes: float = 6.0,
                        chunk_size: int = 1000, params: ForgerParams = ForgerParams(),
                        ) -> dict[str, np.ndarray]:
    """The 12 daily indexes, each an [n, n_days] array (NaN on invalid days).

    ``minutes_per_day`` is the number of samples per 24 h (1440 for minute epochs);
    the 10-min / 1-h / 3.75-h rules and ``step_minutes`` are in real minutes.
    """
    sleep, valid = _check_input(sleep, valid)
    n, T = sleep.shape
    spd = int(minutes_per_day)
    if spd <= 0 or 1440 % spd and spd % 1440:
        raise InputFormatError(f"minutes_per_day={minutes_per_day} is not a usable number of samples per day",
                               "mood_ml_features(minutes_per_day)", "use 1440 for one sample per minute")
    epoch = 1440.0 / spd                                  # minutes per sample
    offset = int(round(((day_start_clock_minute - start_clock_minute) % 1440) / epoch))
    D = max((T - offset) // spd, 0)
    bins_per_day = 144
    bin_len = spd // bins_per_day if spd % bins_per_day == 0 else None
    out = {k: np.full((n, D), np.nan) for k in SLEEP_INDEXES}
    if n == 0 or D == 0:
        return out

    # integration step in samples: divides a day and the day offset
    r = max(int(round(step_minutes / epoch)), 1)
    r = np.gcd(np.gcd(r, spd), offset) if offset else np.gcd(r, spd)
    r = int(r)
    S = T // r
    alpha_wake = float(light_to_alpha(np.array(wake_lux), params))
    alpha_steps = np.empty((n, S), dtype=np.float64)
    cbt_guess = np.full(n, np.nan)
    clock = (start_clock_minute + np.arange(T) * epoch) % 1440.0
    cos_c = np.cos(2 * np.pi * clock / 1440.0).astype(np.float32)
    sin_c = np.sin(2 * np.pi * clock / 1440.0).astype(np.float32)
    day_valid = np.zeros((n, D), dtype=bool)

    for lo in range(0, n, max(int(chunk_size), 1)):
        hi = min(lo + max(int(chunk_size), 1), n)
        m = hi - lo
        asleep, vmask = _binarize(sleep[lo:hi], None if valid is None else valid[lo:hi],
                                  "mood_ml_features(sleep)")
        flat = asleep.reshape(-1)
        st, ln, va = _runs(flat, T)
        st, ln, va = _flip_short(st, ln, va, T, 0, BOUT_MIN / epoch)   # awakenings < 10 min -> sleep
        st, ln, va = _flip_short(st, ln, va, T, 1, BOUT_MIN / epoch)   # sleep bouts < 10 min -> wake
        f = np.repeat(va.astype(np.int8), ln).reshape(m, T)            # cleaned sleep series

        # --- windows: sleep runs + interior wake gaps < 1 h
        first = (st % T) == 0
        last = ((st + ln) % T) == 0
        gap = (va == 0) & ~first & ~last & (ln < MERGE_GAP_MIN / epoch)
        member = (va == 1) | gap
        prev_member = np.zeros_like(member)
        prev_member[1:] = member[:-1]
        prev_member[first] = False
        wstart_flag = member & ~prev_member
        wid = np.cumsum(wstart_flag) - 1
        sel = member
        nw = int(wstart_flag.sum())
        if nw:
            wlen = np.bincount(wid[sel], weights=ln[sel], minlength=nw)
            wwake = np.bincount(wid[sel], weights=(ln * gap)[sel], minlength=nw)
            wst = st[wstart_flag]
            wrow = wst // T
            wmid = (wst % T) + wlen / 2.0
            wday = np.floor((wmid - offset) / spd).astype(np.int64)
            keep = (wday >= 0) & (wday < D)
            key = wrow[keep] * D + wday[keep]
            wlen_h = wlen[keep] * epoch / 60.0
            wwake_h = wwake[keep] * epoch / 60.0
            is_long = wlen[keep] * epoch >= LONG_WINDOW_MIN
            size = m * D

            def agg(w):
                return np.bincount(key, weights=w, minlength=size).reshape(m, D)

            L, Sh = is_long.astype(float), (~is_long).astype(float)
            out["ST_long"][lo:hi] = agg((wlen_h - wwake_h) * L)
            out["WT_long"][lo:hi] = agg(wwake_h * L)
            out["ST_short"][lo:hi] = agg((wlen_h - wwake_h) * Sh)
            out["WT_short"][lo:hi] = agg(wwake_h * Sh)
            out["LongSleepWindow_length"][lo:hi] = agg(wlen_h * L)
            out["LongSleepWindow_number"][lo:hi] = agg(L)
            out["ShortSleepWindow_length"][lo:hi] = agg(wlen_h * Sh)
            out["ShortSleepWindow_number"][lo:hi] = agg(Sh)
        else:
            for k in SLEEP_INDEXES[:8]:
                out[k][lo:hi] = 0.0

        # --- per-day percentage, amplitude, validity
        fd = f[:, offset:offset + D * spd].reshape(m, D, spd)
        vd = vmask[:, offset:offset + D * spd].reshape(m, D, spd)
        nvalid = vd.sum(axis=2)
        day_valid[lo:hi] = nvalid >= min_valid_fraction * spd
        sleep_valid = (fd.astype(bool) & vd).sum(axis=2)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["Sleep_percentage"][lo:hi] = sleep_valid / nvalid
            if bin_len is not None:
                wake_b = ((1 - fd).astype(bool) & vd).reshape(m, D, bins_per_day, bin_len).sum(axis=3)
                val_b = vd.reshape(m, D, bins_per_day, bin_len).sum(axis=3)
                has = val_b > 0
                frac = np.where(has, wake_b / np.maximum(val_b, 1), 0.0)   # CV is scale-free
                cnt = has.sum(axis=2)
                mean = (frac * has).sum(axis=2) / cnt
                var = (((frac - mean[..., None]) ** 2) * has).sum(axis=2) / cnt
                out["Sleep_amplitude"][lo:hi] = np.where(mean > 0, np.sqrt(var) / np.where(mean > 0, mean, 1), np.nan)

        # --- light drive (wake_lux while not asleep) averaged over integration steps
        wake_frac = (1 - f[:, :S * r]).reshape(m, S, r).mean(axis=2, dtype=np.float64)
        alpha_steps[lo:hi] = alpha_wake * wake_frac
        # circular mean clock time of sleep -> initial oscillator phase
        fs = f.astype(np.float32)
        c, s_ = fs @ cos_c, fs @ sin_c
        mid = (np.degrees(np.arctan2(s_, c)) / 15.0) % 24.0
        # rounded so that BLAS rounding (batch vs single row) cannot change the simulation
        cbt_guess[lo:hi] = np.where(f.any(axis=1), np.round((mid + _CBT_AFTER_MIDSLEEP_H) % 24.0, 2), np.nan)

    # --- circadian pacemaker, whole cohort in one integration
    step_min = r * epoch
    phase, amp = simulate_from_alpha(
        alpha_steps, step_min, samples_per_day_steps=spd // r, day_offset_steps=offset // r, n_days=D,
        start_clock_minute=start_clock_minute, burn_in_repeats=burn_in_repeats,
        initial_cbtmin_hours=cbt_guess, params=params)
    out["Circadian_phase"] = phase
    out["Circadian_amplitude"] = amp

    for k in SLEEP_INDEXES:
        out[k][~day_valid] = np.nan
    return out


# ----------------------------------------------------------------------------- summaries
def _last_valid(a: np.ndarray) -> np.ndarray:
    ok = np.isfinite(a)
    idx = np.where(ok.any(axis=1), a.shape[1] - 1 - np.argmax(ok[:, ::-1], axis=1), 0)
    v = a[np.arange(a.shape[0]), idx]
    return np.where(ok.any(axis=1), v, np.nan)


def _zscore(dev_last, sd, mn):
    """dev / SD; an SD at floating-point/simulation noise level (<= 1e-4 (1 + |MN|)) gives 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        z = dev_last / sd
    flat = np.isfinite(sd) & (sd <= 1e-4 * (1.0 + np.abs(mn))) & np.isfinite(dev_last)
    return np.where(flat, 0.0, z)


def summarize_daily(daily: dict[str, np.ndarray]) -> pd.DataFrame:
    """MN, SD (ddof 1) and last-valid-day Zscore of each daily index -> [n, 36] frame."""
    cols = {}
    for k in SLEEP_INDEXES:
        a = np.asarray(daily[k], dtype=np.float64)
        ok = np.isfinite(a)
        cnt = ok.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            if k == "Circadian_phase":
                ang = np.where(ok, a, 0.0) * (2 * np.pi / 24.0)
                c = np.where(ok, np.cos(ang), 0.0).sum(axis=1)
                s = np.where(ok, np.sin(ang), 0.0).sum(axis=1)
                mn = np.where(cnt > 0, (np.arctan2(s, c) * 24.0 / (2 * np.pi)) % 24.0, np.nan)
                dev = (a - mn[:, None] + 12.0) % 24.0 - 12.0
            else:
                mn = np.where(cnt > 0, np.where(ok, a, 0.0).sum(axis=1) / np.maximum(cnt, 1), np.nan)
                dev = a - mn[:, None]
            ss = np.where(ok, dev * dev, 0.0).sum(axis=1)
            sd = np.where(cnt > 1, np.sqrt(ss / np.maximum(cnt - 1, 1)), np.nan)
        cols[f"{k}_MN"] = mn
        cols[f"{k}_SD"] = sd
        cols[f"{k}_Zscore"] = _zscore(_last_valid(np.where(ok, dev, np.nan)), sd, mn)
    return pd.DataFrame(cols, columns=SLEEP_FEATURE_NAMES)


def mood_ml_features(sleep: np.ndarray, valid: np.ndarray | None = None, minutes_per_day: int = 1440,
                     **kwargs) -> pd.DataFrame:
    """The 36 mood_ml features, one row per participant (index 0..n-1, columns SLEEP_FEATURE_NAMES).

    sleep: [n, T] with 1 asleep, 0 awake, NaN missing (see :func:`sleep_from_paxpredm`);
    valid: optional [n, T] bool, False marks non-wear/unknown minutes.
    Keyword options go to :func:`daily_sleep_indexes` (start_clock_minute,
    day_start_clock_minute, min_valid_fraction, wake_lux, burn_in_repeats, ...).
    Participants without a valid day get an all-NaN row.
    """
    daily = daily_sleep_indexes(sleep, valid, minutes_per_day, **kwargs)
    df = summarize_daily(daily)
    df.index = pd.RangeIndex(len(df))
    return df
