"""Writers for generated persons: export.zip (as the Health app writes it), labels, sleep CSV.

``write_export_xml`` streams one person's records type by type (the Health app's grouping),
sorted by start within a type, duplicates appended after their type's block. The zip holds
``apple_health_export/export.xml``, ``export_cda.xml`` and ``workout-routes/*.gpx``.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import zipfile
from pathlib import Path
from typing import IO

import numpy as np

from biotune.mood.personal import healthxml as hx
from biotune.mood.personal.synth import (APP, FILE_ORDER, PHONE, SLEEP_NAMES, UNITS, WATCH, PersonData,
                                         PersonProfile, Timeline, make_profile, simulate)

LINES_PER_WRITE = 20_000


def fmt_dates(utc: np.ndarray, off_min: np.ndarray) -> list[str]:
    """UTC seconds + offset minutes -> 'YYYY-MM-DD HH:MM:SS +HHMM' (vectorized)."""
    utc = np.asarray(utc, dtype=np.int64)
    off = np.asarray(off_min, dtype=np.int64)
    text = np.datetime_as_string((utc + off * 60).astype("datetime64[s]"), unit="s").tolist()
    suffix = {o: f"{'+' if o >= 0 else '-'}{abs(o) // 60:02d}{abs(o) % 60:02d}" for o in set(off.tolist())}
    return [f"{t[:10]} {t[11:]} {suffix[o]}" for t, o in zip(text, off.tolist())]


class _Sources:
    def __init__(self, p: PersonProfile, tl: Timeline) -> None:
        self.names = {WATCH: f"{p.name}’s Apple Watch", PHONE: f"{p.name}’s iPhone", APP: p.third_party or "App"}
        self.switch = tl.local_to_utc(p.ios16_day, 12.0)

    def version(self, src: int, new: bool) -> str:
        return {WATCH: ("8.7", "9.1"), PHONE: ("15.6.1", "16.1"), APP: ("6.8.2", "7.0.1")}[src][int(new)]

    def device(self, src: int, new: bool, address: int) -> str | None:
        if src == WATCH:
            return hx.device_attr("Apple Watch", "Watch", "Watch6,2", self.version(src, new), address)
        if src == PHONE:
            return hx.device_attr("iPhone", "iPhone", "iPhone14,5", self.version(src, new), address)
        return None


def _value_text(rtype: str, values: np.ndarray) -> list[str]:
    if rtype == hx.SLEEP_TYPE:
        return [SLEEP_NAMES[int(v)] for v in values]
    if rtype == "HKCategoryTypeIdentifierAppleStandHour":
        return ["HKCategoryValueAppleStandHourStood"] * len(values)
    if rtype in (hx.STEPS_TYPE, hx.HR_TYPE):
        return [str(int(v)) for v in values]
    return [repr(float(v)) for v in values]


def _format(data: PersonData, rtype: str, idx: np.ndarray, created: np.ndarray, tl: Timeline, srcs: _Sources) -> list[str]:
    rec = data.records[rtype]
    start, end, src, value = rec.start[idx], rec.end[idx], rec.source[idx], rec.value[idx]
    offs = tl.offsets(start)
    starts, ends, creats = fmt_dates(start, offs), fmt_dates(end, offs), fmt_dates(created[idx], offs)
    values = _value_text(rtype, value)
    new = (start >= srcs.switch).tolist()
    unit = UNITS.get(rtype)
    zones = [tl.zone_at(int(t)) for t in start] if rtype == hx.SLEEP_TYPE else None
    lines = []
    for i, (sr, a, b, c, v, nw, st) in enumerate(zip(src.tolist(), starts, ends, creats, values, new, start.tolist())):
        head = hx.record_open(rtype, srcs.names[sr], srcs.version(sr, nw),
                              srcs.device(sr, nw, 0x280000000 + (st // 86400) % 0xFFFFF * 16), unit, c, a, b, v)
        if rtype == hx.HR_TYPE:
            lines.append(head + '>\n  <MetadataEntry key="HKMetadataKeyHeartRateMotionContext" value="0"/>\n </Record>\n')
        elif rtype == hx.SLEEP_TYPE and sr != APP:
            lines.append(head + f'>\n  <MetadataEntry key="HKTimeZone" value="{zones[i]}"/>\n </Record>\n')
        else:
            lines.append(head + "/>\n")
    return lines


def record_lines(data: PersonData, rtype: str, rng: np.random.Generator, chunk: int = LINES_PER_WRITE):
    """The lines of every record of ``rtype`` (children included) in file order, ``chunk`` at a time;
    the duplicated records follow, byte for byte."""
    rec = data.records[rtype]
    if len(rec) == 0:
        return
    tl = Timeline(data.profile)
    srcs = _Sources(data.profile, tl)
    created = rec.end + rng.integers(5, 900, len(rec))
    for lo in range(0, len(rec), chunk):
        yield _format(data, rtype, np.arange(lo, min(lo + chunk, len(rec))), created, tl, srcs)
    dup = data.duplicates.get(rtype)
    if dup is not None and len(dup):                    # byte-identical, re-synced later
        for lo in range(0, len(dup), chunk):
            yield _format(data, rtype, dup[lo:lo + chunk], created, tl, srcs)


def _workouts(data: PersonData, rng) -> tuple[list[str], dict[str, str]]:
    p, tl = data.profile, Timeline(data.profile)
    srcs = _Sources(p, tl)
    lines, routes = [], {}
    for night in data.nights[3::7]:
        start = night["bed_utc"] - int(rng.uniform(3, 6) * 3600)
        end = start + int(rng.uniform(25, 50) * 60)
        off = tl.offsets(np.array([start, end]))
        a, b = fmt_dates(np.array([start, end]), off)
        new = start >= srcs.switch
        local = dt.datetime.fromtimestamp(start + int(off[0]) * 60, dt.timezone.utc)
        name = f"route_{local:%Y-%m-%d}_{local.hour % 12 or 12}.{local.minute:02d}{'am' if local.hour < 12 else 'pm'}.gpx"
        dev = srcs.device(WATCH, new, 0x283000000)
        lines.append(
            f' <Workout workoutActivityType="HKWorkoutActivityTypeWalking" duration="{(end - start) / 60:.4f}" '
            f'durationUnit="min" sourceName="{srcs.names[WATCH]}" sourceVersion="{srcs.version(WATCH, new)}" '
            f'device={hx.quoteattr(dev)} creationDate="{b}" startDate="{a}" endDate="{b}">\n'
            f'  <MetadataEntry key="HKIndoorWorkout" value="0"/>\n'
            f'  <WorkoutEvent type="HKWorkoutEventTypeSegment" date="{a}" duration="{(end - start) / 60:.4f}" '
            f'durationUnit="min"/>\n'
            f'  <WorkoutStatistics type="HKQuantityTypeIdentifierDistanceWalkingRunning" startDate="{a}" '
            f'endDate="{b}" sum="{rng.uniform(2, 4):.4f}" unit="km"/>\n'
            f'  <WorkoutRoute sourceName="{srcs.names[WATCH]}" sourceVersion="{srcs.version(WATCH, new)}" '
            f'creationDate="{b}" startDate="{a}" endDate="{b}">\n'
            f'   <FileReference path="/workout-routes/{name}"/>\n  </WorkoutRoute>\n </Workout>\n')
        t = np.arange(start, end, 60)
        lat0, lon0 = 40.0 + rng.uniform(-5, 5), -100.0 + rng.uniform(-20, 20)
        pts = [(lat0 + 0.0002 * i, lon0 + 0.0003 * i, 120.0 + i * 0.1,
                dt.datetime.fromtimestamp(int(s), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
               for i, s in enumerate(t.tolist())]
        routes[f"{hx.ROUTES_DIR}/{name}"] = hx.gpx_route(pts)
    return lines, routes


def write_export_xml(fh: IO[str], data: PersonData, seed: int = 0) -> dict[str, str]:
    """Write export.xml to a text stream; returns the workout routes (zip path -> GPX text)."""
    rng = np.random.default_rng([seed, 5])
    p = data.profile
    end_day = p.start + dt.timedelta(days=p.days + 1)
    tl = Timeline(p)
    export_utc = tl.local_to_utc(p.days + 1, 9.2)
    fh.write(hx.header("en_US", fmt_dates(np.array([export_utc]), tl.offsets(np.array([export_utc])))[0],
                       f"{1970 + p.seed % 30}-04-12", "HKBiologicalSexFemale" if p.seed % 2 else "HKBiologicalSexMale"))
    for rtype in FILE_ORDER + tuple(t for t in data.records if t not in FILE_ORDER):
        if rtype not in data.records:
            continue
        for lines in record_lines(data, rtype, rng):
            fh.write("".join(lines))
    workouts, routes = _workouts(data, rng)
    fh.write("".join(workouts))
    for d in range(p.days):
        day = p.start + dt.timedelta(days=d)
        fh.write(f' <ActivitySummary dateComponents="{day:%Y-%m-%d}" activeEnergyBurned="{rng.uniform(200, 700):.3f}" '
                 'activeEnergyBurnedGoal="500" activeEnergyBurnedUnit="Cal" appleMoveTime="0" appleMoveTimeGoal="0" '
                 f'appleExerciseTime="{int(rng.integers(5, 60))}" appleExerciseTimeGoal="30" '
                 f'appleStandHours="{int(rng.integers(6, 14))}" appleStandHoursGoal="12"/>\n')
    fh.write(hx.FOOTER)
    del end_day
    return routes


def write_export_zip(path: str | os.PathLike, data: PersonData, seed: int = 0) -> str:
    """export.zip with apple_health_export/{export.xml, export_cda.xml, workout-routes/}."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        with zf.open(hx.EXPORT_XML, "w", force_zip64=True) as raw:
            import io

            text = io.TextIOWrapper(raw, encoding="utf-8", newline="\n", write_through=False)
            routes = write_export_xml(text, data, seed)
            text.flush()
            text.detach()
        hr = data.records["HKQuantityTypeIdentifierHeartRate"]
        tl = Timeline(data.profile)
        obs = []
        for i in range(0, min(len(hr), 400), 40):
            stamp = dt.datetime.fromtimestamp(int(hr.start[i]), dt.timezone.utc).strftime("%Y%m%d%H%M%S+0000")
            obs.append(("Heart rate", str(int(hr.value[i])), "count/min", stamp, stamp))
        del tl
        zf.writestr(hx.EXPORT_CDA, hx.cda_document(data.profile.name, "1985-04-12", obs))
        for name, text_ in routes.items():
            zf.writestr(name, text_)
    os.replace(tmp, path)
    return str(path)


