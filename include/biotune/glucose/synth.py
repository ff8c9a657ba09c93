"""Synthetic CGM records with planted patterns, written in the files :mod:`patterns` reads.

Layout written by :func:`write_patients`::

    <out>/patients.csv        patient_id, age, gender, diabetes_type, insulin_carb_ratio,
                              correction_factor, target_low, target_high, uses_insulin,
                              planted_dawn, planted_meal_spikes, planted_frequent_lows
    <out>/<patient_id>/cgm.csv    timestamp, glucose_mg_dl   (5-min readings, integers, 40-400)
    <out>/<patient_id>/meals.csv  timestamp, carbs_g, insulin_units

Each patient is a 5-minute trace: a baseline, an AR(1) wander, meal responses (a gamma-shaped
rise peaking 45-75 min after the meal), and the planted patterns:

- dawn phenomenon: a 30-70 mg/dL rise ramping from 03:00 to 07:00 (others: under 10);
- post-meal spikes: 1.4-2.2 mg/dL per gram of carbs (others 0.2-0.33, so a 90 g meal stays
  under the 40 mg/dL spike threshold), plus a late bolus;
- frequent lows: two or three dips a day to 45-62 mg/dL lasting 30-70 min (others: rare
  shallow dips).

Person ids are pseudonymous (``P0001``); there are no names or birth dates anywhere.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

STEP_MIN = 5


@dataclass
class Profile:
    patient_id: str
    age: int
    gender: str
    diabetes_type: str
    insulin_carb_ratio: int | None  # None when the patient takes no insulin
    correction_factor: int | None
    target_low: int
    target_high: int
    uses_insulin: bool
    planted_dawn: bool
    planted_meal_spikes: bool
    planted_frequent_lows: bool


def make_profiles(n: int, seed: int = 0, pattern_rate: float = 0.5, first_id: int = 1) -> list[Profile]:
    """``n`` patient profiles; the three patterns are planted independently with p = ``pattern_rate``."""
    rng = np.random.default_rng([seed, 1])
    out = []
    for i in range(n):
        dtype = "1" if rng.random() < 0.6 else "2"
        uses_insulin = dtype == "1" or rng.random() < 0.5
        icr, cf = int(rng.integers(6, 16)), int(rng.choice([30, 40, 50, 60]))
        out.append(Profile(
            patient_id=f"P{i + first_id:04d}", age=int(rng.integers(18, 80)),
            gender=str(rng.choice(["Male", "Female"])), diabetes_type=dtype,
            insulin_carb_ratio=icr if uses_insulin else None, correction_factor=cf if uses_insulin else None,
            target_low=70, target_high=180, uses_insulin=bool(uses_insulin),
            planted_dawn=bool(rng.random() < pattern_rate), planted_meal_spikes=bool(rng.random() < pattern_rate),
            planted_frequent_lows=bool(rng.random() < pattern_rate)))
    return out


def _meal_curve(minutes: np.ndarray, peak: float) -> np.ndarray:
    """Gamma-shaped response: 0 before the meal, 1 at ``peak`` minutes, decaying after."""
    x = np.clip(minutes, 0, None) / peak
    return np.where(minutes > 0, x ** 2 * np.exp(2 * (1 - x)), 0.0)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def simulate(profile: Profile, days: int = 3, start: dt.date = dt.date(2024, 3, 1),
             seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(cgm, meals) frames for one patient: ``timestamp, glucose_mg_dl`` and ``timestamp, carbs_g, insulin_units``."""
    rng = np.random.default_rng([seed, int(profile.patient_id[1:]), 2])
    n = days * 24 * 60 // STEP_MIN
    offset = int(rng.integers(0, STEP_MIN))  # sensors are not aligned to the clock
    minutes = np.arange(n) * STEP_MIN + offset
    tod = (minutes % 1440) / 60.0  # hour of day
    day_idx = minutes // 1440
    base = rng.uniform(105, 145) + (15 if profile.diabetes_type == "2" else 0)
    g = np.full(n, base)

    # dawn: ramp from 03:00 to 07:00, fading out 09:00-11:00
    for d in range(days):
        amp = rng.normal(48, 10) if profile.planted_dawn else rng.normal(2, 3)
        sel = day_idx == d
        h = tod[sel]
        g[sel] += max(amp, 30.0 if profile.planted_dawn else -5.0) * (_smoothstep((h - 3) / 4) - _smoothstep((h - 9) / 2))

    meals = []
    gain_lo, gain_hi = (1.4, 2.2) if profile.planted_meal_spikes else (0.2, 0.33)
    for d in range(days):
        plan = [(7 + 20 / 60 + rng.uniform(0, 0.6), rng.uniform(30, 70)),
                (12.5 + rng.normal(0, 0.4), rng.uniform(40, 80)),
                (18.75 + rng.normal(0, 0.5), rng.uniform(45, 90))]
        if rng.random() < 0.4:
            plan.append((15.5 + rng.normal(0, 0.4), rng.uniform(10, 25)))
        for hour, carbs in plan:
            t_meal = d * 1440 + hour * 60
            carbs = float(round(carbs))
            peak = rng.uniform(45, 75)
            g += carbs * rng.uniform(gain_lo, gain_hi) * _meal_curve(minutes - t_meal, peak)
            dose, t_dose = None, t_meal
            if profile.uses_insulin and carbs >= 15:
                dose = round(carbs / profile.insulin_carb_ratio * (0.8 if profile.planted_meal_spikes else 1.0), 1)
                if profile.planted_meal_spikes:
                    t_dose = t_meal + rng.uniform(10, 25)  # bolused after eating
            meals.append((t_meal, carbs, None))
            if dose is not None:
                meals.append((t_dose, None, dose))

    # AR(1) wander + sensor noise
    wander = np.zeros(n)
    eps = rng.normal(0, 2.0, n)
    for i in range(1, n):
        wander[i] = 0.95 * wander[i - 1] + eps[i]
    g += wander + rng.normal(0, 2.0, n)

    # lows: dips that bring the trace down to a planted nadir
    for d in range(days):
        k = int(rng.integers(2, 4)) if profile.planted_frequent_lows else int(rng.random() < 0.08)
        slots = [(1.0, 4.5), (14.0, 17.0), (20.5, 22.5)]  # night, afternoon, evening: separate episodes
        for slot in rng.choice(len(slots), size=k, replace=False):
            hour = rng.uniform(*slots[slot])
            center = d * 1440 + hour * 60
            width = rng.uniform(30, 70)  # minutes below the dip's half depth
            nadir = rng.uniform(45, 62) if profile.planted_frequent_lows else rng.uniform(64, 74)
            i = int(np.argmin(np.abs(minutes - center)))
            depth = max(g[i] - nadir, 0.0)
            shape = np.cos(np.clip((minutes - center) / width, -1, 1) * np.pi / 2) ** 2
            g -= depth * shape

    g = np.clip(np.round(g), 40, 400)
    keep = np.ones(n, dtype=bool)
    for d in range(days):  # realistic gaps: a signal loss now and then
        if rng.random() < 0.3:
            s = int(rng.integers(d * 288, (d + 1) * 288 - 12))
            keep[s:s + int(rng.integers(3, 10))] = False
    t0 = pd.Timestamp(start)
    cgm = pd.DataFrame({
        "timestamp": (t0 + pd.to_timedelta(minutes[keep], unit="m")).strftime("%Y-%m-%dT%H:%M:%S"),
        "glucose_mg_dl": g[keep].astype(int),
    })
    meal_frame = pd.DataFrame(meals, columns=["t", "carbs_g", "insulin_units"]).sort_values("t", kind="stable")
    meal_frame.insert(0, "timestamp", (t0 + pd.to_timedelta(meal_frame.pop("t").round(), unit="m")).dt.strftime(
        "%Y-%m-%dT%H:%M:%S"))
    return cgm, meal_frame.reset_index(drop=True)


def write_patients(out_dir, n_patients: int = 20, days: int = 3, seed: int = 0,
                   start: dt.date = dt.date(2024, 3, 1), pattern_rate: float = 0.5, first_id: int = 1) -> dict:
    """Write ``n_patients`` records under ``out_dir``; returns paths and the planted flags."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    profiles = make_profiles(n_patients, seed, pattern_rate, first_id)
    for p in profiles:
        cgm, meals = simulate(p, days=days, start=start, seed=seed)
        pdir = out / p.patient_id
        pdir.mkdir(exist_ok=True)
        cgm.to_csv(pdir / "cgm.csv", index=False)
        meals.to_csv(pdir / "meals.csv", index=False, float_format="%.1f")
    table = pd.DataFrame([asdict(p) for p in profiles])
    table.to_csv(out / "patients.csv", index=False)
    return {"root": str(out), "patients_csv": str(out / "patients.csv"), "n_patients": n_patients, "days": days,
            "planted": {p.patient_id: {"dawn": p.planted_dawn, "meal_spikes": p.planted_meal_spikes,
                                       "frequent_lows": p.planted_frequent_lows} for p in profiles}}
