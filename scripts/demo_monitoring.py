"""The monitoring part of `make demo`: land a few days of mood batches (the last ones shifted), run
batch_scoring and drift_monitoring over them through Airflow (`airflow dags test` per date, what a
backfill runs for each day), evaluate the retraining rule as of each date and print what happened.

    python scripts/demo_monitoring.py [--days 6] [--shift-day 3] [--persons 200] [--end YYYY-MM-DD]

Needs champions (run mood_population_finetune first). Uses the environment the Makefile exports.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))


def run_dag(dag_id: str, date: str, conf: dict | None = None) -> bool:
    cmd = [sys.executable, str(ROOT / "scripts" / "run_dag.py"), dag_id, date, "--conf", json.dumps(conf or {})]
    return subprocess.run(cmd).returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=6, help="how many daily batches to land")
    parser.add_argument("--shift-day", type=int, default=3, help="1-based day from which batches are shifted")
    parser.add_argument("--persons", type=int, default=200, help="persons per daily batch")
    parser.add_argument("--end", default="", help="last date (YYYY-MM-DD; default yesterday)")
    parser.add_argument("--seed", type=int, default=21)
    args = parser.parse_args()

    from biotune import monitoring, registry, storage
    from biotune.synthetic.batches import date_range, write_mood_batches

    champions = monitoring.champions_by_family().get("mood", [])
    if not champions:
        print("no mood champion in the registry: run mood_population_finetune first (make demo does)",
              file=sys.stderr)
        return 1
    end = dt.date.fromisoformat(args.end) if args.end else dt.date.today() - dt.timedelta(days=1)
    dates = date_range(end - dt.timedelta(days=args.days - 1), args.days)
    shift_from = dates[min(max(args.shift_day, 1), len(dates)) - 1]
    print(f"landing {len(dates)} mood batches of {args.persons} persons, {dates[0]} .. {dates[-1]}, "
          f"shifted from {shift_from} (later, shorter, more irregular sleep; less activity)", flush=True)
    write_mood_batches(storage.lake_path("landing"), dates, persons_per_day=args.persons, seed=args.seed,
                       shift_from=shift_from)

    failed = []
    for day in dates:
        d = day.isoformat()
        for dag_id in ("batch_scoring", "drift_monitoring", "retraining_triggers"):
            conf = {"date": d} if dag_id == "retraining_triggers" else {}
            if not run_dag(dag_id, d, conf):
                failed.append(f"{dag_id} {d}")

    print("\nDrift history (one row per model and date):")
    print(f"{'model':28} {'date':10} {'status':7} {'max PSI':>8} {'drifted':>7} {'conf':>6} {'error':>6}  report")
    for row in monitoring.history(since=dates[0], until=dates[-1]):
        print(f"{row['model']:28} {row['date']:10} {row['status']:7} {_f(row['max_psi']):>8} "
              f"{row['drifted_features']:>7} {_f(row['mean_confidence']):>6} {_f(row['error_rate']):>6}  "
              f"{row['report_uri'] or ''}")
    print("\nRetraining decisions (latest per model and date):")
    latest: dict[tuple[str, str], dict] = {}
    for d in monitoring.decisions(until=dates[-1]):
        if d["date"] >= dates[0].isoformat():
            latest[(d["model"], d["date"])] = d
    for (model, date), d in sorted(latest.items()):
        print(f"{model} as of {date}: {'RETRAIN' if d['decision'] == 'yes' else 'no'}")
        for reason in d["reasons"]:
            print(f"    {reason}")
    if any(d["decision"] == "yes" for d in latest.values()):
        print("\nA yes queued a mood_population_finetune run with the reasons in its conf; `make up` starts the "
              "scheduler that runs it.")
    print(f"\nhistory database: {monitoring.engine().url.render_as_string(hide_password=True)}; "
          f"MLflow: {registry.configure().tracking_uri}")
    if failed:
        print(f"\nfailed runs: {', '.join(failed)} (see {Path(storage.lake_path()).parent / 'logs'})", file=sys.stderr)
        return 1
    return 0


def _f(value) -> str:
    return "-" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    sys.exit(main())
