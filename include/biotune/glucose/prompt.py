"""The user message in the seed's (GluCoPilot) format, and reading its numbers back.

GluCoPilot's recommendation service builds its prompt as: ``Patient Profile:`` (age, gender,
diabetes type, target range, insulin-to-carb ratio, correction factor), the detected
meal-insulin-glucose spike events, ``Current Glucose Patterns (24-hour analysis):`` (average,
time in range, variability, frequent highs > 250, frequent lows < 70), ``Recent Data
Summary:``, ``Daily Patterns:`` and the instructions (5 recommendations, each with a title,
description, category, priority, action and timing); its fine-tuning guide adds a ``Specific
Patterns:`` section (the patterns identified in the data). This module renders those sections,
adds the overnight numbers the seed leaves out (overnight rise, low episodes), and parses the
numbers back out of a message so the checker, the safety rule and drift work on any prompt,
including ones written by another tool.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from biotune.glucose.patterns import FREQUENT_LOW_EPISODES_PER_DAY, FREQUENT_LOWS_PCT, Patterns

SYSTEM_PROMPT = ("You are a diabetes management assistant that provides personalized, evidence-based "
                 "recommendations. Be specific, actionable, and concise. Focus on the user's unique patterns "
                 "and data.")

CATEGORIES = ("insulin", "nutrition", "activity", "timing", "monitoring", "sleep", "stress", "general")
PRIORITIES = ("high", "medium", "low")

INSTRUCTIONS = (
    "Based on this analysis, please provide 3 to 5 specific, actionable recommendations to improve glucose "
    "management. For each recommendation:\n"
    "1. Provide a clear, concise title (one short sentence)\n"
    "2. Include a detailed explanation with specific actions (2-3 sentences)\n"
    f"3. Categorize as: {', '.join(CATEGORIES[:-1])}, or {CATEGORIES[-1]}\n"
    "4. Indicate priority as: high, medium, or low\n"
    "5. Suggest a specific action the user can take\n"
    "6. Suggest a specific time when this action should be taken")


@dataclass
class Profile:
    age: int | str = "Unknown"
    gender: str = "Unknown"
    diabetes_type: str = "Unknown"
    target_low: int = 70
    target_high: int = 180
    insulin_carb_ratio: int | str = "Unknown"
    correction_factor: int | str = "Unknown"


def _f(value, unit: str = "") -> str:
    return "Unknown" if value is None else f"{value:.1f}{unit}"


def specific_patterns(p: Patterns) -> list[str]:
    """The patterns the analysis identified, one line each (the seed's "Specific Patterns" section)."""
    out = []
    if p.frequent_lows:
        out.append(f"- Frequent lows: {p.lows_pct:.1f}% of readings below 70 mg/dL in {p.low_episodes} low "
                   f"episode(s), lowest {p.lowest:.0f} mg/dL")
    if p.dawn_phenomenon:
        out.append(f"- Dawn phenomenon: {p.overnight_rise:+.0f} mg/dL from the night low to before breakfast")
    if p.post_meal_spikes:
        out.append(f"- Post-meal spikes: {len(p.spikes)} meal(s) with a rise over 40 mg/dL within 3 hours")
    if p.cv > 36:
        out.append(f"- High variability: CV {p.cv:.1f}% (target 36% or less)")
    return out or ["- No frequent lows, dawn phenomenon or post-meal spikes detected"]


def _ratio(value) -> str:
    return "Unknown" if value in (None, "", "Unknown") else f"1:{value}"


def render_user_message(profile: Profile, p: Patterns) -> str:
    days = p.hours / 24.0
    span = "24-hour analysis" if abs(days - 1) < 1e-6 else f"{days:g}-day analysis"
    per = "in last 24 hours" if abs(days - 1) < 1e-6 else f"in last {days:g} days"
    lines = ["Patient Profile:",
             f"- Age: {profile.age}",
             f"- Gender: {profile.gender}",
             f"- Diabetes Type: {profile.diabetes_type}",
             f"- Target Range: {profile.target_low}-{profile.target_high} mg/dL",
             f"- Insulin-to-Carb Ratio: {_ratio(profile.insulin_carb_ratio)}",
             f"- Correction Factor: {profile.correction_factor}", ""]
    if p.spikes:
        lines.append("Recent meal-insulin-glucose spike events detected:")
        for e in p.spikes:
            took = (f"user took {e.insulin:.1f}u insulin at {e.insulin_time}, " if e.insulin is not None
                    else "no insulin logged, ")
            lines.append(f"- At {e.meal_time}, {took}ate {e.carbs:.0f}g carbs, glucose rose from "
                         f"{e.pre_glucose:.0f} to {e.peak_glucose:.0f} mg/dL in 3h (spike: {e.spike:.0f} mg/dL).")
        lines += ["For each event, suggest a more optimal insulin:carb ratio or action to prevent the spike.", ""]
    lines += [f"Current Glucose Patterns ({span}):",
              f"- Average Glucose: {p.average:.1f} mg/dL",
              f"- Time in Range: {p.time_in_range:.1f}%",
              f"- Glucose Variability: {p.cv:.1f}%",
              f"- Frequent highs (>250): {p.highs_pct:.1f}%",
              f"- Frequent lows (<70): {p.lows_pct:.1f}%",
              "",
              "Overnight and Lows:"]
    if p.overnight_rise is None:
        lines.append("- Overnight rise (dawn phenomenon): Unknown (too few night readings)")
    else:
        lines.append(f"- Overnight rise (dawn phenomenon): {p.overnight_rise:+.1f} mg/dL from the night low "
                     f"({p.night_low:.0f} mg/dL at {p.night_low_time}) to before breakfast ({p.pre_breakfast:.0f} mg/dL)")
    lines += [f"- Low episodes (<70 mg/dL for 15+ min): {p.low_episodes}, lowest reading {p.lowest:.0f} mg/dL",
              "",
              "Specific Patterns:", *specific_patterns(p),
              "",
              "Recent Data Summary:",
              f"- Glucose readings: {p.n_readings} {per}",
              f"- Insulin doses: {p.n_insulin} {per}",
              f"- Meals logged: {p.n_meals} {per}",
              "",
              "Daily Patterns:",
              f"- Morning (6am-12pm) avg glucose: {_f(p.daily.get('morning'), ' mg/dL')}",
              f"- Afternoon (12pm-6pm) avg glucose: {_f(p.daily.get('afternoon'), ' mg/dL')}",
              f"- Evening (6pm-12am) avg glucose: {_f(p.daily.get('evening'), ' mg/dL')}",
              f"- Overnight (12am-6am) avg glucose: {_f(p.daily.get('overnight'), ' mg/dL')}",
              "",
              INSTRUCTIONS]
    return "\n".join(lines)


_NUM = r"([-+]?\d+(?:\.\d+)?)"
_FIELDS = {
    "average": rf"Average Glucose:\s*{_NUM}",
    "time_in_range": rf"Time in Range:\s*{_NUM}\s*%",
    "cv": rf"Glucose Variability:\s*{_NUM}\s*%",
    "highs_pct": rf"Frequent highs \(>250\):\s*{_NUM}\s*%",
    "lows_pct": rf"Frequent lows \(<70\):\s*{_NUM}\s*%",
    "overnight_rise": rf"Overnight rise \(dawn phenomenon\):\s*{_NUM}",
    "low_episodes": rf"Low episodes \(<70 mg/dL for 15\+ min\):\s*{_NUM}",
    "lowest": rf"lowest reading\s*{_NUM}",
}
_COMPILED = {k: re.compile(v, re.IGNORECASE) for k, v in _FIELDS.items()}
_SPAN = re.compile(r"Current Glucose Patterns \((?:24-hour|(\d+(?:\.\d+)?)-day) analysis\)", re.IGNORECASE)
_SPIKE = re.compile(r"\(spike:\s*\d+(?:\.\d+)?\s*mg/dL\)", re.IGNORECASE)


def parse_user_message(text: str) -> dict[str, float | None]:
    """The pattern numbers a user message states (None where it does not state one)."""
    out: dict[str, float | None] = {}
    for key, rx in _COMPILED.items():
        m = rx.search(text)
        out[key] = float(m.group(1)) if m else None
    out["n_spikes"] = float(len(_SPIKE.findall(text)))
    span = _SPAN.search(text)
    out["days"] = float(span.group(1)) if span and span.group(1) else 1.0
    return out


def states_frequent_lows(text: str) -> bool:
    """Does this prompt describe frequent lows (time below 70 >= 4% or >= 2 low episodes)?"""
    nums = parse_user_message(text)
    lows, episodes = nums.get("lows_pct"), nums.get("low_episodes")
    per_day = None if episodes is None else episodes / max(nums["days"] or 1.0, 1.0)
    return bool((lows is not None and lows >= FREQUENT_LOWS_PCT)
                or (per_day is not None and per_day >= FREQUENT_LOW_EPISODES_PER_DAY))
