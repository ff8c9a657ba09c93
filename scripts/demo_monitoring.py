"""The monitoring part of `make demo`: land a few days of batches for every family with a champion (the
last ones shifted), run batch_scoring, drift_monitoring and retraining_triggers over them through
Airflow (one Airflow process; what a backfill runs for each day) and print what happened.

    python scripts/demo_monitoring.py [--days 6] [--shift-day 3] [--persons 200] [--end YYYY-MM-DD]

Needs champions (the fine-tune DAGs first: make demo runs them). Uses the environment the Makefile exports.
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


def run_dags(runs: list) -> bool:
    """All runs in one Airflow process (scripts/run_dag.py --runs)."""
    cmd = [sys.executable, str(ROOT / "scripts" / "run_dag.py"), "--runs", json.dumps(runs)]
    return subprocess.run(cmd).returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=6, help="how many daily batches to land")
    parser.add_argument("--shift-day", type=int, default=3, help="1-based day from which batches are shifted")
    parser.add_argument("--persons", type=int, default=0, help="rows per daily batch (default: each family's)")
    parser.add_argument("--end", default="", help="last date (YYYY-MM-DD; default yesterday)")
    parser.add_argument("--seed", type=int, default=21)
    args = parser.parse_args()

    from biotune import monitoring, registry, storage
    from biotune.errors import redact
    from biotune.family import get_family

    champions = monitoring.champions_by_family()
    if not champions:
        print("no champion in the registry: run the fine-tune DAGs first (make demo does)", file=sys.stderr)
        return 1
    end = dt.date.fromisoformat(args.end) if args.end else dt.date.today() - dt.timedelta(days=1)
    dates = [end - dt.timedelta(days=args.days - 1 - i) for i in range(args.days)]
    shift_from = dates[min(max(args.shift_day, 1), len(dates)) - 1]
    for family in sorted(champions):
        fam = get_family(family)
        rows = args.persons or fam.demo_batch_rows
        print(f"landing {len(dates)} {family} batches of {rows} rows, {dates[0]} .. {dates[-1]}, "
              f"shifted from {shift_from}", flush=True)
        for day in dates:
            fam.demo_batch(day, rows, seed=args.seed, shifted=day >= shift_from)

    runs = [[dag_id, day.isoformat(), {"date": day.isoformat()} if dag_id == "retraining_triggers" else {}]
            for day in dates for dag_id in ("batch_scoring", "drift_monitoring", "retraining_triggers")]
    failed = [] if run_dags(runs) else ["some monitoring runs (their RUN lines above say which)"]

    print("\nDrift history (one row per model and date):")
    print(f"{'model':28} {'date':10} {'status':7} {'max PSI':>8} {'drifted':>7} {'conf':>6} {'error':>6}  report")
    for row in monitoring.history(since=dates[0], until=dates[-1]):
        print(f"{row['model']:28} {row['date']:10} {row['status']:7} {_f(row['max_psi']):>8} "
              f"{row['drifted_features']:>7} {_f(row['mean_confidence']):>6} {_f(row['error_rate']):>6}  "
              f"{row['report_uri'] or ''}")
    from biotune.monitoring.store import decisions_by_day, shown_decision

    print("\nRetraining decisions (per model and date: the one that fired a retrain, else the latest):")
    latest = {key: shown_decision(ds) for key, ds in decisions_by_day(until=dates[-1]).items()
              if key[1] >= dates[0].isoformat()}
    for (model, date), d in sorted(latest.items()):
        print(f"{model} as of {date}: {'RETRAIN' if d['decision'] == 'yes' else 'no'}")
        for reason in d["reasons"]:
            print(f"    {reason}")
    if any(d["decision"] == "yes" for d in latest.values()):
        print("\nA yes queued a run of the family's fine-tune DAG with the reasons in its conf; `make up` starts "
              "the scheduler that runs it.")
    print(f"\nhistory database: {monitoring.engine().url.render_as_string(hide_password=True)}; "
          f"MLflow: {redact(registry.configure().tracking_uri)}")
    if failed:
        print(f"\nfailed runs: {', '.join(failed)} (see {Path(storage.lake_path()).parent / 'logs'})", file=sys.stderr)
        return 1
    return 0


def _f(value) -> str:
    return "-" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    sys.exit(main())