def label_rows(p: PersonProfile) -> list[dict]:
    """Episodes plus baseline periods (the days between episodes), as a clinician would enter them."""
    rows = [{"person_id": p.person_id, "kind": e.kind, "start": e.start.isoformat(), "end": e.end.isoformat(),
             "severity": e.severity} for e in p.episodes]
    cursor = p.start
    last = p.start + dt.timedelta(days=p.days - 1)
    for e in sorted(p.episodes, key=lambda e: e.start):
        if e.start > cursor:
            rows.append({"person_id": p.person_id, "kind": "baseline", "start": cursor.isoformat(),
                         "end": (e.start - dt.timedelta(days=1)).isoformat(), "severity": ""})
        cursor = e.end + dt.timedelta(days=1)
    if cursor <= last:
        rows.append({"person_id": p.person_id, "kind": "baseline", "start": cursor.isoformat(),
                     "end": last.isoformat(), "severity": ""})
    return sorted(rows, key=lambda r: r["start"])


def night_summaries(data: PersonData) -> list[dict]:
    """Per night: in-bed span (all sleep records) and the union of asleep records, local clock."""
    rec = data.records[hx.SLEEP_TYPE]
    tl = Timeline(data.profile)
    out = []
    for night in data.nights:
        lo, hi = night["bed_utc"] - 3 * 3600, night["wake_utc"] + 3 * 3600
        sel = (rec.end > lo) & (rec.start < hi)
        if not sel.any():
            continue
        s, e, v = rec.start[sel], rec.end[sel], rec.value[sel]
        asleep = np.isin(v, (1, 3, 4, 5, 6))
        total, cur_s, cur_e = 0, None, None
        for a, b in sorted(zip(s[asleep].tolist(), e[asleep].tolist())):
            if cur_e is None or a > cur_e:
                total += (cur_e - cur_s) if cur_e is not None else 0
                cur_s, cur_e = a, b
            else:
                cur_e = max(cur_e, b)
        total += (cur_e - cur_s) if cur_e is not None else 0
        start, end = int(s.min()), int(e.max())
        off = tl.offsets(np.array([start, end]))
        out.append({"start_utc": start, "end_utc": end, "asleep_s": int(total),
                    "start_local": fmt_dates(np.array([start]), off[:1])[0][:16],
                    "end_local": fmt_dates(np.array([end]), off[1:])[0][:16]})
    return out


