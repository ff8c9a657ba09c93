"""Generated persons: Apple Health export.zip files, episode labels and a sleep-episode CSV.

Each person lives ``days`` days in a home time zone (with its daylight-saving changes) and
takes trips to other zones; every record carries the UTC offset of where the person was. The
devices write what the Health app gets from them, overlapping as they do in real exports:

- Apple Watch: sleep stages (iOS 16+: AsleepCore/Deep/REM and Awake; before: Asleep
  segments with gaps at awakenings), heart rate every ~5 min while worn, steps, energy; it
  charges every morning and is left off some nights.
- iPhone: InBed for the night (Bedtime/Sleep schedule), steps while carried (overlapping
  the Watch's steps), walking distance.
- a third-party sleep app (some persons): one Asleep / AsleepUnspecified record per night
  that overlaps the Watch's, plus its own InBed.
- byte-identical duplicates of some records (an app re-syncing), appended later in the file.

Planted signal (``EPISODE_EFFECTS``), known to the person but not to a population model:
each person's depressive episodes come with a circadian-phase shift of a person-specific
size *and direction* (delay for some persons, advance for others), starting ``prodrome_days``
before onset; manic and hypomanic episodes with a phase advance of person-specific size.
Everyone also has phase excursions of random direction outside episodes (late nights, early
starts), so a phase deviation alone is ambiguous across persons: only the person's own
history tells which direction precedes *their* depressive episodes. Shared (population-
learnable) effects are weaker: longer sleep and less activity when depressed, shorter sleep
and more activity when (hypo)manic.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

from biotune.mood.personal import healthxml as hx

KINDS = ("depressive", "manic", "hypomanic")
EPISODE_DAYS = {"depressive": (14, 26), "manic": (7, 12), "hypomanic": (4, 7)}
# kinds after the first (depressive) episode: (hypo)manic ones twice as often, being shorter (a third of
# the days of a depressive one), so each task gets episodes in both the earlier and the later days
BAG = ("depressive", "manic", "hypomanic", "manic", "hypomanic")
# shared effects: (extra sleep hours, activity multiplier)
EPISODE_EFFECTS = {"depressive": (0.6, 0.7), "manic": (-1.8, 1.5), "hypomanic": (-0.9, 1.25)}
IOS16_RELEASE = dt.date(2022, 9, 12)
HOME_ZONES = ("America/New_York", "America/Los_Angeles", "Europe/Berlin", "America/Denver", "Australia/Sydney",
              "Europe/London")
TRIP_ZONES = ("Asia/Tokyo", "Europe/Paris", "America/Chicago", "Pacific/Honolulu", "Asia/Kolkata")
THIRD_PARTY = ("AutoSleep", "Sleep Cycle", "Pillow")
FIRST_NAMES = ("Ana", "Ben", "Chloé", "Dev", "Ella", "Femi", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea")

# record type order in the file (the Health app groups records by type)
FILE_ORDER = (hx.HR_TYPE, hx.STEPS_TYPE, "HKQuantityTypeIdentifierDistanceWalkingRunning",
              "HKQuantityTypeIdentifierBasalEnergyBurned", "HKQuantityTypeIdentifierActiveEnergyBurned",
              hx.SLEEP_TYPE, "HKCategoryTypeIdentifierAppleStandHour")
UNITS = {hx.HR_TYPE: "count/min", hx.STEPS_TYPE: "count", "HKQuantityTypeIdentifierDistanceWalkingRunning": "km",
         "HKQuantityTypeIdentifierBasalEnergyBurned": "kcal", "HKQuantityTypeIdentifierActiveEnergyBurned": "kcal"}
SLEEP_NAMES = {0: "HKCategoryValueSleepAnalysisInBed", 1: "HKCategoryValueSleepAnalysisAsleep",
               2: "HKCategoryValueSleepAnalysisAwake", 3: "HKCategoryValueSleepAnalysisAsleepCore",
               4: "HKCategoryValueSleepAnalysisAsleepDeep", 5: "HKCategoryValueSleepAnalysisAsleepREM",
               6: "HKCategoryValueSleepAnalysisAsleepUnspecified"}
WATCH, PHONE, APP = 0, 1, 2


@dataclass
class Episode:
    kind: str
    start: dt.date
    end: dt.date          # inclusive
    severity: int


@dataclass
class PersonProfile:
    person_id: str
    name: str
    seed: int
    start: dt.date
    days: int
    home_tz: str
    trips: list[tuple[int, int, str]]          # (first day, days, zone)
    bed_h: float                               # habitual bedtime, hours after local midnight
    sleep_h: float                             # habitual sleep duration
    dep_shift_h: float                         # signed: + delay, - advance (person-specific)
    manic_shift_h: float                       # negative: advance
    hypomanic_shift_h: float
    prodrome_days: int
    ios16_day: int                             # first night written with iOS 16 values
    third_party: str | None
    episodes: list[Episode] = field(default_factory=list)
    excursions: list[tuple[int, int, float]] = field(default_factory=list)

    def to_json(self) -> dict:
        d = asdict(self)
        d["start"] = self.start.isoformat()
        d["episodes"] = [{**asdict(e), "start": e.start.isoformat(), "end": e.end.isoformat()} for e in self.episodes]
        return d


@dataclass
class Records:
    """Records of one type as columns (UTC seconds); ``value`` numeric or a sleep code."""
    source: np.ndarray
    start: np.ndarray
    end: np.ndarray
    value: np.ndarray

    @classmethod
    def concat(cls, parts: list[tuple]) -> "Records":
        if not parts:
            z = np.zeros(0, np.int64)
            return cls(z.astype(np.int8), z, z, z.astype(np.float64))
        cols = [np.concatenate([np.asarray(p[i]) for p in parts]) for i in range(4)]
        order = np.argsort(cols[1], kind="stable")
        return cls(cols[0].astype(np.int8)[order], cols[1].astype(np.int64)[order],
                   cols[2].astype(np.int64)[order], cols[3].astype(np.float64)[order])

    def __len__(self) -> int:
        return len(self.start)


@dataclass
class PersonData:
    profile: PersonProfile
    records: dict[str, Records]
    duplicates: dict[str, np.ndarray]          # type -> indices into records[type] written twice
    nights: list[dict]
    steps_truth: np.ndarray                    # steps per UTC minute from ``origin_utc``
    origin_utc: int


# ----------------------------------------------------------------------------- profiles
def make_profile(index: int, seed: int = 0, days: int = 150, start: dt.date | None = None) -> PersonProfile:
    rng = np.random.default_rng([seed, index, 7])
    if start is None:
        # spread persons over the iOS 16 switch and both DST changes
        start = dt.date(2022, 6, 1) + dt.timedelta(days=int(rng.integers(0, 200)))
    home = HOME_ZONES[index % len(HOME_ZONES)]
    trips = []
    for _ in range(int(rng.integers(1, 3))):
        a = int(rng.integers(10, max(days - 12, 11)))
        trips.append((a, int(rng.integers(3, 8)), str(rng.choice(TRIP_ZONES))))
    trips.sort()
    trips = [t for i, t in enumerate(trips) if i == 0 or t[0] > trips[i - 1][0] + trips[i - 1][1] + 2]
    sign = 1.0 if rng.random() < 0.5 else -1.0
    p = PersonProfile(
        person_id=f"person-{index:03d}", name=FIRST_NAMES[index % len(FIRST_NAMES)], seed=int(seed), start=start,
        days=int(days), home_tz=home, trips=trips, bed_h=float(rng.normal(23.3, 0.6)),
        sleep_h=float(rng.normal(7.3, 0.4)), dep_shift_h=sign * float(rng.uniform(2.0, 3.0)),
        manic_shift_h=-float(rng.uniform(1.5, 2.5)), hypomanic_shift_h=-float(rng.uniform(0.8, 1.5)),
        prodrome_days=int(rng.integers(3, 6)), ios16_day=(IOS16_RELEASE - start).days + int(rng.integers(0, 25)),
        third_party=str(rng.choice(THIRD_PARTY)) if rng.random() < 0.7 else None)
    p.episodes = _place_episodes(rng, start, days)
    p.excursions = _place_excursions(rng, days, p.episodes, start)
    return p


def _place_episodes(rng, start: dt.date, days: int) -> list[Episode]:
    """Depressive first, then kinds drawn from ``BAG`` (refilled when empty, and afresh at 60%
    of the record), 12-26 day gaps; one depressive in the last 40%. The bag, rather than independent
    draws, gives a person manic and hypomanic episodes in the earlier 60% and in the last 40% of a long
    record, so those tasks can be trained on the earlier days and judged on the later ones."""
    spans: list[list] = []
    d = int(rng.integers(12, 20))
    kind = "depressive"
    bag: list[str] = []
    late = False
    while True:
        lo, hi = EPISODE_DAYS[kind]
        n = int(rng.integers(lo, hi + 1))
        if d + n > days - 2:
            break
        spans.append([kind, d, n])
        d += n + int(rng.integers(12, 26))
        if not late and d >= 0.6 * days:
            late, bag = True, []
        if not bag:
            bag = [str(k) for k in rng.permutation(BAG)]
        kind = bag.pop()
    late = [s for s in spans if s[1] >= 0.6 * days]
    if spans and not any(s[0] == "depressive" for s in late):
        cand = late[-1] if late else None
        room_end = days - 2
        if cand is not None:
            cand[0], cand[2] = "depressive", max(EPISODE_DAYS["depressive"][0], min(cand[2], room_end - cand[1]))
            if cand[1] + cand[2] > room_end:
                spans.remove(cand)
        last_end = spans[-1][1] + spans[-1][2] if spans else 0
        if not any(s[0] == "depressive" and s[1] >= 0.6 * days for s in spans):
            a = max(last_end + 10, int(0.6 * days))
            if a + 14 <= room_end:
                spans.append(["depressive", a, min(18, room_end - a)])
    return [Episode(k, start + dt.timedelta(days=a), start + dt.timedelta(days=a + n - 1), int(rng.integers(2, 5)))
            for k, a, n in spans]


def _place_excursions(rng, days: int, episodes: list[Episode], start: dt.date) -> list[tuple[int, int, float]]:
    """Phase excursions of random direction, at least a week away from any episode."""
    busy = np.zeros(days + 40, bool)
    for e in episodes:
        a, b = (e.start - start).days, (e.end - start).days
        busy[max(a - 8, 0):b + 8] = True
    out = []
    d = int(rng.integers(3, 10))
    while d < days - 4:
        n = int(rng.integers(2, 5))
        if not busy[d:d + n].any():
            out.append((d, n, float(rng.choice([-1.0, 1.0]) * rng.uniform(2.0, 3.0))))
            d += n
        d += int(rng.integers(6, 14))
    return out


def night_plan(p: PersonProfile) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per night d (evening of day d): phase shift (h), extra sleep (h), activity multiplier."""
    n = p.days + 1
    shift, extra, mult = np.zeros(n), np.zeros(n), np.ones(n)
    shifts = {"depressive": p.dep_shift_h, "manic": p.manic_shift_h, "hypomanic": p.hypomanic_shift_h}
    for e in p.episodes:
        a, b = (e.start - p.start).days, (e.end - p.start).days + 1
        ramp = np.arange(1, p.prodrome_days + 1) / (p.prodrome_days + 1)
        lo = max(a - p.prodrome_days, 0)
        shift[lo:a] += shifts[e.kind] * ramp[-(a - lo):] if a > lo else 0.0
        shift[a:b] += shifts[e.kind]
        tail = np.array([0.66, 0.33])
        shift[b:b + 2] += shifts[e.kind] * tail[:len(shift[b:b + 2])]
        ex, m = EPISODE_EFFECTS[e.kind]
        extra[a:b] += ex
        mult[a:b] *= m
    for a, k, s in p.excursions:
        shift[a:a + k] += s
    return shift, extra, mult


