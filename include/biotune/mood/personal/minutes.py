"""Records -> one person's minute series on local clock time, and mood_ml sleep episodes.

Per UTC minute (one 28-day bucket at a time, see health.py):

- asleep: the *union* of every source's asleep intervals (Asleep, AsleepUnspecified, Core,
  Deep, REM) covers >= 30 s of the minute. Overlapping Watch / iPhone / app records therefore
  count once; InBed and Awake are never sleep.
- steps: each record's count spread over its interval in proportion to overlap, summed per
  source, then the *maximum* over sources (phone and Watch count the same steps: adding them
  would double count).
- heart rate: mean of the samples that fall in the minute.
- byte-identical duplicate records (same attributes) are dropped first.
- state (the PAXPREDM codes the population models use): 2 asleep; 1 awake with data around
  (a heart-rate sample, steps or a sleep record within 15 min); 3 no data (non-wear);
  4 in bed with no asleep record from any source that night (sleep unknown); 0 no minute
  (the local clock skipped it, e.g. the spring-forward hour).
- local clock: UTC minute + the offset of the latest record that started at or before it;
  each record's own offset is honoured, so travel and DST move the clock. When the clock goes
  back (autumn DST, flying west) the later minute replaces the earlier one at the same local
  time, except that an asleep minute is kept over an awake one (the night before a westward
  flight survives); repeated and skipped minutes are counted in the report.

Sleep episodes (mood_ml input): runs of minutes inside a sleep record or asleep;
sleep_start/sleep_end on the local clock ('YYYY-MM-DD HH:MM'), time_in_bed = run length,
minutes_sleep = asleep minutes in it, minutes_awake = the rest.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from biotune.errors import InputFormatError
from biotune.mood.personal import healthxml as hx
from biotune.mood.personal.health import BUCKET_SECONDS, KIND_HR, KIND_SLEEP, KIND_STEPS, ParseStats, Spill

PAD_SECONDS = 3600
EVIDENCE_MINUTES = 15
EPISODE_COLUMNS = ["sleep_start", "sleep_end", "time_in_bed", "minutes_sleep", "minutes_awake"]
STATE_NONE, STATE_WAKE, STATE_SLEEP, STATE_NONWEAR, STATE_UNKNOWN = 0, 1, 2, 3, 4
WEEK = 7 * 1440


@dataclass
class MinuteSeries:
    """A person's minutes from local midnight of ``start_date``; arrays of equal length."""

    start_date: dt.date
    activity: np.ndarray          # float32 steps/min; NaN where no data
    state: np.ndarray             # int8 PAXPREDM-like codes (see module doc)
    steps: np.ndarray             # float32 steps/min (0 where none recorded)
    heart_rate: np.ndarray        # float32 bpm, NaN where none
    offset_min: np.ndarray        # int16 UTC offset in effect
    in_sleep_record: np.ndarray   # bool
    source: str = "apple_health"
    meta: dict = field(default_factory=dict)

    @property
    def days(self) -> int:
        return len(self.state) // 1440

    def date_of(self, day: int) -> dt.date:
        return self.start_date + dt.timedelta(days=int(day))

    def to_frame(self):
        import pandas as pd

        t0 = np.datetime64(self.start_date.isoformat(), "m")
        return pd.DataFrame({
            "time": t0 + np.arange(len(self.state)).astype("timedelta64[m]"),
            "activity": self.activity, "state": self.state, "steps": self.steps, "heart_rate": self.heart_rate,
            "utc_offset_min": self.offset_min, "in_sleep_record": self.in_sleep_record})

    @classmethod
    def from_frame(cls, frame, source: str = "apple_health", where: str = "minutes") -> "MinuteSeries":
        need = ["time", "activity", "state", "steps", "heart_rate", "utc_offset_min", "in_sleep_record"]
        missing = [c for c in need if c not in frame.columns]
        if missing:
            raise InputFormatError(f"minute table lacks columns {missing}", where=where,
                                   fix="re-run biotune mood import-health")
        t = frame["time"].to_numpy("datetime64[m]")
        if len(t) % 1440 or (len(t) and (t[0] - t[0].astype("datetime64[D]")) != np.timedelta64(0, "m")):
            raise InputFormatError("minute table is not whole local days from midnight", where=where,
                                   fix="re-run biotune mood import-health")
        start = t[0].astype("datetime64[D]").item() if len(t) else dt.date(1970, 1, 1)
        return cls(start, frame["activity"].to_numpy(np.float32), frame["state"].to_numpy(np.int8),
                   frame["steps"].to_numpy(np.float32), frame["heart_rate"].to_numpy(np.float32),
                   frame["utc_offset_min"].to_numpy(np.int16), frame["in_sleep_record"].to_numpy(bool), source)

    ARRAYS = ("activity", "state", "steps", "heart_rate", "offset_min", "in_sleep_record")

    def to_npz(self) -> bytes:
        import io

        buf = io.BytesIO()
        np.savez_compressed(buf, start=np.datetime64(self.start_date.isoformat(), "D"), source=np.array(self.source),
                            **{k: getattr(self, k) for k in self.ARRAYS})
        return buf.getvalue()

    @classmethod
    def from_npz(cls, data: bytes, where: str = "minutes") -> "MinuteSeries":
        import io

        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                arrays = {k: z[k] for k in cls.ARRAYS}
                start, source = z["start"].astype("datetime64[D]").item(), str(z["source"])
        except (KeyError, ValueError, OSError) as exc:
            raise InputFormatError(f"not a biotune minute series ({exc})", where=where,
                                   fix="re-run biotune mood import-health") from exc
        return cls(start, source=source, **arrays)

    def week(self, last_day: int) -> tuple[np.ndarray, np.ndarray]:
        """The cohort layout for the 7 local days ending with ``last_day`` (index): activity [10080]
        (NaN missing) and state [10080] (0 outside the record), column 0 = midnight."""
        a = np.full(WEEK, np.nan, np.float32)
        s = np.zeros(WEEK, np.int8)
        lo = (last_day - 6) * 1440
        src_lo, src_hi = max(lo, 0), min(lo + WEEK, len(self.state))
        if src_hi > src_lo:
            a[src_lo - lo:src_hi - lo] = self.activity[src_lo:src_hi]
            s[src_lo - lo:src_hi - lo] = self.state[src_lo:src_hi]
        return a, s

    def sleep_binary(self) -> np.ndarray:
        """1 asleep, 0 awake, NaN missing: the input of features.daily_sleep_indexes."""
        out = np.full(len(self.state), np.nan)
        out[self.state == STATE_WAKE] = 0.0
        out[self.state == STATE_SLEEP] = 1.0
        return out


