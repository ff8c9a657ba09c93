"""Benchmark: validating PAXMIN_H whole (issue 10) against the 200,000-row sample it replaces.

    PYTHONPATH=include .venv/bin/python bench/bench_badinput_validation.py [--participants 150]

Generates a synthetic NHANES set (~10,000 minute rows per participant), then measures, in
this one process, side by side on the same file:

1. baseline: ``read_frame(..., "xpt", row_limit=200_000)`` + ``run_suite`` (what the DAG did:
   the first 200,000 rows only, so a file cut short or bad values further down pass);
2. ``validate_file(..., "xpt")``: every row, streamed in chunks, GX on each chunk plus the
   numeric guard; rows/s and the extrapolation to the real file's ~80M rows;
3. ``nhanes.check_consistency``: the cross-file check (PAXMIN_H read whole, SEQN and PAXDAYM
   only) against PAXHD_H and PAXDAY_H.

Prints the figures and writes bench/results/badinput_validation.json. The machine may be
shared, so the load average before and after is recorded too.
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
NHANES_ROWS = 80_000_000  # PAXMIN_H 2013-14 holds ~80M participant-minutes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--participants", type=int, default=150)
    ap.add_argument("--chunk-rows", type=int, default=1_000_000)  # validation.DEFAULT_CHUNK_ROWS
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "biotune-bench-badinput"))
    args = ap.parse_args()
    os.environ.setdefault("BIOTUNE_HOME", os.path.join(args.workdir, "home"))

    from biotune import validation
    from biotune.mood import nhanes
    from biotune.synthetic.nhanes import write_nhanes

    src = Path(args.workdir) / f"nhanes{args.participants}"
    if not (src / "PAXMIN_H.XPT").exists():
        t = time.perf_counter()
        write_nhanes(src, participants=args.participants, seed=0)
        print(f"generated {args.participants} participants in {time.perf_counter() - t:.1f} s")
    path = str(src / "PAXMIN_H.XPT")
    rows = nhanes.xpt_layout(path).n_rows
    load_before = os.getloadavg()
    import great_expectations  # noqa: F401  (import once, outside the timings)

    t = time.perf_counter()
    frame = validation.read_frame(path, "xpt", row_limit=200_000)
    sample = validation.run_suite(frame, "nhanes_paxmin", where=path)
    t_sample = time.perf_counter() - t

    t = time.perf_counter()
    whole = validation.validate_file(path, "nhanes_paxmin", "xpt", quarantine=False, chunk_rows=args.chunk_rows,
                                     report_dir=str(Path(args.workdir) / "reports"))
    t_whole = time.perf_counter() - t

    t = time.perf_counter()
    consistency = nhanes.check_consistency(src, report_dir=str(Path(args.workdir) / "reports"))
    t_cons = time.perf_counter() - t

    rate_whole = rows / t_whole
    rate_cons = rows / t_cons
    result = {
        "participants": args.participants, "paxmin_rows": rows, "chunk_rows": args.chunk_rows,
        "baseline_sample_200k": {"rows_checked": len(frame), "seconds": round(t_sample, 2),
                                 "rows_per_s": round(len(frame) / t_sample), "success": sample.success},
        "validate_file_whole": {"rows_checked": whole.rows, "chunks": whole.chunks, "seconds": round(t_whole, 2),
                                "rows_per_s": round(rate_whole), "success": whole.success,
                                "extrapolated_80M_rows_s": round(NHANES_ROWS / rate_whole)},
        "check_consistency": {"seconds": round(t_cons, 2), "rows_per_s": round(rate_cons),
                              "success": consistency.success,
                              "extrapolated_80M_rows_s": round(NHANES_ROWS / rate_cons)},
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    print(json.dumps(result, indent=2))
    out = ROOT / "bench" / "results" / "badinput_validation.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