# ----------------------------------------------------------------------------- time zones
class Timeline:
    """Where the person is (time zone) at any UTC second; flights at local noon."""

    def __init__(self, p: PersonProfile) -> None:
        self.p = p
        self.switch_utc: list[int] = []
        self.zones: list[str] = [p.home_tz]
        for a, n, zone in p.trips:
            self.switch_utc.append(self.local_to_utc(a, 12.0, self.zones[-1]))
            self.zones.append(zone)
            self.switch_utc.append(self.local_to_utc(a + n, 12.0, zone))
            self.zones.append(p.home_tz)

    def zone_for_day(self, d: int) -> str:
        for a, n, zone in self.p.trips:
            if a <= d < a + n:
                return zone
        return self.p.home_tz

    def local_to_utc(self, day: int, hours: float, zone: str | None = None) -> int:
        zone = zone or self.zone_for_day(day)
        local = dt.datetime.combine(self.p.start + dt.timedelta(days=day), dt.time()) + dt.timedelta(hours=hours)
        return int(local.replace(tzinfo=ZoneInfo(zone)).timestamp())

    def zone_at(self, utc: int) -> str:
        return self.zones[bisect_right(self.switch_utc, utc)]

    def offsets(self, utc: np.ndarray) -> np.ndarray:
        """UTC offset in minutes of the zone the person is in, per UTC second."""
        utc = np.asarray(utc, dtype=np.int64)
        quarter = utc // 900
        uq, inv = np.unique(quarter, return_inverse=True)
        vals = np.array([_offset_min(self.zone_at(int(q) * 900), int(q)) for q in uq], dtype=np.int16)
        return vals[inv] if len(utc) else np.zeros(0, np.int16)


