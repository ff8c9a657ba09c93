"""mood_personal drift thresholds from measurements: PSI of unshifted and shifted generated days.

    python bench/bench_mood_personal_drift.py [--references 3] [--batches 8] [--rows 200 60]

A mood_personal batch is one row per person-day, and a day's rows come from a handful of persons
(the demo pool: 10). The features that are a person's trailing means and spreads (``*_MN``,
``*_SD``) cluster by person, so a day's batch sits away from the training quantiles even when
nothing changed; the within-person z-scores (``*_Zscore``) do not. This measures, with the family's
own generator and code (``demo_training_data`` -> ``prepare`` -> ``reference_frame``, and
``pooled.demo_rows(rows, seed, shifted)`` for the days):

- for several training cohorts (the reference: the training split, different persons per seed) and
  several generated days each, unshifted and shifted (circadian phase and long sleep moved by one
  standard deviation), PSI per feature with the spec's method and bins (and 5 bins beside);
- per day the largest PSI and how many features reach each candidate threshold / critical, over all
  36 features, the 12 z-scores and the spec's watched features, so the spec's ``drift`` can be set
  where unshifted days stay quiet and shifted days alarm;
- what the spec's own settings make of every day (``spec_outcome``): alerts, days the retraining rule
  counts as drifted, days too small to judge.
Figures, not pass/fail: written to bench/results/mood_personal_drift.json and printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

CANDIDATES = (0.2, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--references", type=int, default=3, help="training cohorts (seeds) to compare against")
    ap.add_argument("--batches", type=int, default=8, help="generated days per kind and reference")
    ap.add_argument("--rows", type=int, nargs="+", default=[200, 60], help="person-days per daily batch")
    ap.add_argument("--size", type=int, default=300, help="demo_training_data size (300: 10 persons, as make demo)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "mood_personal_drift.json"))
    ap.add_argument("--raw", default="", help="also write every day's PSI per feature here (JSON)")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="bench-mp-drift-")
    os.environ["BIOTUNE_HOME"] = tmp
    import numpy as np

    from biotune import drift
    from biotune.mood.personal import pooled
    from biotune.mood_personal.family import MoodPersonalFamily
    from biotune.specs import load_spec

    spec = load_spec(ROOT / "models" / "mood_personal-depressive-xgb.yaml")
    fam = MoodPersonalFamily()
    t0 = time.perf_counter()
    per_bins: dict[int, list[dict]] = {b: [] for b in sorted({spec.drift.bins, 5})}
    for r in range(args.references):
        params = fam.demo_training_data(str(Path(tmp) / f"landing{r}"), args.size, seed=r)
        dataset = fam.prepare(params, str(Path(tmp) / f"run{r}"), f"bench{r}")
        ref = fam.reference_features(fam.reference_frame(spec, dataset))
        for rows in args.rows:
            for i in range(args.batches):
                for shifted in (False, True):
                    day = pooled.demo_rows(rows, seed=1000 * r + i, shifted=shifted)[list(ref.columns)]
                    for bins in per_bins:
                        psi = drift.psi(ref, day, method=spec.drift.method, bins=bins)
                        per_bins[bins].append({"reference": r, "rows": rows, "seed": 1000 * r + i,
                                               "shifted": shifted, "psi": {k: round(float(v), 4)
                                                                          for k, v in psi.items()}})

    def summary(entries, features=None):
        out = {}
        for rows in args.rows:
            for shifted in (False, True):
                sel = [e for e in entries if e["rows"] == rows and e["shifted"] == shifted]
                vals = [np.array([v for k, v in e["psi"].items() if features is None or k in features]) for e in sel]
                key = f"rows_{rows}_{'shifted' if shifted else 'unshifted'}"
                out[key] = {
                    "days": len(sel),
                    "max_psi_range": [round(float(min(np.nanmax(v) for v in vals)), 3),
                                      round(float(max(np.nanmax(v) for v in vals)), 3)],
                    # per candidate: the fewest and the most features at or above it on one day
                    "features_at": {str(c): [int(min((v >= c).sum() for v in vals)), int(max((v >= c).sum() for v in vals))]
                                    for c in CANDIDATES},
                }
        return out

    def by_feature(entries, rows):
        feats = sorted(entries[0]["psi"])
        out = {}
        for f in feats:
            calm = [e["psi"][f] for e in entries if e["rows"] == rows and not e["shifted"]]
            moved = [e["psi"][f] for e in entries if e["rows"] == rows and e["shifted"]]
            out[f] = {"unshifted_max": round(float(np.nanmax(calm)), 3), "shifted_min": round(float(np.nanmin(moved)), 3)}
        return out

    def spec_outcome(entries):
        """What the spec's own settings make of each day: an alert (a watched feature at or above
        ``critical``), a day the retraining rule counts as drifted (``min_drifted_features`` at or above
        ``threshold``), or too small to judge (``min_rows``)."""
        d, k = spec.drift, spec.retraining.min_drifted_features
        watched = list(d.features) if d.features else None
        out = {}
        for rows in args.rows:
            for shifted in (False, True):
                sel = [e for e in entries if e["rows"] == rows and e["shifted"] == shifted]
                small = rows < d.min_rows
                vals = [np.array([v for f, v in e["psi"].items() if watched is None or f in watched]) for e in sel]
                out[f"rows_{rows}_{'shifted' if shifted else 'unshifted'}"] = {
                    "days": len(sel), "too_small": small,
                    "alert_days": 0 if small else int(sum(np.nanmax(v) >= d.critical for v in vals)),
                    "drifted_days": 0 if small else int(sum((v >= d.threshold).sum() >= k for v in vals)),
                    "max_psi_range": [round(float(min(np.nanmax(v) for v in vals)), 3),
                                      round(float(max(np.nanmax(v) for v in vals)), 3)]}
        return out

    watched = set(spec.drift.features) if spec.drift.features else None
    result = {
        "benchmark": "mood_personal_drift_thresholds",
        "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                    "load_avg_1m": round(os.getloadavg()[0], 2)},
        "data": {"references": args.references, "training_size": args.size, "days_per_kind": args.batches,
                 "rows_per_day": args.rows, "demo_pool": "pooled.demo_rows: 10 generated persons x 90 days (seed 99)"},
        "spec_drift": spec.drift.model_dump(), "spec_min_drifted_features": spec.retraining.min_drifted_features,
        "psi": {f"bins_{b}": summary(e) for b, e in per_bins.items()},
        "psi_zscore_features_only": {f"bins_{b}": summary(e, {k for k in e[0]["psi"] if k.endswith("_Zscore")})
                                     for b, e in per_bins.items()},
        "psi_spec_features": summary(per_bins[spec.drift.bins], watched),
        "spec_outcome": spec_outcome(per_bins[spec.drift.bins]),
        "per_feature": {f"bins_{b}_rows_{rows}": by_feature(e, rows) for b, e in per_bins.items() for rows in args.rows},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if args.raw:
        Path(args.raw).write_text(json.dumps({f"bins_{b}": e for b, e in per_bins.items()}))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for b, fig in result["psi"].items():
        for key, f in fig.items():
            at = " ".join(f">={c}: {lo}-{hi}" for c, (lo, hi) in f["features_at"].items())
            print(f"{b} {key:22}: max PSI {f['max_psi_range'][0]:.2f}..{f['max_psi_range'][1]:.2f}; features {at}")
    d = spec.drift
    print(f"spec: {len(d.features) if d.features else 'all'} features, {d.bins} bins, threshold {d.threshold}, "
          f"critical {d.critical}, min_rows {d.min_rows}, min_drifted_features {spec.retraining.min_drifted_features}")
    for key, f in result["spec_outcome"].items():
        print(f"  {key:22}: " + ("too small to judge" if f["too_small"] else
              f"alerts on {f['alert_days']}/{f['days']} days, retraining rule counts {f['drifted_days']}/{f['days']} "
              f"as drifted; max PSI {f['max_psi_range'][0]:.2f}..{f['max_psi_range'][1]:.2f}"))
    print(f"written to {args.out} ({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
