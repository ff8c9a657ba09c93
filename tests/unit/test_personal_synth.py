"""Generated persons: export.zip as the Health app writes it, labels and the planted signal."""

from __future__ import annotations

import datetime as dt
import re
import zipfile
from collections import Counter
from xml.parsers import expat

import numpy as np
import pytest

from biotune.mood.personal import healthxml as hx
from biotune.mood.personal.synth import EPISODE_DAYS, make_profile, night_plan, simulate
from biotune.mood.personal.synth_files import generate_persons, label_rows

RECORD_ORDER = ["type", "sourceName", "sourceVersion", "device", "unit", "creationDate", "startDate", "endDate",
                "value"]


@pytest.fixture(scope="module")
def persons(tmp_path_factory):
    out = tmp_path_factory.mktemp("persons")
    # before, across and after the iOS 16 release (2022-09-12)
    return [generate_persons(1, out, days=70, seed=3, filler=0.05, start=start, first_index=i)[0]
            for i, start in enumerate([dt.date(2021, 10, 20), dt.date(2022, 8, 20), dt.date(2023, 2, 1)])]


def _xml(person) -> str:
    with zipfile.ZipFile(person["export_zip"]) as zf:
        return zf.read(hx.EXPORT_XML).decode("utf-8")


def test_zip_layout_and_xml_parses(persons):
    with zipfile.ZipFile(persons[0]["export_zip"]) as zf:
        names = zf.namelist()
    assert hx.EXPORT_XML in names and hx.EXPORT_CDA in names
    assert any(n.startswith(hx.ROUTES_DIR + "/route_") and n.endswith(".gpx") for n in names)
    text = _xml(persons[0])
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE HealthData [')
    seen = Counter()
    parser = expat.ParserCreate()
    parser.StartElementHandler = lambda name, attrs: seen.update([name])
    parser.Parse(text, True)
    assert seen["HealthData"] == 1 and seen["Record"] > 1000 and seen["Workout"] >= 5
    assert seen["MetadataEntry"] > 100 and seen["ActivitySummary"] == 70


def test_record_attributes_in_health_app_order(persons):
    text = _xml(persons[1])
    for line in [ln for ln in text.splitlines() if ln.startswith(" <Record ")][:500:17]:
        names = re.findall(r' (\w+)="', line)
        assert names == [n for n in RECORD_ORDER if n in names], line
        assert re.search(r'startDate="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}"', line)


def test_every_ios_era_sleep_value(persons):
    values = Counter()
    for p in persons:
        values.update(re.findall(r'value="(HKCategoryValueSleepAnalysis\w+)"', _xml(p)))
    assert set(values) == set(hx.SLEEP_VALUES)
    # before iOS 16 no stages; after, no plain "Asleep"
    early = _xml(persons[0])
    assert "AsleepCore" not in early and "SleepAnalysisAsleep\"" in early
    late = _xml(persons[2])
    assert "SleepAnalysisAsleep\"" not in late and "AsleepREM" in late


def test_sources_overlap_and_duplicates(persons):
    data = persons[1]["data"]
    sleep = data.records[hx.SLEEP_TYPE]
    asleep = np.isin(sleep.value, (1, 3, 4, 5, 6))
    watch = asleep & (sleep.source == 0)
    app = asleep & (sleep.source == 2)
    assert watch.any() and app.any()
    # some third-party asleep record overlaps a Watch one: summing them would double count
    overlaps = sum(((sleep.start[watch] < b) & (sleep.end[watch] > a)).any()
                   for a, b in zip(sleep.start[app], sleep.end[app]))
    assert overlaps > 30
    steps = data.records[hx.STEPS_TYPE]
    ph, wa = steps.source == 1, steps.source == 0
    assert sum(((steps.start[wa] < b) & (steps.end[wa] > a)).any() for a, b in zip(steps.start[ph], steps.end[ph])) > 50
    lines = [ln for ln in _xml(persons[1]).split("\n <Record ") if "StepCount" in ln or "SleepAnalysis" in ln]
    dup = [k for k, v in Counter(lines).items() if v > 1]
    assert len(dup) >= len(data.duplicates[hx.STEPS_TYPE]) > 0


def test_offsets_change_with_travel_and_dst(persons):
    for p in persons:
        offsets = set(re.findall(r'startDate="[^"]+ ([+-]\d{4})"', _xml(p)))
        assert len(offsets) >= 2, (p["person_id"], offsets)


def test_labels_episodes_and_planted_signal(persons):
    for p in persons:
        prof = p["data"].profile
        rows = label_rows(prof)
        spans = sorted((dt.date.fromisoformat(r["start"]), dt.date.fromisoformat(r["end"])) for r in rows)
        assert all(b < c for (_, b), (c, _) in zip(spans, spans[1:])), "labels overlap"
        for e in prof.episodes:
            assert (e.end - e.start).days + 1 >= EPISODE_DAYS[e.kind][0]
        shift, _, _ = night_plan(prof)
        dep = [e for e in prof.episodes if e.kind == "depressive"]
        assert dep
        d0 = (dep[0].start - prof.start).days
        assert shift[d0] == pytest.approx(prof.dep_shift_h)            # full shift from onset
        assert 0 < abs(shift[d0 - 1]) < abs(prof.dep_shift_h)           # prodrome ramps in before onset
    signs = {np.sign(make_profile(i, seed=0).dep_shift_h) for i in range(12)}
    assert signs == {-1.0, 1.0}, "the depressive phase shift must differ in direction across persons"


def test_deterministic(tmp_path):
    a = generate_persons(1, tmp_path / "a", days=20, seed=9, filler=0.0)[0]
    b = generate_persons(1, tmp_path / "b", days=20, seed=9, filler=0.0)[0]
    assert _xml(a) == _xml(b)


def test_sleep_csv_columns(persons):
    head = open(persons[0]["sleep_csv"]).readline().strip()
    assert head == "sleep_start,sleep_end,time_in_bed,minutes_sleep,minutes_awake"
    rows = [ln.split(",") for ln in open(persons[0]["sleep_csv"]).read().splitlines()[1:]]
    assert len(rows) > 60
    assert all(int(r[2]) == int(r[3]) + int(r[4]) and int(r[3]) > 0 for r in rows)


def test_simulate_truth_consistent():
    data = simulate(make_profile(4, seed=1, days=30), filler=0.0)
    steps = data.records[hx.STEPS_TYPE]
    # every source records at most what really happened (+3% noise), never twice
    for src in (0, 1):
        assert steps.value[steps.source == src].sum() <= data.steps_truth.sum() * 1.04


def test_enough_manic_and_hypomanic_episodes_to_train_and_judge():
    # a 250-day record: each kind recurs, and most persons have it both in the earlier 60% (to learn
    # from) and in the last 40% (to be judged on); lengths stay within DSM-5 (manic >= 7 d, hypomanic >= 4 d)
    profiles = [make_profile(i, seed=0, days=250) for i in range(12)]
    for kind in ("manic", "hypomanic"):
        eps = [[e for e in p.episodes if e.kind == kind] for p in profiles]
        assert np.mean([len(e) for e in eps]) >= 2.0, kind
        both = sum(any((e.start - p.start).days < 150 for e in es) and any((e.end - p.start).days >= 150 for e in es)
                   for p, es in zip(profiles, eps))
        assert both >= 8, (kind, both)
        assert all(EPISODE_DAYS[kind][0] <= (e.end - e.start).days + 1 <= EPISODE_DAYS[kind][1] for es in eps for e in es)
    assert all(any(e.kind == "depressive" for e in p.episodes) for p in profiles)
