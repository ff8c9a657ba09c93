"""Benchmark: the 36 mood_ml features for a cohort of 7,000 participants x 10,080 minutes.

Random but realistic sleep: each person has a habitual bedtime (~23:15 +- 1 h) and
sleep need (~7.5 +- 1 h), nightly jitter, brief and longer awakenings inside the
night, afternoon naps on some days, non-wear gaps (NaN) on some days and ~1% of
participants with no usable data at all.

Run:  cd /work/main && PYTHONPATH=include .venv/bin/python bench/bench_features.py [--n 7000]
Writes bench/results/features.json and prints the figures. A benchmark gives
figures, not a pass/fail verdict.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

DAY = 1440


def _intervals(n: int, T: int, rows: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Coverage count [n, T] (int16) of intervals [start, start+length) clipped to the record."""
    start = np.clip(start.astype(np.int64), 0, T)
    end = np.clip(start + length.astype(np.int64), 0, T)
    diff = np.zeros((n, T + 1), dtype=np.int16)
    np.add.at(diff, (rows, start), 1)
    np.add.at(diff, (rows, end), -1)
    return np.cumsum(diff[:, :T], axis=1, dtype=np.int16)


def synthetic_sleep(n: int, days: int = 7, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    T = days * DAY
    bed = rng.normal(23.25 * 60, 60, n)                 # habitual bedtime, minutes after midnight
    need = np.clip(rng.normal(7.5 * 60, 60, n), 240, 660)
    nights = days + 1                                   # the night before the record too
    r = np.repeat(np.arange(n), nights)
    d = np.tile(np.arange(nights) - 1, n)
    on = d * DAY + np.repeat(bed, nights) + rng.normal(0, 40, n * nights)
    dur = np.repeat(need, nights) + rng.normal(0, 50, n * nights)
    asleep = _intervals(n, T, r, on, dur) > 0
    # awakenings inside the night: ~4 per night, 1-40 min
    k = rng.poisson(4, n * nights)
    ra = np.repeat(r, k)
    sa = np.repeat(on, k) + rng.random(k.sum()) * np.repeat(dur, k)
    la = rng.choice([1, 2, 3, 5, 8, 15, 25, 40], size=k.sum(), p=[.25, .2, .15, .15, .1, .07, .05, .03])
    asleep &= _intervals(n, T, ra, sa, la) == 0
    # naps: 20% of days, 13:00-17:00, 20-120 min
    has = rng.random(n * nights) < 0.2
    asleep |= _intervals(n, T, r[has], (d[has] * DAY + rng.uniform(13 * 60, 17 * 60, has.sum())),
                         rng.uniform(20, 120, has.sum())) > 0
    out = asleep.astype(np.float32)
    del asleep
    # non-wear: 15% of days lose 30-240 min
    has = rng.random(n * nights) < 0.15
    nonwear = _intervals(n, T, r[has], d[has] * DAY + rng.uniform(0, DAY, has.sum()),
                         rng.uniform(30, 240, has.sum())) > 0
    out[nonwear] = np.nan
    # 1% of participants never wore the device
    out[rng.random(n) < 0.01] = np.nan
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=7000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--chunk-size", type=int, default=1000)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "features.json"))
    args = ap.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "include"))
    from biotune.mood import features as F

    t0 = time.perf_counter()
    sleep = synthetic_sleep(args.n, args.days)
    t_gen = time.perf_counter() - t0

    # time the stages separately, then end to end
    t0 = time.perf_counter()
    daily = F.daily_sleep_indexes(sleep, chunk_size=args.chunk_size, burn_in_repeats=0)
    t_no_burn = time.perf_counter() - t0
    t0 = time.perf_counter()
    df = F.mood_ml_features(sleep, chunk_size=args.chunk_size)
    t_total = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    nan_rows = int(df.isna().all(axis=1).sum())
    ok = df.dropna(how="all")
    summary = {c: {"median": float(ok[c].median()), "p05": float(ok[c].quantile(.05)),
                   "p95": float(ok[c].quantile(.95))}
               for c in ["ST_long_MN", "WT_long_MN", "LongSleepWindow_number_MN", "ShortSleepWindow_number_MN",
                         "Sleep_percentage_MN", "Sleep_amplitude_MN", "Circadian_phase_MN",
                         "Circadian_phase_SD", "Circadian_amplitude_MN"]}
    result = {
        "benchmark": "mood_ml_features",
        "participants": args.n,
        "minutes": args.days * DAY,
        "chunk_size": args.chunk_size,
        "seconds_generate_input": round(t_gen, 2),
        "seconds_features_total": round(t_total, 2),
        "seconds_features_without_burn_in": round(t_no_burn, 2),
        "seconds_per_1000_participants": round(t_total / args.n * 1000, 3),
        "target_seconds": 60,
        "peak_rss_mb": round(peak_mb),
        "all_nan_rows": nan_rows,
        "n_days_used": int(next(iter(daily.values())).shape[1]),
        "feature_summary": summary,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "numpy": np.__version__, "platform": platform.platform()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, out)

    print(f"participants {args.n} x {args.days * DAY} minutes ({result['n_days_used']} noon-to-noon days used)")
    print(f"input generation      {t_gen:7.2f} s")
    print(f"features, end to end  {t_total:7.2f} s  (target < 60 s; {result['seconds_per_1000_participants']} s per 1000)")
    print(f"  without burn-in     {t_no_burn:7.2f} s")
    print(f"peak RSS              {peak_mb:7.0f} MB")
    print(f"all-NaN rows          {nan_rows}")
    for c, v in summary.items():
        print(f"  {c:28s} median {v['median']:8.3f}  p05 {v['p05']:8.3f}  p95 {v['p95']:8.3f}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
