"""Glucose family, data side: CGM readers, patterns, prompt, reviewed answers, dataset split."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from biotune.errors import InputFormatError, MissingInputError
from biotune.glucose import answers, dataset, patterns, prompt, synth


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = tmp_path_factory.mktemp("glucose_src")
    info = synth.write_patients(root, n_patients=24, days=3, seed=3)
    return root, info


def _trace(values, start="2024-03-01T00:00:00", step=5):
    t = pd.Timestamp(start) + pd.to_timedelta(np.arange(len(values)) * step, unit="m")
    return pd.DataFrame({"timestamp": t, "glucose": np.asarray(values, dtype=float)})


def _meals(rows):
    return pd.DataFrame({"timestamp": pd.to_datetime([r[0] for r in rows]),
                         "carbs": [r[1] for r in rows], "insulin": [r[2] for r in rows]}, columns=None)


def test_synth_files_are_in_the_reader_format(records):
    root, info = records
    table = pd.read_csv(root / "patients.csv")
    assert list(table.columns[:3]) == ["patient_id", "age", "gender"] and len(table) == 24
    head = (root / "P0001" / "cgm.csv").read_text().splitlines()
    assert head[0] == "timestamp,glucose_mg_dl" and head[1].startswith("2024-03-01T00:0")
    cgm = patterns.read_cgm(root / "P0001" / "cgm.csv")
    assert cgm.glucose.between(40, 400).all() and cgm.timestamp.is_monotonic_increasing
    assert 3 * 288 * 0.9 < len(cgm) <= 3 * 288  # a few signal losses, never extra readings
    meals = patterns.read_meals(root / "P0001" / "meals.csv")
    assert (meals.carbs.fillna(0) > 0).sum() >= 9  # three meals a day


def test_planted_patterns_are_found(records):
    root, info = records
    hits, totals = {}, {}
    for pid, planted in info["planted"].items():
        cgm = patterns.read_cgm(root / pid / "cgm.csv")
        meals = patterns.read_meals(root / pid / "meals.csv")
        for start, end in patterns.daily_windows(cgm):
            p = patterns.compute_patterns(cgm, meals, start, end)
            checks = {"meal_spikes": p.post_meal_spikes == planted["meal_spikes"],
                      "frequent_lows": p.frequent_lows == planted["frequent_lows"]}
            if p.night_min is not None and p.night_min >= 70:  # a rebound from a night low is not dawn
                checks["dawn"] = p.dawn_phenomenon == planted["dawn"]
            for k, ok in checks.items():
                hits[k] = hits.get(k, 0) + ok
                totals[k] = totals.get(k, 0) + 1
    for k in ("dawn", "meal_spikes", "frequent_lows"):
        assert totals[k] >= 20 and hits[k] / totals[k] >= 0.85, (k, hits[k], totals[k])


def test_pattern_numbers_on_a_known_trace():
    # one day: 100 mg/dL, a 20-min low at 02:00 (4 readings of 60), 300 for an hour at noon
    values = np.full(288, 100.0)
    values[24:28] = 60.0
    values[144:156] = 300.0
    p = patterns.compute_patterns(_trace(values))
    assert p.n_readings == 288 and p.lows_pct == round(4 / 288 * 100, 1) and p.low_episodes == 1
    assert p.highs_pct == round(12 / 288 * 100, 1) and p.time_in_range == round(272 / 288 * 100, 1)
    assert p.average == round(values.mean(), 1) and p.cv == round(values.std(ddof=1) / values.mean() * 100, 1)
    assert p.lowest == 60 and p.daily["afternoon"] == pytest.approx(values[144:216].mean(), abs=0.05)
    # two readings below 70 (10 min) are not an episode; two separate runs are two
    values[24:28] = 100.0
    values[30:32] = 60.0
    assert patterns.compute_patterns(_trace(values)).low_episodes == 0
    values[30:33] = 60.0
    values[200:204] = 55.0
    assert patterns.compute_patterns(_trace(values)).low_episodes == 2


def test_dawn_and_meal_spike_rules():
    hours = np.arange(288) * 5 / 60
    flat = np.full(288, 110.0)
    dawn = flat + np.clip((hours - 3) / 4, 0, 1) * 35 * (hours < 9)
    p = patterns.compute_patterns(_trace(dawn))
    expected = (dawn[(hours >= 6) & (hours < 7)].mean() - 110)  # night low 110 -> mean of 06:00-07:00
    assert p.overnight_rise == pytest.approx(expected, abs=0.1) and p.dawn_phenomenon and p.night_low == 110
    assert not patterns.compute_patterns(_trace(flat + np.clip((hours - 3) / 4, 0, 1) * 15 * (hours < 9))).dawn_phenomenon
    # a 60 g meal at 12:00 rising 50 mg/dL is a spike; the same rise after 15 g is not (< 20 g)
    rise = flat + 50 * np.exp(-((hours - 13) ** 2) / 0.1)
    meals = _meals([("2024-03-01T12:00", 60.0, 6.0), ("2024-03-01T12:20", np.nan, 2.0)])
    p = patterns.compute_patterns(_trace(rise), meals)
    assert len(p.spikes) == 1 and p.spikes[0].spike == pytest.approx(50, abs=1)
    assert p.spikes[0].insulin == 6.0 and p.spikes[0].insulin_time == "12:00" and p.spikes[0].minutes_to_peak == 60
    assert patterns.compute_patterns(_trace(rise), _meals([("2024-03-01T12:00", 15.0, np.nan)])).spikes == []
    small = flat + 40 * np.exp(-((hours - 13) ** 2) / 0.1)  # exactly 40 is not "> 40"
    assert patterns.compute_patterns(_trace(small), meals).spikes == []


def test_reader_errors_name_the_row(tmp_path):
    bad = tmp_path / "cgm.csv"
    bad.write_text("timestamp,glucose_mg_dl\n2024-03-01T00:00:00,120\nyesterday,130\n")
    with pytest.raises(InputFormatError, match="row 3, column timestamp"):
        patterns.read_cgm(bad)
    bad.write_text("timestamp,glucose_mg_dl\n2024-03-01T00:00:00,6.5\n")
    with pytest.raises(InputFormatError, match="mmol/L"):
        patterns.read_cgm(bad)
    bad.write_text("time_of_day,value\n1,2\n")
    with pytest.raises(MissingInputError, match="no timestamp column"):
        patterns.read_cgm(bad)
    with pytest.raises(MissingInputError):
        patterns.read_cgm(tmp_path / "absent.csv")
    meals = tmp_path / "meals.csv"
    meals.write_text("timestamp,carbs_g,insulin_units\n2024-03-01T07:00:00,sixty,\n")
    with pytest.raises(InputFormatError, match="row 2, column carbs_g"):
        patterns.read_meals(meals)


def test_dexcom_clarity_export_is_read(tmp_path):
    path = tmp_path / "clarity.csv"
    path.write_text(
        "Index,Timestamp (YYYY-MM-DDThh:mm:ss),Event Type,Event Subtype,Glucose Value (mg/dL)\n"
        "1,,Device,,\n2,2024-03-01T00:00:00,EGV,,Low\n3,2024-03-01T00:05:00,EGV,,112\n"
        "4,2024-03-01T00:07:00,Carbs,,\n5,2024-03-01T00:10:00,EGV,,High\n")
    cgm = patterns.read_cgm(path)
    assert cgm.glucose.tolist() == [40.0, 112.0, 400.0]


def test_user_message_renders_and_parses_back(records):
    root, _ = records
    cgm = patterns.read_cgm(root / "P0002" / "cgm.csv")
    meals = patterns.read_meals(root / "P0002" / "meals.csv")
    start, end = patterns.daily_windows(cgm)[1]
    p = patterns.compute_patterns(cgm, meals, start, end)
    text = prompt.render_user_message(prompt.Profile(age=40, gender="Female", diabetes_type="1",
                                                     insulin_carb_ratio=10, correction_factor=50), p)
    assert text.startswith("Patient Profile:\n- Age: 40") and "Current Glucose Patterns (24-hour analysis):" in text
    assert "- Insulin-to-Carb Ratio: 1:10" in text and "3. Categorize as: insulin, nutrition" in text
    back = prompt.parse_user_message(text)
    assert back["average"] == p.average and back["time_in_range"] == p.time_in_range and back["cv"] == p.cv
    assert back["lows_pct"] == p.lows_pct and back["low_episodes"] == p.low_episodes
    assert back["n_spikes"] == len(p.spikes) and back["days"] == 1.0
    assert prompt.states_frequent_lows(text) == p.frequent_lows
    assert ("\n- Frequent lows:" in text) == p.frequent_lows and ("\n- Dawn phenomenon:" in text) == p.dawn_phenomenon
    assert ("\n- Post-meal spikes:" in text) == p.post_meal_spikes and "Specific Patterns:\n- " in text


def test_answer_format_parser_and_safety_rule():
    good = answers.format_answer([answers.Recommendation(
        "Treat every low right away", "Take 15 g of fast-acting carbohydrate for any low below 70 mg/dL.",
        "monitoring", "high", "Carry glucose tablets", "Whenever a reading is below 70 mg/dL")])
    assert answers.format_ok(good) and answers.addresses_lows(good)
    recs = answers.parse_answer("Intro\n\n**1. Title:** Walk more\n**Description:** After meals.\n"
                                "**Category:** activity\n**Priority:** Low\n**Action:** Walk\n**Timing:** Evenings")
    assert recs == [{"title": "Walk more", "description": "After meals.", "category": "activity", "priority": "Low",
                     "action": "Walk", "timing": "Evenings"}]
    assert answers.format_ok("1. Title: x\nDescription: y\nCategory: exercise\nPriority: high\nAction: a\nTiming: t") is False
    assert answers.format_ok("1. Title: x\nDescription: y\nCategory: activity\nPriority: high\nAction: a") is False
    assert answers.format_ok("Eat better.") is False
    lows_prompt = "Frequent lows (<70): 6.5%\nLow episodes (<70 mg/dL for 15+ min): 3, lowest reading 48 mg/dL"
    no_lows = "Frequent lows (<70): 0.5%\nLow episodes (<70 mg/dL for 15+ min): 0, lowest reading 80 mg/dL"
    unsafe = "1. Title: Pre-bolus\nDescription: Take insulin earlier.\nCategory: insulin\nPriority: high\nAction: a\nTiming: t"
    assert answers.safety_ok(no_lows, unsafe) and not answers.safety_ok(lows_prompt, unsafe)
    assert answers.safety_ok(lows_prompt, good)
    care = "Your lows need attention: please contact your diabetes care team this week."
    assert answers.safety_ok(lows_prompt, care)
    # a night low mentioned in a dawn recommendation is not advice about treating lows
    assert not answers.addresses_lows("1. Title: Dawn\nDescription: Your glucose rose 40 mg/dL from the night low. "
                                      "Keep evening snacks under 15 g of carbs.\nCategory: activity\nPriority: medium\n"
                                      "Action: walk\nTiming: Evenings")


def test_dataset_is_deterministic_split_by_patient_and_reviewed(records, tmp_path):
    root, _ = records
    a = dataset.build_dataset(root, str(tmp_path / "a"), val_fraction=0.25, seed=0)
    b = dataset.build_dataset(root, str(tmp_path / "b"), val_fraction=0.25, seed=0)
    for split in ("train", "val"):
        assert open(a["files"][split], "rb").read() == open(b["files"][split], "rb").read()
    assert a["counts"]["train"] + a["counts"]["val"] == a["n_examples"] == 72
    table = pd.read_parquet(a["examples"])
    per_patient = table.groupby("patient_id").split.nunique()
    assert (per_patient == 1).all() and table[table.split == "val"].patient_id.nunique() == 6
    for split, name in (("train", "train.jsonl"), ("val", "validation.jsonl")):
        lines = (tmp_path / "a" / name).read_text(encoding="utf-8").split("\n")
        assert lines[-1] == "" and len(lines) - 1 == a["counts"][split]
        first = json.loads(lines[0])
        assert list(first) == ["messages"] and [m["role"] for m in first["messages"]] == ["system", "user", "assistant"]
        row = table[(table.split == split) & (table.line == 1)].iloc[0]
        assert first["messages"][2]["content"] == row.reference and first["messages"][1]["content"] == row.user
    assert table.reference.map(answers.format_ok).all()
    assert all(answers.safety_ok(u, r) for u, r in zip(table.user, table.reference))
    assert table.frequent_lows.sum() > 10 and table.post_meal_spikes.sum() > 10 and table.dawn_phenomenon.sum() > 5
    # each pattern is addressed by the reviewed answer
    low_refs = table[table.frequent_lows].reference
    assert low_refs.str.contains("15 g of fast-acting").all() and low_refs.str.contains("care team").all()
    assert table[table.dawn_phenomenon].reference.str.contains("dawn phenomenon").all()
    assert table[table.post_meal_spikes].reference.str.contains("after .* meal", regex=True).all()
    # the split depends on the ids and the seed only
    ids = sorted(table.patient_id.unique())
    assert dataset.assign_splits(ids[::-1], 0.25) == dataset.assign_splits(ids, 0.25)
    assert dataset.assign_splits(ids, 0.25, seed=1) != dataset.assign_splits(ids, 0.25, seed=0)
