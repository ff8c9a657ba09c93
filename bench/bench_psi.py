"""Benchmark: biotune.drift.psi against Evidently 0.7.23's PSI, in the same run.

Default size: 100 numeric columns, a 1,000,000-row reference and a 1,000,000-row current batch
(columns held as separate arrays, as read from parquet). Timed:

* ours, ``method="evidently"`` and ``method="quantile"`` (all columns at once);
* Evidently's PSI stattest on each column, preceded by the cleaning its drift metric does
  (``±inf`` -> NaN, dropna): the per-column work of ``DataDriftPreset(method="psi")``;
* Evidently's normal path, ``Report([DataDriftPreset(method="psi")]).run(...)``, on a subset of
  columns (``--preset-cols``), extrapolated linearly to all columns (said so in the output).

Values in Evidently mode are asserted equal (|diff| <= 1e-6) on every column compared.
Prints the figures and writes bench/results/psi.json. Timings are figures, not pass/fail.

    PYTHONPATH=include .venv/bin/python bench/bench_psi.py [--rows N] [--cols C] [--preset-cols P]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "include"))

from biotune import drift  # noqa: E402


def make_frames(rows: int, ref_rows: int, cols: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    g = np.random.default_rng(seed)
    ref, cur = {}, {}
    for i in range(cols):
        name = f"f{i:03d}"
        kind = i % 10
        if kind == 8:  # integer feature, wide range (Sturges path)
            ref[name] = g.integers(0, 500, ref_rows)
            cur[name] = g.integers(0, 500 + 5 * (i % 7), rows)
        elif kind == 9:  # skewed feature with missing values
            r = g.lognormal(0, 0.5, ref_rows)
            c = g.lognormal(0.05 * (i % 5), 0.5, rows)
            r[:: 97] = np.nan
            c[:: 53] = np.nan
            ref[name], cur[name] = r, c
        else:  # normal feature, shift growing with the column number
            ref[name] = g.normal(0, 1, ref_rows)
            cur[name] = g.normal(0.01 * (i % 30), 1 + 0.01 * (i % 11), rows)
    return pd.DataFrame(ref), pd.DataFrame(cur)


def timed(fn, repeat: int = 1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def evidently_stattest(ref: pd.DataFrame, cur: pd.DataFrame, cols: list[str]) -> pd.Series:
    from evidently.legacy.calculations.stattests import psi_stat_test
    from evidently.legacy.core import ColumnType

    out = {}
    for col in cols:
        r = ref[col].replace([-np.inf, np.inf], np.nan).dropna()
        c = cur[col].replace([-np.inf, np.inf], np.nan).dropna()
        out[col] = psi_stat_test(r, c, ColumnType.Numerical, None).drift_score
    return pd.Series(out, dtype=float)


def evidently_preset(ref: pd.DataFrame, cur: pd.DataFrame, cols: list[str]) -> pd.Series:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    dd = DataDefinition(numerical_columns=cols, categorical_columns=[])
    snap = Report([DataDriftPreset(columns=cols, method="psi")]).run(
        Dataset.from_pandas(cur[cols], data_definition=dd), Dataset.from_pandas(ref[cols], data_definition=dd)
    )
    out = {}
    for m in snap.dict()["metrics"]:
        cfg = m.get("config", {})
        if cfg.get("type", "").endswith("ValueDrift"):
            out[cfg["column"]] = float(m["value"])
    return pd.Series(out, dtype=float)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="current rows")
    ap.add_argument("--ref-rows", type=int, default=None, help="reference rows (default: --rows)")
    ap.add_argument("--cols", type=int, default=100)
    ap.add_argument("--ev-cols", type=int, default=None, help="columns for Evidently's stattest (default all)")
    ap.add_argument("--preset-cols", type=int, default=5, help="columns for the DataDriftPreset run (0: skip)")
    ap.add_argument("--repeat", type=int, default=2, help="best of N for our timings")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "psi.json"))
    a = ap.parse_args(argv)
    ref_rows = a.ref_rows or a.rows

    t, (ref, cur) = timed(lambda: make_frames(a.rows, ref_rows, a.cols, a.seed))
    cols = list(ref.columns)
    print(f"data: reference {ref_rows:,} x {a.cols}, current {a.rows:,} x {a.cols} (built in {t:.1f} s)")

    # one-time imports and registries are not part of a run: warm everything up on tiny data
    small_r, small_c = ref.iloc[:2000], cur.iloc[:2000]
    drift.psi(small_r, small_c, method="evidently")
    drift.psi(small_r, small_c, method="quantile")
    evidently_stattest(small_r, small_c, cols[:2])
    if a.preset_cols:
        evidently_preset(small_r, small_c, cols[:2])

    t_ev_mode, ours_ev = timed(lambda: drift.psi(ref, cur, method="evidently"), a.repeat)
    t_q_mode, ours_q = timed(lambda: drift.psi(ref, cur, method="quantile"), a.repeat)
    print(f"ours, evidently mode : {t_ev_mode:8.3f} s  ({t_ev_mode / a.cols * 1e3:.2f} ms/column)")
    print(f"ours, quantile mode  : {t_q_mode:8.3f} s  ({t_q_mode / a.cols * 1e3:.2f} ms/column)")

    ev_cols = cols[: a.ev_cols] if a.ev_cols else cols
    t_st, ev_st = timed(lambda: evidently_stattest(ref, cur, ev_cols))
    t_st_all = t_st * len(cols) / len(ev_cols)
    diff_st = float((ours_ev[ev_cols] - ev_st[ev_cols]).abs().max())
    assert diff_st <= 1e-6, f"evidently-mode PSI differs from Evidently's stattest by {diff_st}"
    note_st = "" if len(ev_cols) == len(cols) else f" (timed on {len(ev_cols)} columns, extrapolated)"
    print(f"evidently stattest   : {t_st_all:8.3f} s  ({t_st / len(ev_cols) * 1e3:.2f} ms/column){note_st}")
    print(f"  max |ours - evidently| over {len(ev_cols)} columns: {diff_st:.2e}")

    preset = None
    if a.preset_cols:
        pcols = cols[: a.preset_cols]
        t_pr, ev_pr = timed(lambda: evidently_preset(ref, cur, pcols))
        diff_pr = float((ours_ev[pcols] - ev_pr[pcols]).abs().max())
        assert diff_pr <= 1e-6, f"evidently-mode PSI differs from DataDriftPreset by {diff_pr}"
        t_pr_all = t_pr * len(cols) / len(pcols)
        preset = {
            "columns_timed": len(pcols),
            "seconds_timed": t_pr,
            "seconds_extrapolated_all_columns": t_pr_all,
            "max_abs_diff": diff_pr,
            "speedup_evidently_mode": t_pr_all / t_ev_mode,
        }
        print(
            f"evidently preset     : {t_pr_all:8.3f} s  (DataDriftPreset(method='psi') timed on "
            f"{len(pcols)} columns: {t_pr:.2f} s, extrapolated linearly to {len(cols)})"
        )
        print(f"  max |ours - preset| over {len(pcols)} columns: {diff_pr:.2e}")

    speed_st = t_st_all / t_ev_mode
    print(f"speed-up vs Evidently stattest (evidently mode): {speed_st:6.1f}x")
    print(f"speed-up vs Evidently stattest (quantile mode) : {t_st_all / t_q_mode:6.1f}x")
    if preset:
        print(f"speed-up vs DataDriftPreset   (evidently mode): {preset['speedup_evidently_mode']:6.1f}x")

    result = {
        "rows_current": a.rows,
        "rows_reference": ref_rows,
        "columns": a.cols,
        "ours_evidently_mode_s": t_ev_mode,
        "ours_quantile_mode_s": t_q_mode,
        "evidently_stattest": {
            "columns_timed": len(ev_cols),
            "seconds_timed": t_st,
            "seconds_all_columns": t_st_all,
            "extrapolated": len(ev_cols) != len(cols),
            "max_abs_diff": diff_st,
        },
        "evidently_preset": preset,
        "speedup_vs_stattest_evidently_mode": speed_st,
        "speedup_vs_stattest_quantile_mode": t_st_all / t_q_mode,
        "drifted_over_0_2_quantile_mode": int((ours_q >= 0.2).sum()),
        "drifted_over_0_1_evidently_mode": int((ours_ev >= 0.1).sum()),
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "cpus": os.cpu_count(),
            "load_average_1m": os.getloadavg()[0],
            "binning_threads": drift.WORKERS,
        },
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
