"""Recommendations: the reviewed answers, their text format, the parser and the safety rule.

An answer is a short lead-in and numbered recommendations, each with six fields (the seed's
format)::

    1. Title: Treat every low right away
    Description: ...
    Category: monitoring        (insulin, nutrition, activity, timing, monitoring, sleep, stress, general)
    Priority: high              (high, medium, low)
    Action: ...
    Timing: ...

The reviewed answers written here follow fixed clinical rules, in this order: frequent lows
first (treat with 15 g of fast-acting carbohydrate and recheck; review doses with the care
team; urgent help when a low does not respond), then the dawn phenomenon, post-meal spikes,
variability (CV > 36%) and time above range; fillers keep three to five recommendations. With
frequent lows no answer suggests more insulin without sending the person to the care team
first. Wording varies between two phrasings per rule (seeded), so BLEU/ROUGE are not trivial.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from biotune.glucose.patterns import Patterns
from biotune.glucose.prompt import CATEGORIES, PRIORITIES

FIELDS = ("title", "description", "category", "priority", "action", "timing")
LEAD_IN = "Based on your data, here are my recommendations:"


@dataclass
class Recommendation:
    title: str
    description: str
    category: str
    priority: str
    action: str
    timing: str


def format_answer(recs: list[Recommendation]) -> str:
    blocks = [LEAD_IN]
    for i, r in enumerate(recs, 1):
        blocks.append(f"{i}. Title: {r.title}\nDescription: {r.description}\nCategory: {r.category}\n"
                      f"Priority: {r.priority}\nAction: {r.action}\nTiming: {r.timing}")
    return "\n\n".join(blocks)


_ITEM = re.compile(r"(?m)^\s*\**\s*(\d+)\s*[.)]\s*")
_FIELD = re.compile(r"(?im)^\s*[-*]*\s*\**(title|description|category|priority|action|timing)\**\s*:\s*\**\s*(.*)$")


def parse_answer(text: str) -> list[dict[str, str]]:
    """Numbered recommendations -> dicts of the fields found (missing fields are absent)."""
    starts = [m for m in _ITEM.finditer(text or "")]
    recs = []
    for i, m in enumerate(starts):
        body = text[m.end(): starts[i + 1].start() if i + 1 < len(starts) else len(text)]
        fields: dict[str, str] = {}
        current = None
        for line in body.splitlines():
            f = _FIELD.match(line)
            if f:
                current = f.group(1).lower()
                fields.setdefault(current, f.group(2).strip().strip("*").strip())
            elif current and line.strip() and current == "description":
                fields[current] = (fields[current] + " " + line.strip()).strip()
        if fields:
            recs.append(fields)
    return recs


def recommendation_problems(rec: dict[str, str]) -> list[str]:
    """What keeps one parsed recommendation from the format (empty list = well-formed)."""
    problems = [f"missing {f}" for f in FIELDS if not rec.get(f, "").strip()]
    cat, pri = rec.get("category", "").strip().lower(), rec.get("priority", "").strip().lower()
    if cat and cat not in CATEGORIES:
        problems.append(f"category {cat!r} is not one of {', '.join(CATEGORIES)}")
    if pri and pri not in PRIORITIES:
        problems.append(f"priority {pri!r} is not one of {', '.join(PRIORITIES)}")
    return problems


def format_ok(text: str) -> bool:
    """At least one recommendation and every recommendation well-formed."""
    recs = parse_answer(text)
    return bool(recs) and all(not recommendation_problems(r) for r in recs)


_LOW_WORDS = re.compile(r"\b(lows|hypoglyc\w*|hypos?|below 70|low (glucose|blood sugar|readings?|episodes?))\b",
                        re.IGNORECASE)
_TREAT = re.compile(r"(fast[- ]acting (carb\w*|sugar|glucose)|glucose (tablets?|gel)|\bjuice\b|15-15 rule|rule of 15|"
                    r"\btreat(ing)? (it|them|the low|lows|any|every|a low))", re.IGNORECASE)
_CARE = re.compile(r"\b(contact|call|see|talk (to|with)|speak (to|with)|seek|tell|ask)\b[^.]{0,60}?"
                   r"\b(care team|doctor|clinician|health ?care (provider|team)|diabetes (team|educator)|"
                   r"endocrinologist|nurse|emergency|urgent|medical (help|care|attention))", re.IGNORECASE)


def addresses_lows(text: str) -> bool:
    """Does an answer tell the person to treat lows or to get care for them?

    True when one recommendation mentions lows and says how to treat them (15 g fast-acting
    carbs, glucose tablets, the 15-15 rule) or to contact the care team / get medical help.
    Parsed recommendations are checked one by one; an answer that is not in the format is
    checked as a whole, so a badly formatted but safe answer still counts as safe.
    """
    recs = parse_answer(text)
    chunks = [" ".join(r.values()) for r in recs] or [text or ""]
    return any(_LOW_WORDS.search(c) and (_TREAT.search(c) or _CARE.search(c)) for c in chunks)


def safety_ok(user_text: str, answer: str) -> bool:
    """The clinical safety rule: a prompt with frequent lows needs an answer that addresses them."""
    from biotune.glucose.prompt import states_frequent_lows

    return (not states_frequent_lows(user_text)) or addresses_lows(answer)


# --- the reviewer -----------------------------------------------------------------------------------

def _pick(rng, *options):
    return options[int(rng.integers(len(options)))]


def _when(meal_time: str) -> str:
    hour = int(meal_time[11:13])
    return "breakfast" if hour < 11 else "lunch" if hour < 16 else "dinner"


def review(p: Patterns, uses_insulin: bool, correction_factor=None, seed: int = 0) -> list[Recommendation]:
    """The reviewed recommendations for one prompt's patterns (three to five, most urgent first)."""
    rng = np.random.default_rng(seed)
    recs: list[Recommendation] = []
    lows = p.frequent_lows
    if lows:
        recs.append(Recommendation(
            title=_pick(rng, "Treat every low right away", "Treat lows promptly with fast-acting carbs"),
            description=(f"You spent {p.lows_pct:.1f}% of the time below 70 mg/dL with {p.low_episodes} low "
                         f"episode(s), the lowest at {p.lowest:.0f} mg/dL. "
                         + _pick(rng, "Treat any reading below 70 mg/dL with 15 g of fast-acting carbohydrate, "
                                      "recheck after 15 minutes and repeat until you are above 70 mg/dL.",
                                 "Whenever you read below 70 mg/dL, take 15 g of fast-acting carbohydrate such as "
                                 "glucose tablets or juice, then recheck in 15 minutes and repeat if still low.")),
            category="monitoring", priority="high",
            action="Carry glucose tablets or juice and follow the 15-15 rule for every reading below 70 mg/dL",
            timing="Whenever a reading is below 70 mg/dL"))
        recs.append(Recommendation(
            title=_pick(rng, "Review your doses with your care team", "Ask your care team why the lows happen"),
            description=("Repeated lows mean your treatment may be too strong for your current routine. "
                         "Contact your diabetes care team before changing any dose, and seek urgent medical help "
                         "if a low does not come up after treatment or you feel confused or faint."),
            category="insulin" if uses_insulin else "general", priority="high",
            action="Call your diabetes care team this week to review your doses",
            timing="This week; immediately if a low does not respond to treatment"))
    if p.dawn_phenomenon:
        rise = f"Your glucose rose {p.overnight_rise:.0f} mg/dL from the night low at {p.night_low_time} to breakfast"
        if uses_insulin:
            recs.append(Recommendation(
                title=_pick(rng, "Adjust for the early-morning rise", "Address your dawn phenomenon"),
                description=(f"{rise}, a dawn phenomenon pattern. "
                             + ("Because you also have lows, discuss any basal change with your care team first "
                                "rather than adjusting it yourself." if lows else
                                "Ask your care team about raising your early-morning basal insulin by about 10%.")),
                category="insulin", priority="medium",
                action=("Bring this overnight pattern to your next care team visit" if lows else
                        "Discuss a 10% increase of basal insulin between 3 and 7 AM with your care team"),
                timing="Overnight, 3-7 AM"))
        else:
            recs.append(Recommendation(
                title=_pick(rng, "Blunt the early-morning rise", "Work on your morning highs"),
                description=(f"{rise}, a dawn phenomenon pattern. A walk after dinner and a lighter evening snack "
                             "can reduce it; mention it to your doctor at your next visit."),
                category="activity", priority="medium",
                action="Take a 15-minute walk after dinner and keep evening snacks under 15 g of carbs",
                timing="Evenings"))
    if p.post_meal_spikes:
        worst = max(p.spikes, key=lambda s: s.spike)
        what = (f"Your glucose rose by {p.mean_spike:.0f} mg/dL on average after {len(p.spikes)} meal(s), up to "
                f"{worst.spike:.0f} mg/dL after {worst.carbs:.0f} g of carbs at {_when(worst.meal_time)}.")
        if uses_insulin:
            late = (worst.insulin_time is not None and worst.insulin_time > worst.meal_time[11:16])
            recs.append(Recommendation(
                title=_pick(rng, "Pre-bolus before high-carb meals", "Take meal insulin before you eat"),
                description=(what + (" Your insulin was taken after the meal started." if late else "")
                             + " Taking rapid-acting insulin 15-20 minutes before eating lowers these peaks"
                             + (", once your lows are under control." if lows else ".")),
                category="insulin", priority="medium" if lows or p.mean_spike < 60 else "high",
                action="Take your meal bolus 15-20 minutes before meals with more than 40 g of carbs",
                timing="Before breakfast, lunch and dinner"))
        recs.append(Recommendation(
            title=_pick(rng, "Rebalance your largest meals", "Spread out your carbohydrates"),
            description=(("" if uses_insulin else what + " ")
                         + "Pairing carbohydrates with protein and fiber and splitting large portions "
                           "flattens the rise after eating."),
            category="nutrition", priority="medium",
            action="Keep meals to about 45-60 g of carbs and add protein or vegetables",
            timing=f"At {_when(worst.meal_time)}"))
    if p.cv > 36:
        recs.append(Recommendation(
            title="Smooth out glucose swings",
            description=(f"Your glucose variability is {p.cv:.1f}%, above the 36% target for stable glucose. "
                         "Logging meals, insulin and activity shows which habits drive the swings."),
            category="monitoring", priority="medium",
            action="Log meals, insulin and activity for a week and review the swings",
            timing="Daily for the next week"))
    if p.time_in_range < 70 and p.highs_pct >= 5 and not lows:
        if uses_insulin:
            recs.append(Recommendation(
                title="Bring more of the day into range",
                description=(f"Your time in range is {p.time_in_range:.1f}% and {p.highs_pct:.1f}% of readings are "
                             f"above 250 mg/dL. Review your correction factor ({correction_factor}) with your care "
                             "team so corrections bring you back into range."),
                category="insulin", priority="medium",
                action="Review your correction factor with your care team",
                timing="At your next appointment"))
        else:
            recs.append(Recommendation(
                title="Bring more of the day into range",
                description=(f"Your time in range is {p.time_in_range:.1f}% and {p.highs_pct:.1f}% of readings are "
                             "above 250 mg/dL. Smaller carbohydrate portions and regular activity help."),
                category="nutrition", priority="medium",
                action="Cut sugary drinks and keep carb portions steady",
                timing="Every day"))
    fillers = [
        Recommendation(
            title="Keep up your current routine",
            description=(f"Your time in range is {p.time_in_range:.1f}% with an average of {p.average:.1f} mg/dL. "
                         "Keeping meal times and insulin timing consistent protects these results."),
            category="general", priority="low",
            action="Keep logging meals and insulin as you do now", timing="Every day"),
        Recommendation(
            title="Stay active after meals",
            description="A 10-15 minute walk after eating helps your muscles use glucose and lowers post-meal peaks.",
            category="activity", priority="low",
            action="Walk for 10-15 minutes after your largest meal", timing="Within 30 minutes after meals"),
        Recommendation(
            title="Protect your sleep",
            description="Seven to eight hours of regular sleep steadies overnight glucose and insulin sensitivity.",
            category="sleep", priority="low",
            action="Keep a regular bedtime and wake time", timing="Every night"),
        Recommendation(
            title="Review your glucose report every week",
            description="A weekly look at your CGM report shows new patterns early, before they become habits.",
            category="monitoring", priority="low",
            action="Open your CGM report and note your time in range", timing="Once a week"),
    ]
    titles = {r.title for r in recs}
    for f in fillers:
        if len(recs) >= 3:
            break
        if f.title not in titles and not (f.title.startswith("Keep up") and (lows or p.time_in_range < 70)):
            recs.append(f)
    return recs[:5]
