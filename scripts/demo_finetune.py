"""The fine-tuning part of `make demo`: for every registered family, generate its training data in its
real file formats (once; kept in the lake's landing area), then run its fine-tune DAG through Airflow.

    python scripts/demo_finetune.py [--families mood,eeg] [--conf-mood JSON]

All the DAG runs happen in one Airflow process (scripts/run_dag.py --runs). Uses the environment the
Makefile exports; DEMO_PARTICIPANTS and DEMO_CONF set mood's size and conf as before.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default="", help="comma-separated (default: every registered family)")
    args = parser.parse_args()

    from biotune import storage
    from biotune.family import families

    known = families()
    wanted = [f for f in args.families.split(",") if f] or sorted(known, key=lambda f: (f != "mood", f))
    runs = []
    for name in wanted:
        fam = known[name]
        size, conf = fam.demo_size, dict(fam.demo_conf)
        if name == "mood":  # the Makefile's knobs
            size = int(os.environ.get("DEMO_PARTICIPANTS", size))
            conf.update(json.loads(os.environ.get("DEMO_CONF") or "{}"))
        landing = Path(storage.lake_path("landing", "nhanes", "2013-2014") if name == "mood"
                       else storage.lake_path("landing", name, "training"))
        marker = landing / ".biotune-demo.json"
        if marker.exists():
            params = json.loads(marker.read_text())
            print(f"{name}: generated training data already in {landing}", flush=True)
        elif landing.exists() and any(landing.iterdir()):  # a user's own files: never overwritten
            params = {"source": str(landing)}
            print(f"{name}: using the files already in {landing}", flush=True)
        else:
            print(f"{name}: generating {size} examples of training data in its real formats into {landing}",
                  flush=True)
            params = fam.demo_training_data(str(landing), size, seed=7)
            marker.write_text(json.dumps(params))
        runs.append([fam.fine_tune_dag_id, None, {**params, **conf}])
    cmd = [sys.executable, str(ROOT / "scripts" / "run_dag.py"), "--runs", json.dumps(runs)]
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(main())
