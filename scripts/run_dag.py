"""Run one DAG through Airflow itself (`airflow dags test`), show its progress, fail when it fails.

`airflow dags test` logs every line of every task; this keeps the task transitions and the
biotune log lines (epochs, metrics, gate decisions) on screen, writes the full log to
$BIOTUNE_HOME/logs/, and exits non-zero unless the run ends in success.
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

# biotune's own log lines (progress, metrics, gate decisions), failures, and the run's end
SHOW = re.compile(r"(\[biotune[\w.]*\]|\[error|ERROR|Traceback|Error:|DagRun Finished|marked as failed|failed with)")
QUIET = re.compile(r"(DeprecationWarning|Calculating Metrics|warnings.warn|FutureWarning)")
STAMP = re.compile(r"^\S+Z \[\w+\s*\] ")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dag_id")
    parser.add_argument("logical_date", nargs="?")
    parser.add_argument("--conf", default="{}")
    parser.add_argument("--verbose", action="store_true", help="show every log line")
    args = parser.parse_args()
    json.loads(args.conf)  # fail early on bad JSON

    home = Path(os.environ.get("BIOTUNE_HOME", ".biotune"))
    log_dir = home / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{args.dag_id}-{time.strftime('%Y%m%dT%H%M%S')}.log"
    airflow = str(Path(sys.executable).with_name("airflow"))
    cmd = [airflow, "dags", "test", args.dag_id, *([args.logical_date] if args.logical_date else []), "-c", args.conf]
    print(f"running {args.dag_id} through `airflow dags test` (full log: {log_path})", flush=True)
    start = time.time()
    failed_line = None
    with open(log_path, "w") as log, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                      text=True, bufsize=1) as proc:
        for line in proc.stdout:
            log.write(line)
            if args.verbose or (SHOW.search(line) and not QUIET.search(line)):
                print(STAMP.sub("", line.rstrip())[:300], flush=True)
            if "state=failed" in line.replace(" ", "") or "DagRunState.FAILED" in line:
                failed_line = line
        code = proc.wait()
    elapsed = time.time() - start
    state = "failed" if (code != 0 or failed_line) else "success"
    print(f"{args.dag_id}: {state} in {elapsed:.0f} s", flush=True)
    if state != "success":
        print(f"see {log_path} for the whole log", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