# ----------------------------------------------------------------------------- interval helpers
def union_coverage(starts: np.ndarray, ends: np.ndarray, g0: int, n_min: int) -> np.ndarray:
    """Seconds of each minute of [g0, g0 + 60 n) covered by the union of [start, end) intervals."""
    if not len(starts):
        return np.zeros(n_min)
    order = np.argsort(starts, kind="stable")
    s, e = starts[order].astype(np.int64), ends[order].astype(np.int64)
    emax = np.maximum.accumulate(e)
    new = np.ones(len(s), bool)
    new[1:] = s[1:] > emax[:-1]
    first = np.flatnonzero(new)
    ms = s[first]
    me = emax[np.r_[first[1:] - 1, len(s) - 1]]
    t = g0 + 60 * np.arange(n_min + 1, dtype=np.int64)
    full = np.concatenate([[0], np.cumsum(me - ms)])
    j = np.searchsorted(me, t, side="right")          # merged intervals entirely before t
    jj = np.minimum(j, len(ms) - 1)
    partial = np.where(j < len(ms), np.clip(t - ms[jj], 0, me[jj] - ms[jj]), 0)
    return np.diff(full[j] + partial).astype(np.float64)


def spread_counts(starts: np.ndarray, ends: np.ndarray, counts: np.ndarray, g0: int, n_min: int) -> np.ndarray:
    """Per-minute sum of counts spread uniformly over each record's interval (clipped to the grid)."""
    out = np.zeros(n_min + 1)
    if not len(starts):
        return out[:n_min]
    s, e, c = starts.astype(np.int64), ends.astype(np.int64), counts.astype(np.float64)
    g1 = g0 + 60 * n_min
    point = e <= s
    pm = (s[point] - g0) // 60
    ok = (pm >= 0) & (pm < n_min)
    np.add.at(out, pm[ok], c[point][ok])
    s, e, c = s[~point], e[~point], c[~point]
    rate = c / (e - s)
    s, e = np.maximum(s, g0), np.minimum(e, g1)
    keep = e > s
    s, e, rate = s[keep], e[keep], rate[keep]
    m0, m1 = (s - g0) // 60, (e - 1 - g0) // 60
    same = m0 == m1
    np.add.at(out, m0[same], rate[same] * (e[same] - s[same]))
    d = ~same
    np.add.at(out, m0[d], rate[d] * (g0 + 60 * (m0[d] + 1) - s[d]))
    np.add.at(out, m1[d], rate[d] * (e[d] - (g0 + 60 * m1[d])))
    diff = np.zeros(n_min + 1)
    np.add.at(diff, m0[d] + 1, rate[d] * 60)
    np.add.at(diff, m1[d], -rate[d] * 60)
    res = (out + np.cumsum(diff))[:n_min]
    res[np.abs(res) < 1e-6] = 0.0          # the running sum leaves ~1e-12 where a record ended
    return res