def write_sleep_csv(path: str | os.PathLike, data: PersonData, fitbit: bool = False) -> str:
    """mood_ml's input (sleep_start, sleep_end, time_in_bed, minutes_sleep, minutes_awake), or the
    Fitbit dashboard's sleep export columns with ``fitbit=True``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        if fitbit:
            w.writerow(["Start Time", "End Time", "Minutes Asleep", "Minutes Awake", "Number of Awakenings",
                        "Time in Bed", "Minutes REM Sleep", "Minutes Light Sleep", "Minutes Deep Sleep"])
        else:
            w.writerow(["sleep_start", "sleep_end", "time_in_bed", "minutes_sleep", "minutes_awake"])
        for n in night_summaries(data):
            tib = int(round((n["end_utc"] - n["start_utc"]) / 60))
            sl = int(round(n["asleep_s"] / 60))
            if fitbit:
                a = dt.datetime.strptime(n["start_local"], "%Y-%m-%d %H:%M").strftime("%Y-%m-%d %I:%M%p")
                b = dt.datetime.strptime(n["end_local"], "%Y-%m-%d %H:%M").strftime("%Y-%m-%d %I:%M%p")
                w.writerow([a, b, sl, tib - sl, 2, tib, "N/A", "N/A", "N/A"])
            else:
                w.writerow([n["start_local"], n["end_local"], tib, sl, tib - sl])
    return str(path)


def generate_persons(n: int, out_dir: str | os.PathLike, days: int = 150, seed: int = 0, filler: float = 0.3,
                     start: dt.date | None = None, first_index: int = 0) -> list[dict]:
    """N persons under ``out_dir/<person_id>/``: export.zip, labels.csv, sleep.csv, truth.json.

    Returns one dict per person with those paths. Deterministic for a given ``seed``."""
    out = Path(out_dir)
    persons = []
    for i in range(first_index, first_index + n):
        p = make_profile(i, seed=seed, days=days, start=start)
        data = simulate(p, filler=filler)
        d = out / p.person_id
        zip_path = write_export_zip(d / "export.zip", data, seed=seed + i)
        labels = d / "labels.csv"
        with open(labels, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["person_id", "kind", "start", "end", "severity"])
            w.writeheader()
            w.writerows(label_rows(p))
        sleep_csv = write_sleep_csv(d / "sleep.csv", data)
        (d / "truth.json").write_text(json.dumps(p.to_json(), indent=2))
        persons.append({"person_id": p.person_id, "export_zip": zip_path, "labels_csv": str(labels),
                        "sleep_csv": sleep_csv, "truth": str(d / "truth.json"), "data": data})
    return persons
