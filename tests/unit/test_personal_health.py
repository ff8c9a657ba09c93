"""Apple Health importer: sleep union, offsets, duplicates, steps, heart rate, bad input."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from biotune import storage
from biotune.errors import InputFormatError, MissingInputError
from biotune.mood.personal import healthxml as hx
from biotune.mood.personal.health import (BUCKET_SECONDS, Limits, XMLBombError, ZipSlipError, import_health,
                                          parse_offset)
from biotune.mood.personal.minutes import STATE_SLEEP, STATE_UNKNOWN, union_coverage
from biotune.mood.personal.sleepcsv import import_sleep_csv
from biotune.mood.personal.synth_files import generate_persons, night_summaries

WATCH = ("Ana’s Apple Watch", "9.1", hx.device_attr("Apple Watch", "Watch", "Watch6,2", "9.1", 0x2800))
PHONE = ("Ana’s iPhone", "16.1", hx.device_attr("iPhone", "iPhone", "iPhone14,5", "16.1", 0x2900))
APP = ("AutoSleep", "7.0", None)


def rec(rtype, src, start, end, value, unit=None, created=None):
    name, version, device = src
    return hx.record_open(rtype, name, version, device, unit, created or end, start, end, value) + "/>\n"


def sleep(src, start, end, value):
    return rec(hx.SLEEP_TYPE, src, start, end, f"HKCategoryValueSleepAnalysis{value}")


def make_zip(path: Path, records: list[str], extra: dict[str, bytes] | None = None, name: str = hx.EXPORT_XML,
             body: str | None = None) -> Path:
    text = body if body is not None else (hx.header("en_US", "2024-03-10 09:00:00 -0500", "1985-04-12",
                                                    "HKBiologicalSexFemale") + "".join(records) + hx.FOOTER)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, text)
        for k, v in (extra or {}).items():
            zf.writestr(k, v)
    return path


NIGHT = [
    sleep(PHONE, "2024-03-01 22:30:00 -0500", "2024-03-02 07:00:00 -0500", "InBed"),
    sleep(WATCH, "2024-03-01 23:00:00 -0500", "2024-03-02 01:00:00 -0500", "AsleepCore"),
    sleep(WATCH, "2024-03-02 01:00:00 -0500", "2024-03-02 01:20:00 -0500", "Awake"),
    sleep(WATCH, "2024-03-02 01:20:00 -0500", "2024-03-02 03:00:00 -0500", "AsleepREM"),
    sleep(APP, "2024-03-01 23:30:00 -0500", "2024-03-02 02:00:00 -0500", "Asleep"),
    # a second night: in bed (phone) with no asleep record from any source
    sleep(PHONE, "2024-03-02 23:00:00 -0500", "2024-03-03 06:00:00 -0500", "InBed"),
]


@pytest.fixture(scope="module")
def hand(tmp_path_factory):
    d = tmp_path_factory.mktemp("hand")
    steps = [rec(hx.STEPS_TYPE, PHONE, "2024-03-02 08:00:00 -0500", "2024-03-02 08:10:00 -0500", "100", "count"),
             rec(hx.STEPS_TYPE, WATCH, "2024-03-02 08:00:00 -0500", "2024-03-02 08:10:00 -0500", "95", "count"),
             rec(hx.STEPS_TYPE, WATCH, "2024-03-02 09:00:30 -0500", "2024-03-02 09:01:30 -0500", "60", "count")]
    hr = [rec(hx.HR_TYPE, WATCH, "2024-03-02 10:00:10 -0500", "2024-03-02 10:00:10 -0500", "60", "count/min"),
          rec(hx.HR_TYPE, WATCH, "2024-03-02 10:00:40 -0500", "2024-03-02 10:00:40 -0500", "70", "count/min")]
    # after a flight to Tokyo: the same UTC instant 6 hours later is 14 hours ahead on the local clock
    travel = [rec(hx.HR_TYPE, WATCH, "2024-03-03 20:00:00 +0900", "2024-03-03 20:00:00 +0900", "80", "count/min")]
    dup = steps[0]
    path = make_zip(d / "export.zip", NIGHT + steps + hr + travel + [dup])
    series, episodes, report = import_health(path, quarantine=False)
    return series, episodes, report


def minute(series, text):
    t = dt.datetime.strptime(text, "%Y-%m-%d %H:%M")
    return int((t - dt.datetime.combine(series.start_date, dt.time())).total_seconds() // 60)


def test_sleep_is_the_union_and_inbed_is_not_sleep(hand):
    series, episodes, _ = hand
    first = episodes.iloc[0].to_dict()
    # union of Core 23:00-01:00, app 23:30-02:00, REM 01:20-03:00 = 23:00-03:00 (240 min), not 380 summed
    assert first == {"sleep_start": "2024-03-01 22:30", "sleep_end": "2024-03-02 07:00", "time_in_bed": 510,
                     "minutes_sleep": 240, "minutes_awake": 270}
    assert (series.state[minute(series, "2024-03-01 23:00"):minute(series, "2024-03-02 03:00")] == STATE_SLEEP).all()
    assert series.state[minute(series, "2024-03-01 22:45")] != STATE_SLEEP          # in bed, not asleep
    # the in-bed-only night: sleep unknown (4), no episode invented
    assert len(episodes) == 1
    assert (series.state[minute(series, "2024-03-02 23:00"):minute(series, "2024-03-03 06:00")] == STATE_UNKNOWN).all()


def test_steps_not_double_counted_and_duplicates_once(hand):
    series, _, report = hand
    a = minute(series, "2024-03-02 08:00")
    assert series.steps[a:a + 10].sum() == pytest.approx(100.0)      # max of phone 100 / watch 95, duplicate once
    b = minute(series, "2024-03-02 09:00")
    assert series.steps[b] == pytest.approx(30.0) and series.steps[b + 1] == pytest.approx(30.0)   # spread by overlap
    assert report["duplicates_dropped"]["steps"] == 1


def test_heart_rate_per_minute_and_travel_offset(hand):
    series, _, report = hand
    assert series.heart_rate[minute(series, "2024-03-02 10:00")] == pytest.approx(65.0)
    assert series.heart_rate[minute(series, "2024-03-03 20:00")] == pytest.approx(80.0)   # Tokyo local clock
    assert series.offset_min[minute(series, "2024-03-03 20:00")] == 540
    assert set(report["utc_offsets_min"]) == {-300, 540}


def test_offset_jumps_leave_skipped_local_minutes(hand):
    _, _, report = hand
    assert report["local_minutes_skipped"] > 0


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    # New York across the 2022-11-06 fall-back, with a trip
    p = generate_persons(1, tmp_path_factory.mktemp("gen"), days=45, seed=2, filler=0.1,
                         start=dt.date(2022, 10, 20))[0]
    series, episodes, report = import_health(p["export_zip"], quarantine=False)
    return p, series, episodes, report


def test_generated_person_sleep_matches_brute_force_union(generated):
    p, series, episodes, _ = generated
    truth = night_summaries(p["data"])
    starts = pd.to_datetime(episodes["sleep_start"])
    rec = p["data"].records[hx.SLEEP_TYPE]
    compared, naive_total, union_total = 0, 0, 0
    for n in truth:
        gap = (starts - pd.Timestamp(n["start_local"])).abs()
        assert gap.min() <= pd.Timedelta(minutes=2)           # the minute holding >= 30 s of the record
        e = episodes.iloc[int(gap.argmin())]
        # brute force: mark every asleep second, then minutes covered >= 30 s
        lo, hi = n["start_utc"], n["end_utc"]
        sec = np.zeros(hi - lo, bool)
        sel = np.isin(rec.value, (1, 3, 4, 5, 6)) & (rec.end > lo) & (rec.start < hi)
        naive = 0
        for a, b in zip(rec.start[sel], rec.end[sel]):
            sec[max(a - lo, 0):b - lo] = True
            naive += b - a
        pad = (-len(sec)) % 60
        cov = np.concatenate([sec, np.zeros(pad, bool)]).reshape(-1, 60).sum(axis=1)
        if abs(e["minutes_sleep"] - int((cov >= 30).sum())) <= 1:
            compared += 1
        naive_total += naive / 60
        union_total += e["minutes_sleep"]
    assert compared >= len(truth) - 2          # a night across the clock change may differ by the repeated hour
    hours = episodes["minutes_sleep"].mean() / 60
    assert 6.0 < hours < 9.0, hours
    assert p["data"].profile.third_party and naive_total > 1.6 * union_total   # summing would double count


def test_generated_person_duplicates_and_steps(generated):
    p, series, _, report = generated
    data = p["data"]
    assert report["duplicates_dropped"]["sleep"] == len(data.duplicates[hx.SLEEP_TYPE])
    assert report["duplicates_dropped"]["steps"] == len(data.duplicates[hx.STEPS_TYPE])
    assert report["duplicates_dropped"]["heart_rate"] == len(data.duplicates[hx.HR_TYPE])
    steps = data.records[hx.STEPS_TYPE]
    summed = steps.value.sum()
    got = series.steps.sum()
    assert got < 0.8 * summed                                 # phone + watch overlap is not added up
    assert abs(got - data.steps_truth.sum()) / data.steps_truth.sum() < 0.2
    assert -240 in report["utc_offsets_min"] and -300 in report["utc_offsets_min"]   # EDT and EST
    assert report["local_minutes_repeated"] >= 60             # the fall-back hour


def test_chunking_and_buckets_do_not_change_the_result(generated):
    p, series, episodes, _ = generated
    s2, e2, _ = import_health(p["export_zip"], limits=Limits(chunk_records=997), quarantine=False)
    assert np.array_equal(series.state, s2.state) and np.allclose(series.steps, s2.steps)
    assert episodes.equals(e2)


def test_record_across_bucket_boundary(tmp_path):
    edge = dt.datetime.fromtimestamp(BUCKET_SECONDS * 700, dt.timezone.utc)
    fmt = lambda t: (t - dt.timedelta(hours=5)).strftime("%Y-%m-%d %H:%M:%S -0500")  # noqa: E731
    path = make_zip(tmp_path / "e.zip", [sleep(WATCH, fmt(edge - dt.timedelta(hours=3)),
                                               fmt(edge + dt.timedelta(hours=4)), "AsleepCore")])
    _, episodes, _ = import_health(path, quarantine=False)
    assert episodes["minutes_sleep"].tolist() == [420]


def test_union_coverage_matches_brute_force():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5000, 40)
    e = s + rng.integers(1, 900, 40)
    cov = union_coverage(s, e, 0, 100)
    sec = np.zeros(6000, bool)
    for a, b in zip(s, e):
        sec[a:b] = True
    assert np.array_equal(cov, sec.reshape(100, 60).sum(axis=1))


# ----------------------------------------------------------------------------- bad input
def _bad(tmp_path, records=None, body=None, **kw):
    return make_zip(tmp_path / "bad.zip", records or [], body=body, **kw)


@pytest.mark.parametrize("record, message, line", [
    (sleep(WATCH, "2024-03-01 23:00:00 -0500", "2024-03-02 01:00:00 -0500", "AsleepDreaming"),
     "unknown sleep analysis value", True),
    (sleep(WATCH, "2024-03-02 01:00:00 -0500", "2024-03-01 23:00:00 -0500", "AsleepCore"),
     "ends before it starts", True),
    (sleep(WATCH, "2024-03-01 23:00:00", "2024-03-02 01:00:00", "AsleepCore"), "no UTC offset", True),
    (rec(hx.HR_TYPE, WATCH, "2024-03-02 10:00:10 -0500", "2024-03-02 10:00:10 -0500", "1.1", "count/s"),
     "unit 'count/s'", True),
    (rec(hx.STEPS_TYPE, WATCH, "2024-03-02 10:00:10 -0500", "2024-03-02 10:00:10 -0500", "many", "count"),
     "is not a number", True),
])
def test_bad_records_name_the_line(tmp_path, record, message, line):
    path = _bad(tmp_path, NIGHT[:2] + [record])
    with pytest.raises(InputFormatError, match=message) as err:
        import_health(path, quarantine=False)
    lines = (hx.header("en_US", "2024-03-10 09:00:00 -0500", "1985-04-12", "HKBiologicalSexFemale")
             + "".join(NIGHT[:2])).count("\n") + 1
    assert f"line {lines}" in err.value.where and err.value.fix


def test_assume_offset_accepts_dates_without_offset(tmp_path):
    path = _bad(tmp_path, [sleep(WATCH, "2024-03-01 23:00:00", "2024-03-02 01:00:00", "AsleepCore")])
    _, episodes, _ = import_health(path, quarantine=False, assume_offset=parse_offset("-0500"))
    assert episodes["minutes_sleep"].tolist() == [120]


BOMB = """<?xml version="1.0"?>
<!DOCTYPE HealthData [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<HealthData locale="&lol3;"></HealthData>
"""
XXE = """<?xml version="1.0"?>
<!DOCTYPE HealthData [ <!ENTITY x SYSTEM "file:///etc/passwd"> ]>
<HealthData locale="&x;"></HealthData>
"""


@pytest.mark.parametrize("body, line", [(BOMB, 3), (XXE, 2)])
def test_entity_declarations_refused(tmp_path, body, line):
    with pytest.raises(XMLBombError, match="entity") as err:
        import_health(_bad(tmp_path, body=body), quarantine=False)
    assert f"line {line}" in err.value.where


def test_zip_slip_refused(tmp_path):
    for name in ("../../evil.sh", "/etc/cron.d/x", "apple_health_export/../../x", "C:\\x.xml"):
        path = make_zip(tmp_path / "slip.zip", NIGHT, extra={name: b"x"})
        with pytest.raises(ZipSlipError, match="zip slip"):
            import_health(path, quarantine=False)


def test_decompression_bomb_refused(tmp_path):
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr(hx.EXPORT_XML, b"<" + b" " * (30 << 20))
    with pytest.raises(XMLBombError, match="decompression bomb"):
        import_health(path, quarantine=False)
    with pytest.raises(XMLBombError, match="above the limit"):
        import_health(make_zip(tmp_path / "ok.zip", NIGHT), limits=Limits(max_xml_bytes=1000), quarantine=False)


def test_corrupt_truncated_and_missing(tmp_path):
    good = make_zip(tmp_path / "good.zip", NIGHT * 200)
    raw = good.read_bytes()
    (tmp_path / "trunc.zip").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputFormatError, match="not a zip file"):
        import_health(tmp_path / "trunc.zip", quarantine=False)
    (tmp_path / "noise.zip").write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(InputFormatError, match="not a zip file"):
        import_health(tmp_path / "noise.zip", quarantine=False)
    # directory intact, compressed data damaged
    damaged = bytearray(raw)
    mid = 200 + len(raw) // 4
    damaged[mid:mid + 64] = bytes(64)
    (tmp_path / "damaged.zip").write_bytes(bytes(damaged))
    with pytest.raises(InputFormatError, match="truncated or corrupt|not well-formed"):
        import_health(tmp_path / "damaged.zip", quarantine=False)
    with pytest.raises(MissingInputError, match="has no apple_health_export/export.xml"):
        import_health(make_zip(tmp_path / "other.zip", NIGHT, name="notes/readme.xml"), quarantine=False)
    with pytest.raises(InputFormatError, match="not well-formed") as err:
        import_health(_bad(tmp_path, body=hx.header("en", "x", "y", "z") + NIGHT[0][:60]), quarantine=False)
    assert "line" in err.value.where


def test_bad_input_is_quarantined(tmp_path, home):
    path = _bad(tmp_path, [sleep(WATCH, "2024-03-01 23:00:00 -0500", "2024-03-02 01:00:00 -0500", "Nap")])
    with pytest.raises(InputFormatError, match="quarantine"):
        import_health(path)
    assert not path.exists()
    qdir = storage.lake_path("quarantine")
    (entry,) = storage.listdir(qdir)
    reason = json.loads(Path(qdir, entry, "REASON.json").read_text())
    assert "unknown sleep analysis value" in reason["reason"]
    assert Path(qdir, entry, "bad.zip").exists()


# ----------------------------------------------------------------------------- sleep CSV
def test_sleep_csv_mood_ml_and_fitbit(generated, tmp_path):
    from biotune.mood.personal.synth_files import write_sleep_csv

    p, _, episodes, _ = generated
    s1, e1, _ = import_sleep_csv(p["sleep_csv"], quarantine=False)
    assert len(e1) == len(night_summaries(p["data"]))
    fit = write_sleep_csv(tmp_path / "fitbit.csv", p["data"], fitbit=True)
    s2, e2, _ = import_sleep_csv(fit, quarantine=False)
    assert e1.equals(e2)
    # the awake minutes stay awake inside the night (mood_ml's wake-in-window index needs them)
    assert (s1.state == STATE_SLEEP).sum() == pytest.approx(e1["minutes_sleep"].sum(), rel=0.01)
    assert np.isnan(s1.activity).all()


@pytest.mark.parametrize("text, message, where", [
    ("start,end,tib\n2024-03-01 23:00,2024-03-02 07:00,480\n", "unknown sleep CSV columns", "line 1"),
    ("sleep_start,sleep_end,time_in_bed,minutes_sleep,minutes_awake\n"
     "2024-03-01 23:00,2024-03-02 07:00,8,7,1\n", "looks like hours", "line 2"),
    ("sleep_start,sleep_end,time_in_bed,minutes_sleep,minutes_awake\n"
     "2024-03-01 23:00,2024-03-02 07:00,480,450,30\n"
     "2024-03-02 23:00,2024-03-03 07:00,480,7.5,0\n", "whole number", "line 3"),
    ("sleep_start,sleep_end,time_in_bed,minutes_sleep,minutes_awake\n"
     "2024-03-02 07:00,2024-03-01 23:00,480,450,30\n", "is not after", "line 2"),
    ("sleep_start,sleep_end,time_in_bed,minutes_sleep,minutes_awake\n"
     "2024-03-01 23:00,2024-03-02 07:00,28800,450,30\n", "looks like seconds", "line 2"),
    ("sleep_start,sleep_end,time_in_bed,minutes_sleep,minutes_awake\n"
     "yesterday,2024-03-02 07:00,480,450,30\n", "is not a time", "line 2"),
])
def test_bad_sleep_csv(tmp_path, text, message, where):
    path = tmp_path / "sleep.csv"
    path.write_text(text)
    with pytest.raises(InputFormatError, match=message) as err:
        import_sleep_csv(path, quarantine=False)
    assert where in err.value.where and err.value.fix


# ----------------------------------------------------------------------------- CLI
def test_cli_import_health(tmp_path, capsys, monkeypatch):
    from biotune.mood.personal import cli, crypto, store

    monkeypatch.setenv(crypto.ENV_KEY, crypto.new_key())
    path = make_zip(tmp_path / "export.zip", NIGHT)
    parser = argparse.ArgumentParser()
    mood = parser.add_subparsers(dest="group").add_parser("mood").add_subparsers(dest="cmd")
    cli.add_commands(mood)
    args = parser.parse_args(["mood", "import-health", str(path), "--person", "p1", "--out", str(tmp_path / "st"),
                              "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["sleep_episodes"] == 1 and out["days"] >= 2
    series = store.read_series("p1", base=str(tmp_path / "st"))
    assert (series.state == STATE_SLEEP).sum() == 240
    assert store.read_episodes("p1", base=str(tmp_path / "st"))["minutes_sleep"].tolist() == [240]
    # at rest: a pseudonymous folder of Fernet tokens, no id, no readable health data
    (folder,) = list((tmp_path / "st").iterdir())
    assert crypto.PSEUDONYM.match(folder.name) and "p1" not in folder.name
    for f in folder.iterdir():
        assert f.suffix == ".enc" and b"sleep_start" not in f.read_bytes() and b"PAR1" not in f.read_bytes()
