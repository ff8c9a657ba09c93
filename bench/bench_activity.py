"""Benchmark: activity family throughput on CPU, with the baseline measured in the same run.

1. CSV -> windows (and, as the floor, pyarrow's CSV parse alone on the same files): a generated Garmin-format set (default 24 h of 100 Hz samples over 20 session
   files, 8.64 M rows) read by ``biotune.activity.windows.load_windows`` (pyarrow parse, units,
   anti-aliased resampling to 50 Hz, scaler, strided 200 x 6 windows, majority labels), against a
   straightforward pandas baseline doing the same work the seed's way: ``pd.read_csv``, unit
   conversion, decimation to 50 Hz, scaling, then a loop over window starts slicing ``df.iloc``
   and taking ``Series.mode()`` of the labels. The baseline runs on the first ``--baseline-sessions``
   files (rows/s is a rate; said so in the output); its window count and labels are compared
   with ours on those files.
2. Inference windows/s of the seed-size CNN-BiLSTM (499,131 parameters) at batch 1 and 256.
3. Head-only transfer (the seed's policy: last 4 layers, Adam 1e-4, up to 20 epochs, patience 5,
   batch 32, 30/70 source/new mix) on 5,000 labelled new-domain windows: wall time.

Prints the figures and writes bench/results/activity.json. Timings are figures, not pass/fail.

    PYTHONPATH=include .venv/bin/python bench/bench_activity.py [--sessions 20] [--hours 24]
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "include"))

from biotune.activity import CLASSES, SENSOR_COLS, synth  # noqa: E402
from biotune.activity.config import ACCEL_UNITS, TrainingConfig  # noqa: E402
from biotune.activity.windows import load_windows  # noqa: E402


def baseline_windows(files: list[str], pipe, scaler, label_map: dict[str, int]):
    """The seed's way, kept straightforward: pandas read, per-window iloc slices and mode()."""
    import pandas as pd

    cols_csv = [pipe.columns[c] for c in SENSOR_COLS]
    factor = np.array([ACCEL_UNITS[pipe.accel_units]] * 3 + [1.0] * 3)
    step_rows = int(round(pipe.input_hz / pipe.target_hz))
    xs, ys = [], []
    for f in files:
        df = pd.read_csv(f)
        df[cols_csv] = df[cols_csv].astype(float) * factor
        df = df.iloc[::step_rows].reset_index(drop=True)  # 100 Hz -> 50 Hz by decimation
        df[cols_csv] = (df[cols_csv] - scaler.mean) / scaler.scale
        w, step = pipe.window_size, pipe.step_size
        for start in range(0, len(df) - w + 1, step):
            window = df.iloc[start:start + w]
            xs.append(window[cols_csv].values.astype(np.float32))
            ys.append(label_map[window["label"].mode()[0]])
    return np.stack(xs), np.array(ys)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--hours", type=float, default=24.0, help="total hours over all sessions")
    ap.add_argument("--baseline-sessions", type=int, default=3)
    ap.add_argument("--infer-windows", type=int, default=2048)
    ap.add_argument("--batch1-windows", type=int, default=200)
    ap.add_argument("--finetune-windows", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "activity.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("BIOTUNE_TF_THREADS", str(args.threads))
    if os.getloadavg()[0] > (os.cpu_count() or 1):
        print(f"note: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: other work shares the "
              "machine, and the two-thread read loses more to it than the one-thread baseline")
    result: dict = {"machine": {"python": platform.python_version(), "numpy": np.__version__,
                                "cpus": os.cpu_count(), "load_average_1m_start": os.getloadavg()[0]}}

    with tempfile.TemporaryDirectory(prefix="bench_activity_") as tmp:
        data = Path(tmp) / "garmin"
        seconds = args.hours * 3600 / args.sessions
        t_gen, files = timed(lambda: synth.write_domain(data, "garmin", persons=args.sessions, seed=0,
                                                        session_seconds=seconds))
        pipe = synth.GARMIN.pipeline()
        rows = sum(sum(1 for _ in open(f)) - 1 for f in files)
        size_mb = sum(os.path.getsize(f) for f in files) / 1e6
        print(f"generated {len(files)} Garmin sessions, {rows:,} rows at 100 Hz, {size_mb:.0f} MB CSV "
              f"in {t_gen:.1f} s")
        scaler = synth.source_scaler(persons=4, seed=0)
        cfg = TrainingConfig(scaler=scaler)

        t_ours, ws = timed(lambda: load_windows(str(data), pipe, cfg))
        ours_rate = rows / t_ours
        print(f"ours:     {len(ws):,} windows from {rows:,} rows in {t_ours:.2f} s -> {ours_rate:,.0f} rows/s")

        import pyarrow as pa
        import pyarrow.csv as pacsv

        # the same read on one core (pyarrow's parse is what uses the second one): the part of the
        # speed-up that is not parallelism
        cpus = pa.cpu_count()
        pa.set_cpu_count(1)
        try:
            t_one, _ = timed(lambda: load_windows(str(data), pipe, cfg))
        finally:
            pa.set_cpu_count(cpus)
        print(f"ours on one core: {rows / t_one:,.0f} rows/s")

        t_parse, _ = timed(lambda: [pacsv.read_csv(f) for f in files])  # the floor: parsing alone
        print(f"pyarrow CSV parse alone: {rows / t_parse:,.0f} rows/s (ours is {ours_rate / (rows / t_parse):.0%} "
              "of it)")
        base_files = files[: args.baseline_sessions]
        base_rows = sum(sum(1 for _ in open(f)) - 1 for f in base_files)
        t_base, (bx, by) = timed(lambda: baseline_windows(base_files, pipe, scaler,
                                                          {c: i for i, c in enumerate(CLASSES)}))
        base_rate = base_rows / t_base
        ours_sub = load_windows(base_files, pipe, cfg)
        agree = float((ours_sub.y[: len(by)] == by[: len(ours_sub.y)]).mean())
        print(f"baseline: {len(bx):,} windows from {base_rows:,} rows ({len(base_files)} files) in {t_base:.2f} s "
              f"-> {base_rate:,.0f} rows/s")
        print(f"speed-up {ours_rate / base_rate:.1f}x ({rows / t_one / base_rate:.1f}x on one core); windows {len(ours_sub)} ours vs {len(bx)} baseline on the "
              f"same files, labels agree on {agree:.1%} (ours low-pass + interpolates, baseline decimates)")
        result["csv_to_windows"] = {
            "sessions": len(files), "rows": rows, "csv_mb": round(size_mb, 1), "input_hz": 100, "target_hz": 50,
            "windows": len(ws), "ours_seconds": t_ours, "ours_rows_per_s": ours_rate,
            "ours_one_core_rows_per_s": rows / t_one, "speedup_one_core": (rows / t_one) / base_rate,
            "baseline": "pandas read_csv + per-window df.iloc slice + Series.mode() (the seed's loop)",
            "baseline_files": len(base_files), "baseline_rows": base_rows, "baseline_seconds": t_base,
            "baseline_rows_per_s": base_rate, "speedup": ours_rate / base_rate,
            "windows_same_files": {"ours": len(ours_sub), "baseline": len(bx)}, "label_agreement": agree,
            "generate_seconds": t_gen, "parse_only_rows_per_s": rows / t_parse,
        }

        # inference
        from biotune.activity.model import build_model, predict_proba

        model = build_model("seed")
        x = ws.x[: args.infer_windows]
        predict_proba(model, x[:256])  # trace once
        model.predict_on_batch(x[:1])
        t1, _ = timed(lambda: [model.predict_on_batch(x[i:i + 1]) for i in range(args.batch1_windows)])
        t256, _ = timed(lambda: predict_proba(model, x, batch_size=256))
        print(f"inference (seed size, {model.count_params():,} parameters): batch 1 {args.batch1_windows / t1:,.0f} "
              f"windows/s, batch 256 {len(x) / t256:,.0f} windows/s")
        result["inference"] = {"parameters": int(model.count_params()), "batch1_windows_per_s": args.batch1_windows / t1,
                               "batch256_windows_per_s": len(x) / t256, "batch1_windows": args.batch1_windows,
                               "batch256_windows": len(x)}

        # head-only transfer on 5,000 new-domain windows (+ 30% source)
        from biotune.activity.transfer import head_only_transfer

        rng = np.random.default_rng(0)
        pick = np.sort(rng.choice(len(ws), min(args.finetune_windows, len(ws)), replace=False))
        new = ws.subset(pick)
        src_dir = Path(tmp) / "source"
        synth.write_domain(src_dir, "source", persons=4, seed=0)
        src = load_windows(str(src_dir), synth.SOURCE.pipeline(), cfg)
        t_ft, res = timed(lambda: head_only_transfer(model, src, new, seed=0))
        epochs_run = len(res.history.get("loss", []))
        print(f"head-only transfer: {len(new):,} new-domain windows ({res.n_new_train} train / {res.n_new_val} val) "
              f"+ {res.n_source} source, {epochs_run} epochs in {t_ft:.1f} s")
        result["finetune"] = {"new_windows": len(new), "n_new_train": res.n_new_train, "n_new_val": res.n_new_val,
                              "n_source": res.n_source, "epochs_run": epochs_run, "seconds": t_ft,
                              "trainable_params": res.trainable_params, "frozen_params": res.frozen_params,
                              "note": "random-init model: the time, not the accuracy, is the figure"}
    result["machine"]["load_average_1m_end"] = os.getloadavg()[0]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
