"""Benchmark: the glucose family's three throughput targets (issue 14), each beside a baseline.

    PYTHONPATH=include .venv/bin/python bench/bench_glucose.py [--checker-mb 100] [--patients 24]

Measured in this one run, on data the family's generator writes:

1. local SFT on 2 threads: tokens/s of LoRA SFT (peft) on the configured small model (the
   defaults of ``local_lora.BaseConfig`` / ``LoraParams``), beside full-parameter SFT of the
   same model on the same examples (baseline);
2. evaluation: examples/s of BLEU + ROUGE-L + format + safety over 1,000 examples, beside
   rouge-score's own ``RougeScorer`` (its dynamic-programming LCS; timed on 200 examples);
3. the checker: examples/s over a generated JSONL of ``--checker-mb`` MB, and the peak RSS of
   the process, each in a fresh subprocess, beside a load-everything checker (the cookbook's
   shape: every line parsed into a list first, then checked) on the same file, and beside a
   process that only imports the checker and loads its tokenizer (what is not the file's);
4. token counts: rs_bpe (what the checker ships with) against tiktoken on every message, when
   tiktoken and its o200k_base file are available (``TIKTOKEN_CACHE_DIR``); skipped otherwise;
5. with ``--quality``: the shipped spec (models/glucose-coach-lora.yaml) trained through the
   shared steps on ``--quality-patients`` generated patients, the tuned model and the untuned base
   scored on the same test split, and the spec's gate decision (minutes on 2 cores).

Prints the figures and writes bench/results/glucose.json. The machine may be shared: the load
average before and after is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

CHILD = r"""
import json, sys, time
sys.path.insert(0, {include!r})
mode, path = sys.argv[1], sys.argv[2]
from biotune.glucose import check, tokens
t = time.perf_counter()
if mode == "imports":  # what the process holds before reading a line (code, the o200k tables)
    tokens.get_encoder("o200k_base").count("x")
    from biotune.glucose import pii
    pii.find_pii("Hi Linda")
    n, errors = 0, 0
elif mode == "stream":
    r = check.check_file(path)
    n, errors = r.n_examples, r.n_errors
