"""EEG family on CPU: the chunked SSD scan vs the naive recurrence, backbone training throughput,
and signal processing throughput vs a per-window scipy loop.

    python bench/bench_eeg.py [--lengths 256,512,1024,2048,4096,8192] [--hours 1.0] [--threads 2]

- SSD: ``ssd_chunked`` (chunk 64) vs ``ssd_naive`` (one step per token) on the same inputs, float32,
  batch 1, 4 heads x headdim 64, d_state 128 (the Mamba-2 defaults at d_model 128), one thread (both
  are then measured alike on a shared box); median of repeats, with the largest difference between
  the two outputs.
- Backbone: forward + backward + AdamW step of the Mamba-2 backbone (d_model 128, 2 layers, d_state 128,
  headdim 64) on 0.25 s tokens (4 channels x 64 samples): tokens per second on ``--threads`` threads, at
  the classifier's shape (batch 32 x 40 tokens = 10 s windows) and a long one (batch 2 x 2,048 tokens),
  on 1 thread and on ``--threads`` (on a busy shared box 2 threads can be slower than 1).
- Processing: hours of 4-channel 256 Hz EEG per second of wall time for ``processing.process`` (filter
  each continuous stretch once, window by reshaping) vs a straightforward loop that filters every 10 s
  window with the same scipy calls (upsample x2, Butterworth sosfiltfilt, decimate, DC removal); and
  reading a Mind Monitor CSV (10 min) into the grid.
Figures, not pass/fail: written to bench/results/eeg.json and printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.signal import resample_poly, sosfiltfilt  # noqa: E402

from biotune.eeg import processing  # noqa: E402
from biotune.eeg.mamba2 import Mamba2Backbone, Mamba2Config, count_parameters, ssd_chunked, ssd_naive  # noqa: E402
from biotune.eeg.readers import read_recording  # noqa: E402
from biotune.eeg.synth import participant_profile, simulate_eeg, write_mind_monitor  # noqa: E402


def _median_time(fn, repeats: int, budget_s: float = 20.0, warmup: bool = True) -> float:
    if warmup:
        fn()
    times = []
    start = time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget_s:
            break
    return float(np.median(times))


def bench_ssd(lengths: list[int]) -> list[dict]:
    torch.set_num_threads(1)
    rows = []
    h, p, n = 4, 64, 128
    for length in lengths:
        g = torch.Generator().manual_seed(length)
        x = torch.randn(1, length, h, p, generator=g)
        dt_ = torch.nn.functional.softplus(torch.randn(1, length, h, generator=g) - 3)
        a = -torch.exp(torch.rand(h, generator=g)) * dt_
        B = torch.randn(1, length, 1, n, generator=g)
        C = torch.randn(1, length, 1, n, generator=g)
        xs = x * dt_[..., None]
        with torch.no_grad():
            chunked = _median_time(lambda: ssd_chunked(xs, a, B, C, 64), repeats=7)
            naive_out = []
            naive = _median_time(lambda: naive_out.append(ssd_naive(xs, a, B, C)[0]), repeats=3 if length <= 1024 else 1,
                                 warmup=length <= 1024)
            diff = float((ssd_chunked(xs, a, B, C, 64)[0] - naive_out[-1]).abs().max())
        row = {"length": length, "chunked_ms": round(chunked * 1e3, 3), "naive_ms": round(naive * 1e3, 2),
               "speedup": round(naive / chunked, 1), "max_abs_diff": diff}
        rows.append(row)
        print(f"ssd L={length:5d}: chunked {row['chunked_ms']:9.2f} ms  naive {row['naive_ms']:10.1f} ms  "
              f"x{row['speedup']:6.1f}  (max |diff| {diff:.1e})")
    return rows


def bench_backbone(shapes: list[tuple[int, int]], steps: int, threads: list[int]) -> list[dict]:
    cfg = Mamba2Config(d_model=128, n_layers=2, d_state=128, headdim=64, chunk_size=64)
    rows = []
    for n_threads, (batch, length) in [(t, s) for t in threads for s in shapes]:
        torch.set_num_threads(n_threads)
        torch.manual_seed(0)
        model = Mamba2Backbone(cfg, token_dim=4 * 64)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        x = torch.randn(batch, length, 4 * 64)

        def step():
            loss = model(x).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        sec = _median_time(step, repeats=steps)
        row = {"threads": n_threads, "batch": batch, "tokens_per_sequence": length, "median_step_s": round(sec, 4),
               "tokens_per_s": round(batch * length / sec, 1), "params": count_parameters(model)}
        rows.append(row)
        print(f"backbone fwd+bwd {n_threads} thread(s), batch {batch} x {length} tokens: {row['tokens_per_s']:,.0f} tokens/s "
              f"({sec * 1e3:.1f} ms/step, {row['params']:,} params)")
    return rows


def per_window_loop(data: np.ndarray, fs: float = 256.0, window_s: float = 10.0, sub_s: float = 0.25):
    """The straightforward version: every window filtered on its own with the same scipy calls."""
    sos = processing._sos(fs * 2, processing.CUTOFF_HZ, processing.ORDER)
    w, s = int(window_s * fs), int(sub_s * fs)
    out = []
    for k in range(len(data) // w):
        seg = data[k * w:(k + 1) * w]
        if not np.isfinite(seg).all():
            continue
        y = sosfiltfilt(sos, resample_poly(seg, 2, 1, axis=0), axis=0)[::2]
        subs = y.reshape(w // s, s, -1).transpose(0, 2, 1)
        out.append(subs - subs.mean(-1, keepdims=True))
    return np.stack(out).astype(np.float32)


def bench_processing(hours: float) -> dict:
    rng = np.random.default_rng(0)
    fs = 256.0
    seconds = hours * 3600
    x, _ = simulate_eeg(seconds, participant_profile(1, rng), rng, fs)
    x = x + 841.0
    fast = _median_time(lambda: processing.process(x, fs, 10.0, 0.25), repeats=3)
    loop = _median_time(lambda: per_window_loop(x, fs), repeats=2)
    a = processing.process(x, fs, 10.0, 0.25).signals
    b = per_window_loop(x, fs)
    interior = np.abs(a[1:-1, 8:-8] - b[1:-1, 8:-8])  # away from the loop's per-window edge transients
    out = {"eeg_hours": hours, "vectorised_s": round(fast, 3), "per_window_loop_s": round(loop, 3),
           "vectorised_hours_per_s": round(hours / fast, 2), "per_window_loop_hours_per_s": round(hours / loop, 2),
           "speedup": round(loop / fast, 1), "windows": int(len(a)),
           "interior_median_abs_diff_uV": float(np.median(interior)), "signal_std_uV": float(a.std())}
    print(f"processing {hours:g} h of 4-channel EEG: vectorised {fast:.2f} s ({out['vectorised_hours_per_s']} h/s) "
          f"vs per-window loop {loop:.2f} s ({out['per_window_loop_hours_per_s']} h/s): x{out['speedup']}")
    # reading a Mind Monitor CSV (the parse, the rate measurement, the checks, the grid)
    minutes = 10
    y, ev = simulate_eeg(minutes * 60, participant_profile(0, rng), rng, fs)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "P001" / "mindMonitor_2024-01-01--10-00-00.csv")
        write_mind_monitor(path, y, dt.datetime(2024, 1, 1, 10), rng, events=ev)
        size_mb = os.path.getsize(path) / 1e6
        read = _median_time(lambda: read_recording(path, "P001"), repeats=3)
    out.update({"read_mind_monitor_minutes": minutes, "read_mind_monitor_mb": round(size_mb, 1),
                "read_mind_monitor_s": round(read, 3), "read_hours_per_s": round(minutes / 60 / read, 3)})
    print(f"reading a {minutes} min Mind Monitor CSV ({size_mb:.1f} MB): {read:.2f} s "
          f"({out['read_hours_per_s']} h/s)")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="256,512,1024,2048,4096,8192")
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "eeg.json"))
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    result = {
        "benchmark": "eeg_cpu",
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
                    "torch_threads_backbone": sorted({1, args.threads}), "torch_threads_ssd": 1,
                    "processor": platform.machine(),
                    "load_avg_1m_start": round(load0, 2)},
        "ssd_scan": bench_ssd([int(v) for v in args.lengths.split(",")]),
        "backbone_train": bench_backbone([(32, 40), (2, 2048)], args.steps, sorted({1, args.threads})),
        "processing": bench_processing(args.hours),
    }
    result["machine"]["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} (load {load0:.2f} -> {result['machine']['load_avg_1m_end']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
