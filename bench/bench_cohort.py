"""Benchmark: NHANES PAXMIN_H (synthetic, 7,000 participants) -> mood cohort parquet.

    PYTHONPATH=include .venv/bin/python bench/bench_cohort.py [--participants 7000] [--workdir /tmp/biotune-bench]

Generates the NHANES file set once (cached under --workdir), then, each in a fresh child
process so that peak RSS belongs to the measured step only:

1. ``build_cohort`` on the whole set: wall time, rows/s, peak RSS of the process tree
   (``resource.getrusage`` RUSAGE_SELF + RUSAGE_CHILDREN ``ru_maxrss``; the sum is an upper
   bound, since the children figure is the largest single child).
2. ``pandas.read_sas(..., format="xport", chunksize=...)`` over the first --slice-rows rows,
   keeping the same four columns, and our reader (one process) over the same slice: rows/s.

Prints the figures and writes bench/results/cohort.json. Targets: < 5 min on 2 cores, peak
RSS < 4 GB, >= 5x pandas.read_sas rows/s. The machine may be shared, so the load average
before and after is recorded too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["SEQN", "PAXSSNMP", "PAXMTSM", "PAXPREDM"]


def _rss_mb() -> dict:
    s = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    c = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"self_mb": round(s, 1), "children_mb": round(c, 1), "tree_mb": round(s + c, 1)}


def _child(args: list[str]) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "include") + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, __file__, *args], env=env, check=True, capture_output=True, text=True)
    sys.stderr.write(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_generate(data: str, participants: int, seed: int) -> dict:
    from biotune.synthetic.nhanes import write_nhanes

    t = time.perf_counter()
    paths = write_nhanes(data, participants, seed)
    return {"seconds": round(time.perf_counter() - t, 2),
            "paxmin_bytes": os.path.getsize(paths["PAXMIN_H"]), **_rss_mb()}


def measure_build(data: str, out: str, workers: int) -> dict:
    from biotune.mood.cohort import build_cohort

    t = time.perf_counter()
    rep = build_cohort(data, out, workers=workers)
    wall = time.perf_counter() - t
    return {"seconds": round(wall, 2), "rows": rep.rows_read, "rows_per_s": round(rep.rows_read / wall),
            "n_included": rep.n_included, "n_candidates": rep.n_candidates, "excluded": rep.excluded,
            "labels": rep.labels, "workers": rep.workers, "out_bytes": os.path.getsize(out), **_rss_mb()}


def measure_pandas(path: str, rows: int) -> dict:
    import pandas as pd

    t = time.perf_counter()
    got = 0
    with pd.read_sas(path, format="xport", chunksize=200_000, iterator=True) as reader:
        for chunk in reader:
            chunk = chunk[COLUMNS]
            got += len(chunk)
            if got >= rows:
                break
    wall = time.perf_counter() - t
    return {"seconds": round(wall, 2), "rows": got, "rows_per_s": round(got / wall), **_rss_mb()}


def measure_reader(path: str, rows: int) -> dict:
    from biotune.mood.nhanes import iter_paxmin_chunks

    t = time.perf_counter()
    got = 0
    for ch in iter_paxmin_chunks(path, COLUMNS, 200_000, 0, rows):
        got += len(ch["SEQN"])
    wall = time.perf_counter() - t
    return {"seconds": round(wall, 2), "rows": got, "rows_per_s": round(got / wall), **_rss_mb()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--participants", type=int, default=7000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--workdir", default="/tmp/biotune-bench")
    ap.add_argument("--slice-rows", type=int, default=2_000_000)
    ap.add_argument("--results", default=str(ROOT / "bench" / "results" / "cohort.json"))
    ap.add_argument("--_step", default="", help=argparse.SUPPRESS)
    ap.add_argument("--_a", default="", help=argparse.SUPPRESS)
    ap.add_argument("--_b", default="", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a._step:  # child process: one measured step, JSON on the last stdout line
        fn = {"generate": lambda: measure_generate(a._a, a.participants, a.seed),
              "build": lambda: measure_build(a._a, a._b, a.workers),
              "pandas": lambda: measure_pandas(a._a, a.slice_rows),
              "reader": lambda: measure_reader(a._a, a.slice_rows)}[a._step]
        print(json.dumps(fn()))
        return 0

    data = Path(a.workdir) / f"nhanes_{a.participants}_s{a.seed}"
    marker = data / ".complete"
    load_before = os.getloadavg()
    gen = None
    if not marker.exists():
        print(f"generating {a.participants} participants into {data} ...", flush=True)
        gen = _child(["--_step", "generate", "--_a", str(data), "--participants", str(a.participants),
                      "--seed", str(a.seed)])
        marker.write_text(json.dumps(gen))
        print(f"  generated in {gen['seconds']} s, PAXMIN_H {gen['paxmin_bytes'] / 1e9:.2f} GB", flush=True)
    else:
        gen = json.loads(marker.read_text() or "{}")
        gen["cached"] = True
    paxmin = str(data / "PAXMIN_H.XPT")
    out = str(Path(a.workdir) / f"cohort_{a.participants}_s{a.seed}.parquet")
    print("building cohort ...", flush=True)
    build = _child(["--_step", "build", "--_a", str(data), "--_b", out, "--workers", str(a.workers)])
    print("pandas.read_sas on a slice ...", flush=True)
    pand = _child(["--_step", "pandas", "--_a", paxmin, "--slice-rows", str(a.slice_rows)])
    reader = _child(["--_step", "reader", "--_a", paxmin, "--slice-rows", str(a.slice_rows)])
    load_after = os.getloadavg()
    res = {
        "participants": a.participants, "seed": a.seed, "workers": a.workers,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in load_after]},
        "generate": gen, "build_cohort": build, "pandas_read_sas_slice": pand, "biotune_reader_slice_1proc": reader,
        "ratio_build_vs_pandas_rows_per_s": round(build["rows_per_s"] / pand["rows_per_s"], 2),
        "ratio_reader_vs_pandas_rows_per_s": round(reader["rows_per_s"] / pand["rows_per_s"], 2),
        "targets": {"build_under_300_s": build["seconds"] < 300, "peak_rss_under_4_gb": build["tree_mb"] < 4096,
                    "at_least_5x_pandas": build["rows_per_s"] >= 5 * pand["rows_per_s"]},
    }
    dest = Path(a.results)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.write_text(json.dumps(res, indent=2) + "\n")
    os.replace(tmp, dest)
    print(f"build_cohort: {build['seconds']} s for {build['rows']:,} rows = {build['rows_per_s']:,} rows/s "
          f"(workers={build['workers']}), peak RSS tree {build['tree_mb']:.0f} MB "
          f"(self {build['self_mb']:.0f} + largest child {build['children_mb']:.0f}); "
          f"{build['n_included']}/{build['n_candidates']} included, excluded {build['excluded']}")
    print(f"pandas.read_sas: {pand['rows_per_s']:,} rows/s on {pand['rows']:,} rows; "
          f"biotune reader (1 process) {reader['rows_per_s']:,} rows/s on the same slice")
    print(f"ratio build/pandas = {res['ratio_build_vs_pandas_rows_per_s']}x, "
          f"reader/pandas = {res['ratio_reader_vs_pandas_rows_per_s']}x")
    print(f"load average before {res['machine']['loadavg_before']} after {res['machine']['loadavg_after']} "
          f"on {os.cpu_count()} CPUs; targets {res['targets']}; wrote {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
