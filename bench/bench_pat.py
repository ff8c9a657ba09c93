"""PAT on CPU: fine-tuning throughput and inference time per participant-week.

    python bench/bench_pat.py [--size S] [--batch-size 32] [--steps 6] [--modes full,linear,lora]

Train step = forward + backward + Adam step on one batch of standardized weeks (10,080 minutes).
Inference = eval mode under torch.no_grad, at batch 1 (latency) and batch 64 (throughput).
Figures, not pass/fail: written to bench/results/pat.json and printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from biotune.mood.pat import build_classifier, configure_threads, count_parameters  # noqa: E402


def _train_throughput(size: str, mode: str, batch_size: int, steps: int, warmup: int = 2) -> dict:
    torch.manual_seed(0)
    model = build_classifier(size, mode)
    model.train()
    if mode == "linear":
        model.encoder.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-4, eps=1e-7)
    x = torch.randn(batch_size, 10_080)
    y = torch.randint(0, 2, (batch_size,)).float()
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        if mode == "linear":
            with torch.no_grad():
                h = model.encoder(x)
            logits = model.head(h)
        else:
            logits = model(x)
        loss = F.binary_cross_entropy_with_logits(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    step = float(np.median(times))
    return {"mode": mode, "batch_size": batch_size, "steps": steps, "median_step_s": round(step, 4),
            "samples_per_s": round(batch_size / step, 2),
            "trainable_params": count_parameters(model, trainable_only=True)}


def _inference(size: str, batch_size: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = build_classifier(size, "full").eval()
    x = torch.randn(batch_size, 10_080)
    times = []
    with torch.no_grad():
        model(x)  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.sigmoid(model(x))
            times.append(time.perf_counter() - t0)
    per_batch = float(np.median(times))
    return {"batch_size": batch_size, "median_batch_s": round(per_batch, 5),
            "ms_per_participant_week": round(1000 * per_batch / batch_size, 3),
            "participant_weeks_per_s": round(batch_size / per_batch, 1)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="S")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--modes", default="full,linear,lora")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "pat.json"))
    args = ap.parse_args(argv)

    threads = configure_threads(args.threads)
    result = {
        "benchmark": "pat_cpu",
        "size": args.size.upper(),
        "params": count_parameters(build_classifier(args.size, "full")),
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
                    "torch_threads": threads, "processor": platform.processor() or platform.machine(),
                    "load_avg_1m_start": round(os.getloadavg()[0], 2)},
        "train": [],
        "inference": [],
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        r = _train_throughput(args.size, mode, args.batch_size, args.steps)
        result["train"].append(r)
        print(f"PAT-{result['size']} train {mode:6s} batch {r['batch_size']}: {r['samples_per_s']:7.1f} samples/s "
              f"({r['median_step_s']:.3f} s/step, {r['trainable_params']:,} trainable params)")
    for bs, reps in ((1, 20), (64, 3)):
        r = _inference(args.size, bs, reps)
        result["inference"].append(r)
        print(f"PAT-{result['size']} inference batch {bs:3d}: {r['ms_per_participant_week']:8.2f} ms per participant-week "
              f"({r['participant_weeks_per_s']:.1f} weeks/s)")
    result["machine"]["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    print(f"torch threads {threads}; 1-min load {result['machine']['load_avg_1m_start']} -> "
          f"{result['machine']['load_avg_1m_end']} (other workers share this machine: figures are noisy)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
