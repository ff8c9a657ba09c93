"""CGM files -> the glucose patterns a coaching prompt carries.

Input files (CSV, UTF-8, header row):

``cgm.csv``   one reading per row: ``timestamp`` (ISO 8601, local time) and ``glucose_mg_dl``.
              Dexcom Clarity exports are read too: ``Timestamp (YYYY-MM-DDThh:mm:ss)`` and
              ``Glucose Value (mg/dL)`` (rows whose ``Event Type`` is not ``EGV`` are ignored;
              ``Low``/``High`` become 40/400, the sensor's limits).
``meals.csv`` optional: ``timestamp``, ``carbs_g`` and/or ``insulin_units`` (a row with carbs
              is a meal; a row with insulin is a dose; one row may be both).

Patterns, over a window (the seed's prompt is a 24-hour analysis):

- average glucose, SD, CV = SD / mean x 100, time in range 70-180 (%), highs > 250 (%),
  lows < 70 (%), low episodes (>= 15 min below 70, the consensus definition), the lowest value;
- overnight rise: from the night's low (30-min rolling mean, 00:00-05:00) to the pre-breakfast
  level (mean of 06:00-07:00, cut at the first meal); >= 20 mg/dL is a dawn phenomenon
  (the usual clinical threshold);
- meal spikes: a meal of >= 20 g carbs whose 3 h peak is > 40 mg/dL above the reading at the
  meal (the seed's rule), with the dose logged nearest the meal (within 60 min).

Flags that drive the reviewed answers: ``dawn_phenomenon``, ``post_meal_spikes`` and
``frequent_lows`` (time below 70 >= 4%, the consensus ceiling, or >= 2 low episodes a day).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from biotune.errors import InputFormatError, MissingInputError

LOW, HIGH_RANGE, VERY_HIGH = 70.0, 180.0, 250.0
SPIKE_MIN_CARBS, SPIKE_MIN_RISE, SPIKE_WINDOW_MIN = 20.0, 40.0, 180
DAWN_MIN_RISE = 20.0
FREQUENT_LOWS_PCT, FREQUENT_LOW_EPISODES_PER_DAY = 4.0, 2.0
LOW_EPISODE_MIN = 15
SENSOR_MIN, SENSOR_MAX = 40.0, 400.0
PLAUSIBLE_MIN, PLAUSIBLE_MAX = 10.0, 700.0

TIME_ALIASES = ("timestamp", "Timestamp (YYYY-MM-DDThh:mm:ss)", "time", "datetime")
GLUCOSE_ALIASES = ("glucose_mg_dl", "Glucose Value (mg/dL)", "glucose", "sgv")
CARB_ALIASES = ("carbs_g", "Carb Value (grams)", "carbs")
INSULIN_ALIASES = ("insulin_units", "Insulin Value (u)", "insulin")


def _pick(columns, aliases) -> str | None:
    lower = {str(c).strip().lower(): c for c in columns}
    for alias in aliases:
        if alias.lower() in lower:
            return lower[alias.lower()]
    return None


def _read_csv(path) -> pd.DataFrame:
    if not os.path.exists(path):
        raise MissingInputError(f"no CGM file at {path}", where=str(path), fix="check the path")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputFormatError(f"{path} is not a readable CSV file ({exc})", where=str(path),
                               fix="export the file again as comma-separated UTF-8 text") from exc
    except pd.errors.EmptyDataError as exc:
        raise InputFormatError(f"{path} is empty", where=str(path),
                               fix="export the CGM data again; the file has no header or rows") from exc


def _parse_times(values: pd.Series, path, column: str) -> pd.Series:
    times = pd.to_datetime(values.str.strip(), errors="coerce", format="ISO8601")
    bad = times.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputFormatError(
            f"unreadable timestamp {values.iloc[row]!r}", where=f"{path}, row {row + 2}, column {column}",
            fix="write timestamps as ISO 8601, e.g. 2024-03-01T07:35:00")
    if getattr(times.dt, "tz", None) is not None:
        # Local wall-clock time is what the patterns need (dawn, meals): drop the offset.
        times = times.dt.tz_localize(None)
    return times


def read_cgm(path) -> pd.DataFrame:
    """A CGM CSV -> frame ``timestamp`` (datetime64), ``glucose`` (float mg/dL), sorted, deduplicated."""
    raw = _read_csv(path)
    tcol, gcol = _pick(raw.columns, TIME_ALIASES), _pick(raw.columns, GLUCOSE_ALIASES)
    if tcol is None or gcol is None:
        raise MissingInputError(
            f"{path} has no {'timestamp' if tcol is None else 'glucose'} column (columns: {list(raw.columns)})",
            where=str(path), fix="name the columns timestamp,glucose_mg_dl (or use a Dexcom Clarity export)")
    ecol = _pick(raw.columns, ("Event Type",))
    if ecol is not None:
        raw = raw[raw[ecol].str.strip() == "EGV"].reset_index(drop=True)
    text = raw[gcol].str.strip()
    text = text.replace({"Low": str(SENSOR_MIN), "LOW": str(SENSOR_MIN), "High": str(SENSOR_MAX), "HIGH": str(SENSOR_MAX)})
    glucose = pd.to_numeric(text, errors="coerce")
    bad = glucose.isna() | (glucose < PLAUSIBLE_MIN) | (glucose > PLAUSIBLE_MAX)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputFormatError(
            f"glucose value {raw[gcol].iloc[row]!r} is not a number of mg/dL between "
            f"{PLAUSIBLE_MIN:.0f} and {PLAUSIBLE_MAX:.0f}",
            where=f"{path}, row {row + 2}, column {gcol}",
            fix="glucose must be in mg/dL (multiply mmol/L by 18.0); remove blank or text rows")
    frame = pd.DataFrame({"timestamp": _parse_times(raw[tcol], path, tcol), "glucose": glucose.astype(float)})
    frame = frame.sort_values("timestamp", kind="stable").drop_duplicates("timestamp").reset_index(drop=True)
    if frame.empty:
        raise InputFormatError(f"{path} holds no glucose readings", where=str(path),
                               fix="export a period that has CGM readings")
    return frame


def read_meals(path) -> pd.DataFrame:
    """A meals/insulin CSV -> frame ``timestamp``, ``carbs`` (g, NaN = none), ``insulin`` (u, NaN = none)."""
    raw = _read_csv(path)
    tcol = _pick(raw.columns, TIME_ALIASES)
    ccol, icol = _pick(raw.columns, CARB_ALIASES), _pick(raw.columns, INSULIN_ALIASES)
    if tcol is None or (ccol is None and icol is None):
        raise MissingInputError(
            f"{path} needs a timestamp column and carbs_g and/or insulin_units (columns: {list(raw.columns)})",
            where=str(path), fix="name the columns timestamp,carbs_g,insulin_units")
    out = pd.DataFrame({"timestamp": _parse_times(raw[tcol], path, tcol)})
    for name, col, limit in (("carbs", ccol, 500.0), ("insulin", icol, 100.0)):
        if col is None:
            out[name] = np.nan
            continue
        text = raw[col].str.strip()
        values = pd.to_numeric(text.where(text != ""), errors="coerce")
        bad = (text != "") & (values.isna() | (values < 0) | (values > limit))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputFormatError(f"{name} value {raw[col].iloc[row]!r} is not a number between 0 and {limit:.0f}",
                                   where=f"{path}, row {row + 2}, column {col}",
                                   fix=f"write {name} as a plain number "
                                       f"({'grams' if name == 'carbs' else 'units'}) or leave it empty")
        out[name] = values.astype(float)
    return out.sort_values("timestamp", kind="stable").reset_index(drop=True)


@dataclass
class MealSpike:
    meal_time: str
    carbs: float
    insulin: float | None
    insulin_time: str | None
    pre_glucose: float
    peak_glucose: float
    spike: float
    minutes_to_peak: int


@dataclass
class Patterns:
    start: str
    end: str
    hours: float
    n_readings: int
    average: float
    sd: float
    cv: float
    time_in_range: float
    highs_pct: float
    lows_pct: float
    low_episodes: int
    lowest: float
    overnight_rise: float | None
    night_low: float | None
    night_low_time: str | None
    pre_breakfast: float | None
    night_min: float | None
    n_meals: int
    n_insulin: int
    meals_checked: int
    spikes: list[MealSpike] = field(default_factory=list)
    daily: dict[str, float | None] = field(default_factory=dict)

    @property
    def dawn_phenomenon(self) -> bool:
        # a rise out of a night low < 70 is a rebound, not the dawn phenomenon
        return (self.overnight_rise is not None and self.overnight_rise >= DAWN_MIN_RISE
                and self.night_min is not None and self.night_min >= LOW)

    @property
    def post_meal_spikes(self) -> bool:
        return len(self.spikes) > 0

    @property
    def frequent_lows(self) -> bool:
        days = max(self.hours / 24.0, 1.0)
        return self.lows_pct >= FREQUENT_LOWS_PCT or self.low_episodes / days >= FREQUENT_LOW_EPISODES_PER_DAY

    @property
    def mean_spike(self) -> float | None:
        return float(np.mean([s.spike for s in self.spikes])) if self.spikes else None

    def flags(self) -> dict[str, bool]:
        return {"dawn_phenomenon": self.dawn_phenomenon, "post_meal_spikes": self.post_meal_spikes,
                "frequent_lows": self.frequent_lows}

    def as_dict(self) -> dict:
        out = asdict(self)
        out.update(self.flags())
        return out


def _low_episodes(minutes: np.ndarray, values: np.ndarray, gap_min: float = 15.0, step_min: float = 5.0) -> int:
    """Runs of readings < 70 covering >= 15 min (each reading stands for ``step_min``; a gap > 15 min ends a run)."""
    count, run_start, prev = 0, None, None
    for t, v in zip(minutes, values):
        if run_start is not None and (v >= LOW or t - prev > gap_min):
            count += int(prev - run_start + step_min >= LOW_EPISODE_MIN)
            run_start = None
        if v < LOW and run_start is None:
            run_start = t
        prev = t
    if run_start is not None:
        count += int(prev - run_start + step_min >= LOW_EPISODE_MIN)
    return count


def _overnight(cgm: pd.DataFrame, meals: pd.DataFrame, day: dt.date):
    """(rise, night low, its time, pre-breakfast level, lowest raw reading) for the night ending on ``day``."""
    midnight = pd.Timestamp(day)
    night = cgm[(cgm.timestamp >= midnight) & (cgm.timestamp < midnight + pd.Timedelta(hours=5))]
    if len(night) < 12:  # under an hour of readings: no honest nadir
        return None
    first_meal = meals[(meals.timestamp >= midnight + pd.Timedelta(hours=5)) & (meals.carbs.fillna(0) > 0)]
    cut = midnight + pd.Timedelta(hours=7)
    if len(first_meal):
        cut = min(cut, first_meal.timestamp.iloc[0])
    morning = cgm[(cgm.timestamp >= midnight + pd.Timedelta(hours=6)) & (cgm.timestamp < cut)]
    if len(morning) < 3:
        return None
    smooth = night.set_index("timestamp").glucose.rolling("30min").mean()
    low_time = smooth.idxmin()
    low = float(smooth.min())
    pre = float(morning.glucose.mean())
    return pre - low, low, low_time, pre, float(night.glucose.min())


def _spikes(cgm: pd.DataFrame, meals: pd.DataFrame, start, end) -> tuple[list[MealSpike], int]:
    out, checked = [], 0
    t = cgm.timestamp.to_numpy()
    g = cgm.glucose.to_numpy()
    doses = meals[meals.insulin.fillna(0) > 0]
    for row in meals[(meals.timestamp >= start) & (meals.timestamp < end)].itertuples():
        if not (row.carbs >= SPIKE_MIN_CARBS):
            continue
        meal = np.datetime64(row.timestamp)
        pre_idx = np.flatnonzero((t >= meal - np.timedelta64(15, "m")) & (t <= meal + np.timedelta64(5, "m")))
        win = np.flatnonzero((t > meal) & (t <= meal + np.timedelta64(SPIKE_WINDOW_MIN, "m")))
        if len(pre_idx) == 0 or len(win) < SPIKE_WINDOW_MIN / 5 / 2:  # need half the 3 h readings
            continue
        checked += 1
        pre_i = pre_idx[np.argmin(np.abs(t[pre_idx] - meal))]
        peak_i = win[np.argmax(g[win])]
        rise = float(g[peak_i] - g[pre_i])
        if rise <= SPIKE_MIN_RISE:
            continue
        insulin = insulin_time = None
        if len(doses):
            gaps = (doses.timestamp - row.timestamp).abs()
            j = int(np.argmin(gaps.to_numpy()))
            if gaps.iloc[j] <= pd.Timedelta(minutes=60):
                insulin = float(doses.insulin.iloc[j])
                insulin_time = doses.timestamp.iloc[j].strftime("%H:%M")
        out.append(MealSpike(
            meal_time=row.timestamp.strftime("%Y-%m-%d %H:%M"), carbs=float(row.carbs), insulin=insulin,
            insulin_time=insulin_time, pre_glucose=float(g[pre_i]), peak_glucose=float(g[peak_i]), spike=rise,
            minutes_to_peak=int((t[peak_i] - meal) / np.timedelta64(1, "m"))))
    return out, checked


DAY_PARTS = {"morning": (6, 12), "afternoon": (12, 18), "evening": (18, 24), "overnight": (0, 6)}


def compute_patterns(cgm: pd.DataFrame, meals: pd.DataFrame | None = None, start=None, end=None) -> Patterns:
    """Patterns of the readings in ``[start, end)`` (default: the whole record).

    The meal-spike and overnight look-ups may use readings just outside the window (a dinner's
    3 h peak), so pass the whole record and a window rather than a pre-cut frame.
    """
    if meals is None:
        meals = pd.DataFrame({"timestamp": pd.Series([], dtype="datetime64[ns]"), "carbs": [], "insulin": []})
    start = pd.Timestamp(start) if start is not None else cgm.timestamp.iloc[0].normalize()
    end = pd.Timestamp(end) if end is not None else cgm.timestamp.iloc[-1].normalize() + pd.Timedelta(days=1)
    win = cgm[(cgm.timestamp >= start) & (cgm.timestamp < end)]
    if win.empty:
        raise InputFormatError(f"no CGM readings between {start} and {end}", where=f"window {start}..{end}",
                               fix="choose a window the CGM record covers")
    g = win.glucose.to_numpy(dtype=float)
    minutes = ((win.timestamp - start) / pd.Timedelta(minutes=1)).to_numpy()
    mean, sd = float(g.mean()), float(g.std(ddof=1)) if len(g) > 1 else 0.0
    rises = []
    for day in pd.date_range(start.normalize(), (end - pd.Timedelta(seconds=1)).normalize(), freq="D"):
        res = _overnight(cgm, meals, day.date())
        if res is not None:
            rises.append(res)
    if rises:
        # the median night: one odd night should not decide the pattern
        order = np.argsort([r[0] for r in rises])
        rise, low, low_time, pre, night_min = rises[order[len(order) // 2]]
    else:
        rise = low = low_time = pre = night_min = None
    spikes, checked = _spikes(cgm, meals, start, end)
    in_win = meals[(meals.timestamp >= start) & (meals.timestamp < end)]
    hours = win.timestamp.dt.hour.to_numpy()
    daily = {}
    for name, (h0, h1) in DAY_PARTS.items():
        sel = (hours >= h0) & (hours < h1)
        daily[name] = round(float(g[sel].mean()), 1) if sel.any() else None
    return Patterns(
        start=start.isoformat(), end=end.isoformat(), hours=float((end - start) / pd.Timedelta(hours=1)),
        n_readings=int(len(g)), average=round(mean, 1), sd=round(sd, 1),
        cv=round(sd / mean * 100.0, 1) if mean else 0.0,
        time_in_range=round(float(((g >= LOW) & (g <= HIGH_RANGE)).mean() * 100), 1),
        highs_pct=round(float((g > VERY_HIGH).mean() * 100), 1),
        lows_pct=round(float((g < LOW).mean() * 100), 1),
        low_episodes=_low_episodes(minutes, g), lowest=float(g.min()),
        overnight_rise=None if rise is None else round(float(rise), 1),
        night_low=None if low is None else round(float(low), 1),
        night_low_time=None if low_time is None else low_time.strftime("%H:%M"),
        pre_breakfast=None if pre is None else round(float(pre), 1),
        night_min=night_min,
        n_meals=int((in_win.carbs.fillna(0) > 0).sum()), n_insulin=int((in_win.insulin.fillna(0) > 0).sum()),
        meals_checked=checked, spikes=spikes, daily=daily)


def daily_windows(cgm: pd.DataFrame, min_hours: float = 20.0) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Calendar days (midnight to midnight) with at least ``min_hours`` of 5-min readings."""
    days = cgm.timestamp.dt.normalize()
    counts = days.value_counts().sort_index()
    return [(d, d + pd.Timedelta(days=1)) for d, n in counts.items() if n * 5 / 60 >= min_hours]
