"""Run DAGs through Airflow itself (`dag.test()`, what `airflow dags test` runs), show their progress,
fail when one fails.

    python scripts/run_dag.py DAG_ID [LOGICAL_DATE] [--conf JSON]
    python scripts/run_dag.py --runs '[["batch_scoring", "2026-10-01", {}], ...]'

Every run of one call happens in ONE Airflow process: the DAGs are parsed once and the libraries
(torch, MLflow, the champions) load once, instead of once per run (the monitoring part of
`make demo` runs 18 of them). Airflow logs every line of every task; this keeps the task
transitions and the biotune log lines (epochs, metrics, gate decisions) on screen and writes the
full log to $BIOTUNE_HOME/logs/.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

# biotune's own log lines (progress, metrics, gate decisions), failures, and the runs' ends
SHOW = re.compile(r"(\[biotune[\w.]*\]|\[error|ERROR|Traceback|Error:|DagRun Finished|marked as failed|failed with|"
                  r"^RUN )")
# under dag.test() a downstream task's lookup of a mapped task instance that returned nothing is logged
# at error level, though the run is fine
QUIET = re.compile(r"(DeprecationWarning|Calculating Metrics|warnings.warn|FutureWarning|XCom not found)")
STAMP = re.compile(r"^\S+Z \[\w+\s*\] ")
ROOT = Path(__file__).resolve().parents[1]


def child(runs: list) -> int:
    """Run each (dag_id, logical_date, conf) with dag.test() in this process; print one RUN line each."""
    import pendulum
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=os.environ.get("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags")))
    if bag.import_errors:
        print(f"RUN import errors: {bag.import_errors}", flush=True)
        return 1
    failed = 0
    for dag_id, date, conf in runs:
        start = time.time()
        kwargs = {"run_conf": conf or {}}
        if date:
            d = pendulum.parse(date)
            kwargs["logical_date"] = pendulum.datetime(d.year, d.month, d.day, tz="UTC")
        run = bag.get_dag(dag_id).test(**kwargs)
        state = str(run.state)
        failed += state != "success"
        print(f"RUN {dag_id} {date or ''}: {state} in {time.time() - start:.0f} s", flush=True)
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dag_id", nargs="?")
    parser.add_argument("logical_date", nargs="?")
    parser.add_argument("--conf", default="{}")
    parser.add_argument("--runs", default=None, help="JSON list of [dag_id, date, conf]")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--verbose", action="store_true", help="show every log line")
    args = parser.parse_args()
    runs = json.loads(args.runs) if args.runs else [[args.dag_id, args.logical_date, json.loads(args.conf)]]
    if not runs or not runs[0][0]:
        parser.error("name a DAG or pass --runs")
    if args.child:
        return child(runs)

    home = Path(os.environ.get("BIOTUNE_HOME", ".biotune"))
    log_dir = home / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    name = runs[0][0] if len(runs) == 1 else f"{len(runs)}-runs"
    log_path = log_dir / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.log"
    cmd = [sys.executable, __file__, "--child", "--runs", json.dumps(runs)]
    print(f"running {', '.join(sorted({r[0] for r in runs}))} through Airflow ({len(runs)} run(s); "
          f"full log: {log_path})", flush=True)
    start = time.time()
    with open(log_path, "w") as log, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                      text=True, bufsize=1) as proc:
        for line in proc.stdout:
            log.write(line)
            if args.verbose or (SHOW.search(line) and not QUIET.search(line)):
                print(STAMP.sub("", line.rstrip())[:300], flush=True)
        code = proc.wait()
    print(f"{'failed' if code else 'success'} in {time.time() - start:.0f} s", flush=True)
    if code:
        print(f"see {log_path} for the whole log", file=sys.stderr)
    return 1 if code else 0


if __name__ == "__main__":
    sys.exit(main())