else:  # load everything first, then check (the cookbook's shape)
    with open(path, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    seen, errors = set(), 0
    from biotune.glucose import answers, pii
    for i, ex in enumerate(rows):
        msgs = ex.get("messages") or []
        errors += sum(1 for m in msgs if "role" not in m or "content" not in m)
        tokens.count_messages(msgs)
        key = json.dumps(msgs, sort_keys=True)
        errors += key in seen
        seen.add(key)
        for m in msgs:
            errors += bool(pii.find_pii(m.get("content", "")))
        errors += not answers.safety_ok(msgs[1]["content"], msgs[2]["content"])
    n = len(rows)
s = time.perf_counter() - t
# VmHWM: this process's own peak (ru_maxrss would carry the forking parent's peak across exec)
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({{"examples": n, "errors": errors, "seconds": s, "peak_rss_mb": hwm / 1024}}))
"""


def _examples(patients: int, days: int, seed: int, workdir: Path):
    from biotune.glucose import dataset, synth

    src = workdir / f"src{patients}x{days}"
    if not (src / "patients.csv").exists():
        synth.write_patients(src, n_patients=patients, days=days, seed=seed)
    return dataset.build_examples(src, seed=seed)


def bench_sft(rows, threads: int) -> dict:
    import torch

    from biotune.glucose import local_lora

    torch.set_num_threads(threads)
    work = Path(tempfile.mkdtemp(prefix="glucose-sft-"))
    chats = [{"messages": r["messages"]} for r in rows]
    cfg = local_lora.BaseConfig(pretrain_epochs=1)
    t = time.perf_counter()
    base = local_lora.build_base_model(chats, work / "base", cfg)
    t_base = time.perf_counter() - t
    params = local_lora.LoraParams(epochs=3)
    # best of two runs each, interleaved: the machine is shared, and the first run pays the warm-up
    loras, fulls = [], []
    for attempt in range(2):
        loras.append(local_lora.train_lora(base, chats, work / f"tuned{attempt}", params=params))
        model, tok = local_lora.load_base(base)
        model.to(local_lora.device())
        items = [local_lora.encode_example(tok, c["messages"], params.max_length)[:2] for c in chats]
        _, tokens, secs = local_lora._fit(model, items, params.epochs, params.batch_size, params.learning_rate,
                                          tok.pad_token_id, 0)
        fulls.append((tokens / secs, tokens, secs, sum(p.numel() for p in model.parameters())))
    lora = max(loras, key=lambda r: r.tokens_per_s)
    full = max(fulls)
    return {
        "config": {"base": vars(cfg), "lora_r": params.r, "batch_size": params.batch_size, "threads": threads,
                   "examples": len(chats), "max_length": params.max_length},
        "base_build_s": round(t_base, 1),
        "lora": {"tokens_per_s": round(lora.tokens_per_s, 1), "tokens": lora.train_tokens,
                 "trainable_params": lora.trainable_params, "total_params": lora.total_params,
                 "seconds": round(lora.seconds, 1)},
        "lora_runs_tokens_per_s": [round(r.tokens_per_s, 1) for r in loras],
        "full_ft_baseline": {"tokens_per_s": round(full[0], 1), "tokens": full[1], "seconds": round(full[2], 1),
                             "trainable_params": full[3], "runs_tokens_per_s": [round(f[0], 1) for f in fulls]},
    }


def bench_eval(rows, n: int = 1000, baseline_n: int = 200) -> dict:
    from rouge_score import rouge_scorer

    from biotune.glucose import metrics

    users = [r["user"] for r in rows]
    refs = [r["reference"] for r in rows]
    k = len(rows)
    users, refs = [users[i % k] for i in range(n)], [refs[i % k] for i in range(n)]
    preds = [refs[(i + 1) % n] for i in range(n)]  # another example's answer: partial overlap
    t = time.perf_counter()
    ours = metrics.score_answers(users, preds, refs)
    t_ours = time.perf_counter() - t
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    t = time.perf_counter()
    base = [scorer.score(r, p)["rougeL"].fmeasure for r, p in zip(refs[:baseline_n], preds[:baseline_n])]
    t_base = time.perf_counter() - t
    tok = metrics._tokenizer()
    same = max(abs(a - metrics.rouge_l(tok.tokenize(r), tok.tokenize(p)))
               for a, r, p in zip(base, refs[:baseline_n], preds[:baseline_n]))
    return {"examples": n, "seconds": round(t_ours, 2), "examples_per_s": round(n / t_ours, 1),
            "metrics": {k: round(v, 4) for k, v in ours.items() if isinstance(v, float)},
            "baseline_rouge_score_rougeL_only": {"examples": baseline_n, "seconds": round(t_base, 2),
                                                 "examples_per_s": round(baseline_n / t_base, 1)},
            "max_abs_rouge_l_difference": same}


def _write_checker_file(rows, path: Path, target_mb: float, seed: int = 0) -> int:
    """Unique examples until the file reaches ``target_mb``: the generated ones with their numbers varied."""
    rng = random.Random(seed)
    target, n = target_mb * 1024 * 1024, 0
    num = re.compile(r"\d+\.\d")
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        while fh.tell() < target:
            r = rows[n % len(rows)]
            user = num.sub(lambda m: f"{float(m.group(0)) + rng.uniform(-0.9, 0.9):.1f}", r["messages"][1]["content"], count=3)
            user = re.sub(r"- Age: \d+", f"- Age: {rng.randint(18, 90)}", user, count=1)
            msgs = [r["messages"][0], {"role": "user", "content": user}, r["messages"][2]]
            fh.write(json.dumps({"messages": msgs}, ensure_ascii=False) + "\n")
            n += 1
    return n


def bench_checker(rows, mb: float, workdir: Path) -> dict:
    path = workdir / f"checker_{mb:g}mb.jsonl"
    n = _write_checker_file(rows, path, mb)
    out = {"file_mb": round(path.stat().st_size / 2**20, 1), "lines": n}
    for mode, arg in (("imports_only", "imports"), ("stream", "stream"), ("load_all_baseline", "load")):
        res = subprocess.run([sys.executable, "-c", CHILD.format(include=str(ROOT / "include")), arg, str(path)],
                             capture_output=True, text=True, check=True)
        r = json.loads(res.stdout.strip().splitlines()[-1])
        if r["examples"]:
            r["examples_per_s"] = round(r["examples"] / r["seconds"], 1)
            r["mb_per_s"] = round(out["file_mb"] / r["seconds"], 2)
        out[mode] = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()}
    path.unlink()
    return out


def bench_quality(patients: int, workdir: Path, epochs: int | None, pretrain: int | None) -> dict:
    """The shipped spec through prepare -> base -> LoRA -> evaluate -> gate, base model beside it."""
    home = workdir / "quality-home"
    import shutil

    shutil.rmtree(home, ignore_errors=True)
    os.environ["BIOTUNE_HOME"] = str(home)
    from biotune import policy, steps
    from biotune.family import get_family
    from biotune.glucose import local_lora, metrics, pipeline
    from biotune.specs import get_spec

    fam = get_family("glucose")
    params = fam.demo_training_data(str(workdir / "quality-data"), patients, seed=11)
    params.update({k: v for k, v in (("epochs", epochs), ("pretrain_epochs", pretrain)) if v})
    run = "bench__quality"
    timings = {}
    t = time.perf_counter()
    dataset = steps.prepare("glucose", params, run)
    prepared = steps.prepare_architectures(dataset, run, params)
    timings["base_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    trained = steps.train("glucose-coach-lora", dataset, prepared, run, params)
    timings["lora_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    evaluated = steps.evaluate(trained, dataset, run)
    timings["evaluate_s"] = round(time.perf_counter() - t, 1)
    test = pipeline.load_examples(dataset, "test")
    base_dir = prepared["lora"]["base"]
    base = local_lora.generator(base_dir=base_dir, max_new_tokens=160)
    base_scores = metrics.evaluate(base, pipeline.chats(pipeline.model_input(test), list(test["reference"])))
    spec = get_spec("glucose-coach-lora")
    tuned = {k[len("test_"):]: v for k, v in evaluated["metrics"].items() if k.startswith("test_")}
    decision = policy.gate(spec.gate, tuned[spec.gate.metric], None, others=tuned)
    keys = (metrics.BLEU, metrics.ROUGE_L, metrics.FORMAT, metrics.SAFETY)
    return {"patients": patients, "examples": dataset["counts"], "params": params | {"source": "generated"},
            "timings": timings, "tokens_per_s": trained["params"].get("tokens_per_s"),
            "epochs_run": trained["params"].get("epochs_run"),
            "tuned_test": {k: round(float(tuned[k]), 4) for k in keys},
            "base_test": {k: round(float(base_scores[k]), 4) for k in keys},
            "gate": {"minimums": spec.gate.minimums, "min_absolute": spec.gate.min_absolute,
                     "passed": bool(decision.yes), "reasons": list(decision.reasons)}}


def bench_token_counts(rows) -> dict:
    try:
        import tiktoken

        enc = tiktoken.get_encoding("o200k_base")
    except Exception as exc:  # no tiktoken, or no encoding file offline
        return {"skipped": f"{type(exc).__name__}: {exc}"[:200]}
    from biotune.glucose import tokens

    texts = [m["content"] for r in rows for m in r["messages"]]
    rs = tokens.get_encoder("o200k_base")
    mismatched = sum(list(enc.encode(t)) != list(rs.encode(t)) for t in texts)
    total = sum(len(enc.encode(t)) for t in texts)
    return {"messages": len(texts), "tokens": total, "mismatched_messages": mismatched,
            "tiktoken": tiktoken.__version__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=24)
    ap.add_argument("--days", type=int, default=2)
    ap.add_argument("--checker-mb", type=float, default=100.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-sft", action="store_true")
    ap.add_argument("--only-quality", action="store_true", help="run the quality section only (merged into --out)")
    ap.add_argument("--quality", action="store_true", help="also train the shipped spec and gate it (minutes)")
    ap.add_argument("--quality-patients", type=int, default=40)
    ap.add_argument("--quality-epochs", type=int, default=None)
    ap.add_argument("--quality-pretrain", type=int, default=None)
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "biotune-bench-glucose"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "glucose.json"))
    args = ap.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    if args.only_quality:
        result = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
        result["quality"] = bench_quality(args.quality_patients, workdir, args.quality_epochs, args.quality_pretrain)
        result["quality"]["load"] = {"before": load_before, "after": os.getloadavg()}
        print("quality:", result["quality"], flush=True)
        Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"wrote {args.out}")
        return
    rows = _examples(args.patients, args.days, 0, workdir)
    result = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_before": load_before},
              "examples_generated": len(rows)}
    result["token_counts_vs_tiktoken"] = bench_token_counts(rows)
    print("token counts:", result["token_counts_vs_tiktoken"], flush=True)
    result["evaluation"] = bench_eval(rows)
    print("evaluation:", result["evaluation"], flush=True)
    result["checker"] = bench_checker(rows, args.checker_mb, workdir)
    print("checker:", result["checker"], flush=True)
    if not args.skip_sft:
        result["local_sft"] = bench_sft([r for r in rows], args.threads)
        print("local SFT:", result["local_sft"], flush=True)
    if args.quality:
        result["quality"] = bench_quality(args.quality_patients, workdir, args.quality_epochs, args.quality_pretrain)
        print("quality:", result["quality"], flush=True)
    result["machine"]["load_after"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