@lru_cache(maxsize=200_000)
def _offset_min(zone: str, quarter: int) -> int:
    when = dt.datetime.fromtimestamp(quarter * 900, dt.timezone.utc)
    return int(ZoneInfo(zone).utcoffset(when).total_seconds() // 60)


# ----------------------------------------------------------------------------- simulation
def simulate(p: PersonProfile, filler: float = 0.3) -> PersonData:
    """All records of one person (UTC seconds), the nights and the true steps per minute."""
    rng = np.random.default_rng([p.seed, int(p.person_id.split("-")[-1]), 11])
    tl = Timeline(p)
    shift, extra, mult = night_plan(p)
    origin = tl.local_to_utc(0, 0.0) - 86400
    n_min = (p.days + 3) * 1440
    asleep_true = np.zeros(n_min, bool)
    worn = np.ones(n_min, bool)
    nights = []
    sleep_parts: list[tuple] = []
    for d in range(p.days):
        zone = tl.zone_for_day(d)
        bed = tl.local_to_utc(d, p.bed_h + rng.normal(0, 0.35) + shift[d], zone)
        onset = bed + int(rng.uniform(5, 25) * 60)
        dur = max(3.0, p.sleep_h + rng.normal(0, 0.4) + extra[d]) * 3600
        wake = onset + int(dur)
        watch_on = rng.random() > 0.1
        new_era = d >= p.ios16_day
        m0, m1 = (onset - origin) // 60, (wake - origin) // 60
        asleep_true[m0:m1] = True
        charge = tl.local_to_utc(d, 7.6 + rng.uniform(-0.3, 0.3), zone) - origin
        worn[charge // 60: charge // 60 + 60] = False          # morning charge
        if not watch_on:
            worn[(bed - origin) // 60:(wake - origin) // 60 + 10] = False
        inbed = (bed - int(rng.uniform(0, 10) * 60), wake + int(rng.uniform(2, 20) * 60))
        if rng.random() < 0.95:
            sleep_parts.append(([PHONE], [inbed[0]], [inbed[1]], [0]))
        if watch_on:
            sleep_parts.append(_watch_sleep(rng, onset, wake, new_era))
        if p.third_party:
            a = onset + int(rng.uniform(-10, 20) * 60)
            b = wake + int(rng.uniform(-20, 10) * 60)
            sleep_parts.append(([APP, APP], [inbed[0] + 120, a], [inbed[1] - 60, b], [0, 6 if new_era else 1]))
        nights.append({"night": d, "zone": zone, "bed_utc": bed, "onset_utc": onset, "wake_utc": wake,
                       "watch": watch_on, "ios16": new_era, "shift_h": float(shift[d])})
    # the devices record from half a day before the first night to half a day after the last
    span = (max((nights[0]["bed_utc"] - origin) // 60 - 720, 0), (nights[-1]["wake_utc"] - origin) // 60 + 720)
    worn[:span[0]] = False
    worn[span[1]:] = False
    steps_truth, step_parts, dist_parts, bouts = _steps(rng, p, nights, origin, n_min, mult, worn, span)
    hr = _heart_rate(rng, origin, n_min, worn, asleep_true, bouts)
    records = {hx.SLEEP_TYPE: Records.concat(sleep_parts), hx.STEPS_TYPE: Records.concat(step_parts),
               hx.HR_TYPE: hr, "HKQuantityTypeIdentifierDistanceWalkingRunning": Records.concat(dist_parts)}
    records.update(_filler(rng, origin, n_min, worn, asleep_true, filler))
    duplicates = {}
    for rtype, frac in ((hx.SLEEP_TYPE, 0.03), (hx.STEPS_TYPE, 0.02), (hx.HR_TYPE, 0.01)):
        n = len(records[rtype])
        duplicates[rtype] = np.sort(rng.choice(n, size=int(n * frac), replace=False)) if n else np.zeros(0, int)
    return PersonData(p, records, duplicates, nights, steps_truth, origin)


def _watch_sleep(rng, onset: int, wake: int, new_era: bool) -> tuple:
    """Stage records from onset to wake; before iOS 16 only Asleep segments (gaps at awakenings)."""
    src, st, en, val = [], [], [], []
    t = onset
    cycle = 0
    while t < wake - 300:
        cycle += 1
        plan = [(3, rng.uniform(35, 50)), (4, rng.uniform(10, 30) if cycle < 3 else rng.uniform(0, 8)),
                (3, rng.uniform(10, 20)), (5, rng.uniform(10, 20) if cycle < 3 else rng.uniform(20, 35))]
        if rng.random() < 0.5:
            plan.append((2, rng.uniform(2, 6) if rng.random() < 0.8 else rng.uniform(12, 25)))
        for code, minutes in plan:
            if minutes < 1 or t >= wake:
                continue
            e = min(int(t + minutes * 60), wake)
            if e - t >= 30:
                src.append(WATCH), st.append(t), en.append(e), val.append(code)
            t = e
    if not new_era:   # watchOS 8: one "Asleep" per uninterrupted stretch, awake stretches left out
        merged: list[list[int]] = []
        for s, e, v in zip(st, en, val):
            if v == 2:
                continue
            if merged and merged[-1][1] == s:
                merged[-1][1] = e
            else:
                merged.append([s, e])
        return [WATCH] * len(merged), [m[0] for m in merged], [m[1] for m in merged], [1] * len(merged)
    return src, st, en, val


def _chunks(rng, m0: int, m1: int, lo: int, hi: int):
    a = m0
    while a < m1:
        b = min(m1, a + int(rng.integers(lo, hi + 1)))
        yield a, b
        a = b


def _steps(rng, p: PersonProfile, nights, origin: int, n_min: int, mult, worn, span):
    truth = np.zeros(n_min, np.float64)
    bouts = []
    for d, night in enumerate(nights):
        day_start = (nights[d - 1]["wake_utc"] - origin) // 60 + 5 if d else (night["bed_utc"] - origin) // 60 - 900
        day_end = (night["bed_utc"] - origin) // 60 - 10
        if day_end - day_start < 120:
            continue
        for _ in range(int(rng.poisson(7 * mult[d]))):
            n = int(rng.integers(3, 25))
            a = int(rng.integers(day_start, day_end - n))
            truth[a:a + n] = np.maximum(truth[a:a + n], np.round(rng.normal(105, 10) * mult[d] ** 0.3))
            bouts.append((a, a + n))
        for _ in range(int(rng.poisson(25 * mult[d]))):
            n = int(rng.integers(1, 4))
            a = int(rng.integers(day_start, day_end - n))
            truth[a:a + n] = np.maximum(truth[a:a + n], rng.integers(8, 40))
            bouts.append((a, a + n))
    step_parts, dist_parts = [], []
    truth[:span[0]] = 0.0
    truth[span[1]:] = 0.0
    bouts = [(a, b) for a, b in bouts if a >= span[0] and b <= span[1]]
    for a, b in bouts:
        for src, p_carry, lo, hi in ((PHONE, 0.75, 2, 10), (WATCH, 0.95, 1, 5)):
            if rng.random() > p_carry or (src == WATCH and not worn[a:b].all()):
                continue
            for c0, c1 in _chunks(rng, a, b, lo, hi):
                count = float(np.round(truth[c0:c1].sum() * rng.uniform(0.97, 1.03)))
                if count <= 0:
                    continue
                s = origin + c0 * 60 + int(rng.integers(0, 15))
                e = origin + c1 * 60 - int(rng.integers(0, 15))
                step_parts.append(([src], [s], [max(e, s + 30)], [count]))
                if src == PHONE:
                    dist_parts.append(([PHONE], [s], [max(e, s + 30)], [round(count * 0.00072, 5)]))
    return truth, step_parts, dist_parts, bouts


def _heart_rate(rng, origin: int, n_min: int, worn, asleep, bouts) -> Records:
    t = origin + np.arange(0, n_min * 60, 300, dtype=np.int64) + rng.integers(-30, 30, size=n_min // 5)
    m = np.clip((t - origin) // 60, 0, n_min - 1)
    keep = worn[m]
    t, m = t[keep], m[keep]
    moving = np.zeros(n_min, bool)
    for a, b in bouts:
        moving[a:b] = True
    bpm = np.where(asleep[m], rng.normal(55, 3, len(m)), np.where(moving[m], rng.normal(102, 8, len(m)),
                                                                rng.normal(71, 6, len(m))))
    return Records(np.zeros(len(t), np.int8), t, t.copy(), np.round(bpm))


def _filler(rng, origin: int, n_min: int, worn, asleep, filler: float) -> dict[str, Records]:
    """Record types the importer skips, at roughly real densities (times ``filler``)."""
    out = {}
    if filler <= 0:
        return out
    for rtype, every_min, src, lo, hi in (("HKQuantityTypeIdentifierActiveEnergyBurned", 2.0, WATCH, 0.05, 3.0),
                                          ("HKQuantityTypeIdentifierBasalEnergyBurned", 20.0, WATCH, 10.0, 25.0)):
        step = max(int(every_min / filler), 1)
        m = np.arange(0, n_min - 2, step)
        m = m[worn[m] & (~asleep[m] if rtype.endswith("ActiveEnergyBurned") else True)]
        s = origin + m * 60 + rng.integers(0, 20, len(m))
        e = s + int(every_min * 60) - 5
        out[rtype] = Records(np.full(len(m), src, np.int8), s, e, np.round(rng.uniform(lo, hi, len(m)), 3))
    hours = np.arange(0, n_min - 60, 60)
    hours = hours[~asleep[hours] & worn[hours]]
    s = origin + hours * 60
    out["HKCategoryTypeIdentifierAppleStandHour"] = Records(np.zeros(len(s), np.int8), s, s + 3600,
                                                            np.zeros(len(s)))
    return out