def _dedup(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows without byte-identical repeats (line numbers aside); also the mask of dropped rows."""
    if len(rows) < 2:
        return rows, np.zeros(len(rows), bool)
    order = np.lexsort((rows["value"], rows["off"], rows["src"], rows["kind"], rows["end"], rows["start"], rows["h"]))
    r = rows[order]
    same = np.zeros(len(r), bool)
    same[1:] = ((r["h"][1:] == r["h"][:-1]) & (r["start"][1:] == r["start"][:-1]) & (r["end"][1:] == r["end"][:-1])
                & (r["kind"][1:] == r["kind"][:-1]) & (r["src"][1:] == r["src"][:-1])
                & (r["value"][1:] == r["value"][:-1]) & (r["off"][1:] == r["off"][:-1]))
    dropped = np.zeros(len(rows), bool)
    dropped[order[same]] = True
    return rows[~dropped], dropped


# ----------------------------------------------------------------------------- the series
def build_series(stats: ParseStats, spill: Spill) -> tuple[MinuteSeries, dict, object]:
    """Assemble the local-clock minute series bucket by bucket (bounded memory)."""
    if stats.local_min is None:
        raise InputFormatError("the export holds no sleep, step or heart-rate records", where=stats.where,
                               fix="check that the Health app has data from an Apple Watch, iPhone or sleep app, "
                                   "and export again")
    origin = (stats.local_min // 86400) * 86400                       # local midnight, seconds "as UTC"
    end = -(-stats.local_max // 86400) * 86400
    T = int((end - origin) // 60)
    state = np.zeros(T, np.int8)
    steps = np.zeros(T, np.float32)
    hr = np.full(T, np.nan, np.float32)
    offs = np.zeros(T, np.int16)
    in_rec = np.zeros(T, bool)
    written = np.zeros(T, bool)
    report: dict = {"local_minutes_repeated": 0}
    last_off = None
    buckets = stats.buckets
    # through the bucket of the latest end: a record may run past the last bucket holding a start
    for k in range(buckets[0], max(buckets[-1], (stats.utc_max - 1) // BUCKET_SECONDS) + 1):
        rows = np.concatenate([spill.load(k - 1), spill.load(k), spill.load(k + 1)])
        g0, g1 = k * BUCKET_SECONDS - PAD_SECONDS, (k + 1) * BUCKET_SECONDS + PAD_SECONDS
        rows = rows[(rows["end"] > g0) & (rows["start"] < g1) | ((rows["start"] == rows["end"]) & (rows["start"] >= g0)
                                                                  & (rows["start"] < g1))]
        if not len(rows):
            continue
        rows, _ = _dedup(rows)
        n_min = (g1 - g0) // 60
        kind = rows["kind"]
        sl = rows[kind == KIND_SLEEP]
        asleep_rows = sl[np.isin(sl["value"], hx.ASLEEP_CODES)]
        asleep = union_coverage(asleep_rows["start"], asleep_rows["end"], g0, n_min) >= 30
        any_sleep = union_coverage(sl["start"], sl["end"], g0, n_min) >= 30
        st = rows[kind == KIND_STEPS]
        step_min = np.zeros(n_min)
        step_any = union_coverage(st["start"], st["end"], g0, n_min) > 0
        for src in np.unique(st["src"]).tolist():
            part = st[st["src"] == src]
            step_min = np.maximum(step_min, spread_counts(part["start"], part["end"], part["value"], g0, n_min))
        h = rows[kind == KIND_HR]
        hm = (h["start"] - g0) // 60
        ok = (hm >= 0) & (hm < n_min)
        hr_sum = np.bincount(hm[ok], weights=h["value"][ok], minlength=n_min)
        hr_cnt = np.bincount(hm[ok], minlength=n_min)
        evidence = (hr_cnt > 0) | step_any | any_sleep
        win = 2 * EVIDENCE_MINUTES + 1
        evidence = np.convolve(evidence.astype(np.int32), np.ones(win, np.int32), "same") > 0
        # offset in effect at each minute: the latest record that started at or before it
        order = np.argsort(rows["start"], kind="stable")
        r_start, r_off = rows["start"][order], rows["off"][order]
        t_mid = g0 + 60 * np.arange(n_min) + 30
        idx = np.searchsorted(r_start, t_mid, side="right") - 1
        fallback = last_off if last_off is not None else int(r_off[0])
        off = np.where(idx >= 0, r_off[np.maximum(idx, 0)], fallback).astype(np.int64)
        # keep the core minutes of this bucket
        c0 = PAD_SECONDS // 60
        c1 = n_min - PAD_SECONDS // 60
        core = slice(c0, c1)
        utc_min = g0 + 60 * np.arange(c0, c1, dtype=np.int64)
        li = (utc_min + off[core] * 60 - origin) // 60
        inside = (li >= 0) & (li < T)
        li = li[inside]
        s_code = np.where(asleep[core], 2, np.where(evidence[core], 1, 3)).astype(np.int8)[inside]
        report["local_minutes_repeated"] += int(written[li].sum()) + (len(li) - len(np.unique(li)))
        # a repeated local minute keeps the later one, except that sleep is never overwritten by
        # wake (flying west over the date line would otherwise erase the night before the flight)
        keep = ~(written[li] & (state[li] == STATE_SLEEP) & (s_code != STATE_SLEEP))
        lk = li[keep]
        state[lk] = s_code[keep]
        steps[lk] = step_min[core][inside][keep].astype(np.float32)
        with np.errstate(invalid="ignore", divide="ignore"):
            hr_min = np.where(hr_cnt[core] > 0, hr_sum[core] / np.maximum(hr_cnt[core], 1), np.nan)[inside]
        hr[lk] = hr_min[keep]
        offs[lk] = off[core][inside][keep]
        in_rec[li] |= any_sleep[core][inside]
        state[li[s_code == STATE_SLEEP]] = STATE_SLEEP
        written[li] = True
        last_off = int(off[c1 - 1])
    # duplicates counted once over the file: identical records share a start, hence a bucket
    report["duplicates_dropped"] = _count_duplicates(spill, buckets)
    first, last = (np.flatnonzero(written)[[0, -1]] if written.any() else (0, -1))
    report["local_minutes_skipped"] = int((~written[first:last + 1]).sum())
    del written
    activity = steps.copy()                     # in place: no float64 temporaries the size of the span
    activity[(state != STATE_WAKE) & (state != STATE_SLEEP)] = np.nan
    series = MinuteSeries(start_date=dt.date(1970, 1, 1) + dt.timedelta(days=int(origin // 86400)),
                          activity=activity, state=state, steps=steps, heart_rate=hr, offset_min=offs,
                          in_sleep_record=in_rec)
    episodes = sleep_episodes(series)          # also marks in-bed-without-sleep runs as unknown
    series.activity[series.state == STATE_UNKNOWN] = np.nan
    report["sleep_episodes"] = len(episodes)
    report["days"] = series.days
    report["start_date"] = series.start_date.isoformat()
    return series, report, episodes


def _count_duplicates(spill: Spill, buckets: list[int]) -> dict[str, int]:
    out = {"sleep": 0, "steps": 0, "heart_rate": 0}
    for k in buckets:
        rows = spill.load(k)
        _, dropped = _dedup(rows)
        for name, kval in (("sleep", KIND_SLEEP), ("steps", KIND_STEPS), ("heart_rate", KIND_HR)):
            out[name] += int((dropped & (rows["kind"] == kval)).sum())
    return out


def _runs(flag: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.zeros(len(flag) + 2, np.int8)       # int8 throughout: these arrays are as long as the record
    f[1:-1] = flag
    d = np.diff(f)
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def _fmt_minutes(start_date: dt.date, idx: np.ndarray) -> list[str]:
    t = np.datetime64(start_date.isoformat(), "m") + idx.astype("timedelta64[m]")
    return [s.replace("T", " ") for s in np.datetime_as_string(t, unit="m").tolist()]


def sleep_episodes(series: MinuteSeries):
    """mood_ml episodes from the series; in-bed runs with no asleep minute become state 4."""
    import pandas as pd

    a, b = _runs(series.in_sleep_record | (series.state == STATE_SLEEP))
    if not len(a):
        return pd.DataFrame(columns=EPISODE_COLUMNS)
    asleep_cum = np.zeros(len(series.state) + 1, np.int32)
    np.cumsum(series.state == STATE_SLEEP, dtype=np.int32, out=asleep_cum[1:])
    asleep = asleep_cum[b] - asleep_cum[a]
    for lo, hi in zip(a[asleep == 0].tolist(), b[asleep == 0].tolist()):
        series.state[lo:hi] = STATE_UNKNOWN
    keep = asleep > 0
    a, b, asleep = a[keep], b[keep], asleep[keep]
    tib = b - a
    return pd.DataFrame({"sleep_start": _fmt_minutes(series.start_date, a), "sleep_end": _fmt_minutes(series.start_date, b),
                         "time_in_bed": tib.astype(np.int64), "minutes_sleep": asleep.astype(np.int64),
                         "minutes_awake": (tib - asleep).astype(np.int64)})
