"""Benchmark: mood personal calibration - Apple Health import, calibration, prediction, clinical targets.

1. import: generated export.xml files of growing size (real Health-app layout, ~25 record types'
   worth of lines per day); biotune's importer (full import: parse, spill, minute series,
   episodes) against a plain ``xml.etree.ElementTree.iterparse`` loop (clear each Record) over the
   same file, each in its own process: MB/s and peak RSS.
2. persons: N generated persons imported, labelled and featurized; two folds (population models
   trained on one half, the other half calibrated, and back); per target person and task: the
   person's last ``--future-days`` are kept from calibration; on the rest, population vs personal
   ensemble AUC and false-positive / true-positive rate on the gate's later (test) days at the
   thresholds chosen before them, the gate's decision, calibration seconds; then the kept days
   are served one by one as in production (predict_day with the stored outcome, withheld band)
   and their served FPR, TPR and withheld share measured ("later_*" in each task's summary).
   PAT here is a small configuration (patch 144, 1 layer) so the default run stays short;
   ``--pat-s`` adds one calibration with the real PAT-S to time it.
3. serving: a fresh process loads the population bundles and predicts person-days from the
   encrypted store (numpy PAT + numpy trees): ms per person-day and peak RSS.

Run:  cd <repo> && PYTHONPATH=include /work/main/.venv/bin/python bench/bench_personal.py \\
          [--import-mb 64,256] [--persons 8] [--days 250] [--future-days 50] [--tasks all] [--pat-s]
          [--skip-import] [--workdir DIR]
Writes bench/results/personal.json. Figures, not a pass/fail verdict.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))


def rss_mb() -> float:
    """Peak RSS of this process image: VmHWM (ru_maxrss of a spawned child can carry the parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# ----------------------------------------------------------------------------- children
def child_import(path: str) -> dict:
    from biotune.mood.personal.health import import_health

    t0 = time.perf_counter()
    series, episodes, report = import_health(path, quarantine=False)
    sec = time.perf_counter() - t0
    mb = os.path.getsize(path) / 1e6
    return {"seconds": round(sec, 2), "mb_s": round(mb / sec, 1), "parse_mb_s": report["mb_per_s"],
            "rss_mb": rss_mb(), "records": report["records_seen"], "days": series.days,
            "episodes": int(len(episodes))}


def child_iterparse(path: str) -> dict:
    import xml.etree.ElementTree as ET

    t0 = time.perf_counter()
    counts: dict[str, int] = {}
    for _, elem in ET.iterparse(path, events=("end",)):
        if elem.tag == "Record":
            t = elem.get("type")
            counts[t] = counts.get(t, 0) + 1
            elem.clear()
    sec = time.perf_counter() - t0
    return {"seconds": round(sec, 2), "mb_s": round(os.path.getsize(path) / 1e6 / sec, 1), "rss_mb": rss_mb(),
            "records": sum(counts.values())}


def child_serve(args_json: str) -> dict:
    a = json.loads(args_json)
    from biotune.mood.personal import predict

    t0 = time.perf_counter()
    pops = predict.load_populations(a["tasks"], a["population"])
    load_s = time.perf_counter() - t0
    times = []
    for person, date in a["pairs"]:
        t = time.perf_counter()
        predict.predict(person, pops, date, base=a["store"])
        times.append(time.perf_counter() - t)
    heavy = [m for m in ("torch", "pandas", "xgboost", "sklearn") if m in sys.modules]
    return {"load_populations_s": round(load_s, 3), "person_days": len(times), "tasks": len(a["tasks"]),
            "ms_per_person_day_first": round(times[0] * 1000, 1),
            "ms_per_person_day_median": round(float(np.median(times[1:] or times)) * 1000, 1),
            "ms_per_person_day_p95": round(float(np.percentile(times, 95)) * 1000, 1), "rss_mb": rss_mb(),
            "heavy_modules_loaded": heavy}


def run_child(mode: str, arg: str, env: dict) -> dict:
    res = subprocess.run([sys.executable, __file__, "--child", mode, arg], capture_output=True, text=True, env=env)
    if res.returncode:
        raise RuntimeError(f"child {mode} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- 1. import
def export_of_size(workdir: Path, mb: int) -> Path:
    """A bare export.xml of at least ``mb`` MB (cached in the workdir)."""
    from biotune.mood.personal.synth import make_profile, simulate
    from biotune.mood.personal.synth_files import write_export_xml

    path = workdir / f"export_{mb}mb.xml"
    if path.exists():
        return path
    probe = workdir / "probe.xml"
    with open(probe, "w", encoding="utf-8") as fh:
        write_export_xml(fh, simulate(make_profile(0, seed=3, days=20), filler=1.0))
    per_day = probe.stat().st_size / 20
    days = int(mb * 1e6 / per_day * 1.02) + 1
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        write_export_xml(fh, simulate(make_profile(0, seed=3, days=days), filler=1.0))
    os.replace(tmp, path)
    return path


def import_bench(workdir: Path, sizes: list[int], env: dict) -> list[dict]:
    rows = []
    for mb in sizes:
        t0 = time.perf_counter()
        path = export_of_size(workdir, mb)
        gen = time.perf_counter() - t0
        # alternate the two, twice, and keep each one's best run: the machine is shared
        runs = {"import": [], "iterparse": []}
        for _ in range(2):
            for mode in runs:
                runs[mode].append(run_child(mode, str(path), env))
        ours = min(runs["import"], key=lambda r: r["seconds"])
        base = min(runs["iterparse"], key=lambda r: r["seconds"])
        ours["rss_mb"] = max(r["rss_mb"] for r in runs["import"])
        base["rss_mb"] = max(r["rss_mb"] for r in runs["iterparse"])
        rows.append({"target_mb": mb, "file_mb": round(path.stat().st_size / 1e6, 1), "generate_s": round(gen, 1),
                     "biotune_import": ours, "etree_iterparse": base})
        print(f"import {path.stat().st_size / 1e6:7.1f} MB: biotune {ours['mb_s']:6.1f} MB/s (parse "
              f"{ours['parse_mb_s']:.1f}) peak {ours['rss_mb']:6.1f} MB | iterparse {base['mb_s']:6.1f} MB/s "
              f"peak {base['rss_mb']:7.1f} MB", flush=True)
    return rows


# ----------------------------------------------------------------------------- 2. persons
def persons_bench(workdir: Path, n: int, days: int, seed: int, tasks: list[str], pat_s: bool,
                  future_days: int) -> tuple[dict, dict]:
    from biotune.mood.personal import crypto, labels, store
    from biotune.mood.personal.daily import features_for
    from biotune.mood.personal.dataset import DailyTable, person_days, series_digest
    from biotune.mood.personal.health import import_health
    from biotune.mood.personal.names import SLEEP_FEATURE_NAMES
    from biotune.mood.personal.synth_files import generate_persons

    base = str(workdir / "store")
    t0 = time.perf_counter()
    persons = generate_persons(n, workdir / "persons", days=days, seed=seed, filler=0.0)
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    series = {}
    for p in persons:
        s, e, r = import_health(p["export_zip"], quarantine=False)
        store.write_import(p["person_id"], s, e, r, base=base)
        series[p["person_id"]] = s
        labels.add_rows(list(csv.DictReader(open(p["labels_csv"]))))
    t_import = time.perf_counter() - t0
    t0 = time.perf_counter()
    tables = {}
    for (pid, s), f in zip(series.items(), features_for(list(series.values()))):
        tables[pid] = DailyTable(np.array(f.index, dtype="datetime64[D]"), f[SLEEP_FEATURE_NAMES].to_numpy(np.float64),
                                 f["valid"].to_numpy(bool), series_digest(s))
        store.write_file(pid, "daily.npz.enc", tables[pid].to_npz(), base)
    t_feat = time.perf_counter() - t0
    print(f"persons: {n} x {days} days generated {t_gen:.0f}s, imported {t_import:.0f}s, features {t_feat:.0f}s",
          flush=True)
    pids = list(series)
    out: dict = {"n_persons": n, "days": days, "future_days": future_days,
                 "seconds": {"generate": round(t_gen, 1), "import": round(t_import, 1), "features": round(t_feat, 1)},
                 "tasks": {}}
    serving_pairs = []
    for task in tasks:
        days_of = {pid: person_days(crypto.pseudonym(pid), task, series[pid], tables[pid], labels.list_labels(pid))
                   for pid in pids}
        out["tasks"][task] = evaluate_task(task, days_of, pids, workdir, base, seed, future_days)
        if task == tasks[0]:
            serving_pairs = [(pid, str(d)) for pid in pids[1::2] for d in days_of[pid].dates[-10:]]
    if pat_s:
        out["pat_s_calibration"] = pat_s_timing(days_of_first_task(tasks[0], pids, series, tables), pids, seed)
    serving = {"pairs": serving_pairs, "tasks": [tasks[0]], "population": str(workdir / "population_fold0"),
               "store": base}
    return out, serving


def evaluate_task(task: str, days_of: dict, pids: list[str], workdir: Path, base: str, seed: int,
                  future_days: int) -> dict:
    """Two folds of population training and per-person calibration on each person's days but the last
    ``future_days``; those are then served one by one through predict.predict_day (the stored outcome,
    the saved population bundle): the served false-positive rate is measured on days nothing has seen."""
    import hashlib

    from biotune.errors import InputFormatError
    from biotune.mood.pat import PATConfig
    from biotune.mood.personal import calibrate, crypto, population, predict, store

    folds = [(pids[0::2], pids[1::2]), (pids[1::2], pids[0::2])]
    tiny = PATConfig("bench-small", patch_size=144, num_layers=1, num_heads=2, embed_dim=32, key_dim=16, ff_dim=64)
    rows, pop_seconds, skipped = [], [], []
    for k, (train_ids, target_ids) in enumerate(folds):
        t0 = time.perf_counter()
        try:
            pm = population.train_population([days_of[p] for p in train_ids], task, pat_config=tiny,
                                             pat_epochs=4, val_every=3, version=f"fold{k}", seed=seed + k)
        except InputFormatError as exc:        # e.g. a fold without enough episodes of this kind
            skipped.append(f"fold {k}: {exc.what}")
            print(f"  {task:10} fold {k}: skipped ({exc.what})", flush=True)
            continue
        pop_seconds.append(time.perf_counter() - t0)
        serving_pop = population.load_serving(population.save(pm, workdir / f"population_fold{k}" / task))
        for pid in target_ids:
            all_days = days_of[pid]
            cut = max(len(all_days) - int(future_days), 0)
            o, art = calibrate.calibrate_days(all_days.take(slice(0, cut)), pm, pat_epochs=8, seed=seed)
            key = crypto.pseudonym(pid)
            o.artifacts = {a: hashlib.sha256(v).hexdigest() for a, v in art.items()}
            if "adapter" in art:
                store.write_file(key, calibrate.calibration_file(task, calibrate.ADAPTER), art["adapter"], base)
            if "xgb" in art:
                store.write_file(key, calibrate.calibration_file(task, calibrate.XGB), art["xgb"], base)
            store.write_file(key, calibrate.calibration_file(task, calibrate.OUTCOME),
                             json.dumps(o.as_dict(), default=str).encode(), base)
            m = o.metrics
            row = {"person": o.person, "fold": k, "days": o.n_days, "decision": o.decision,
                   "reason": o.reasons[-1], "seconds": o.seconds, "adapter_bytes": o.adapter_bytes,
                   "threshold": o.threshold}
            if m:
                row.update({side: {x: (round(v, 4) if isinstance(v, float) else v) for x, v in m[side].items()
                                   if x in ("auc", "fpr", "tpr", "n", "prevalence", "components", "withheld")}
                            for side in ("population", "personal")})
            future = all_days.take(slice(cut, len(all_days)))
            if len(future):
                row["future"] = serve_days(key, task, serving_pop, future, base)
            rows.append(row)
            f = row.get("future", {})
            print(f"  {task:10} fold {k} {o.person}: {o.decision:10} "
                  + (f"pop AUC {m['population']['auc']:.3f} FPR {m['population']['fpr']:.2f} | personal AUC "
                     f"{m['personal']['auc']:.3f} FPR {m['personal']['fpr']:.2f}" if m else o.reasons[0])
                  + (f" | served later {f['n']} d: FPR {f['fpr']:.2f} TPR {f['tpr']:.2f} withheld {f['withheld']:.2f}"
                     if f else "")
                  + f"  ({o.seconds.get('xgb', 0) + o.seconds.get('pat', 0):.1f}s)", flush=True)
    res = {"persons": rows, "population_train_seconds": [round(s, 1) for s in pop_seconds],
           "summary": summarize(rows), "skipped": skipped,
           "episodes": {"persons_with_positive_days": int(sum(bool(d.y.any()) for d in days_of.values())),
                        "positive_days": int(sum(int(d.y.sum()) for d in days_of.values())),
                        "episodes": int(sum(int(np.sum(np.diff(np.r_[0, d.y]) == 1)) for d in days_of.values()))}}
    print(f"  {task}: {json.dumps(res['summary'])}", flush=True)
    return res


def serve_days(person: str, task: str, pop, days, base: str) -> dict:
    """Each day served as in production (predict.predict_day: the person's stored calibration, the
    uncertain rule); FPR and TPR count a withheld day as not flagged, 'withheld' is their share."""
    from biotune.mood.personal import calibrate, predict

    outcome = calibrate.read_outcome(person, task, base) or {}
    if "uncertain_from" in outcome:
        from biotune.mood.personal.thresholds import decide
    else:                   # an outcome from before the withheld band: predict_day's decision as it is
        def decide(p, t, _):
            return "positive" if p is not None and p >= t else "negative"
    decisions = []
    for i in range(len(days)):
        pred = predict.predict_day(person, task, pop, days.X[i], None if days.weeks is None else days.weeks[i],
                                   date=str(days.dates[i]), base=base)
        # the withheld band below the certified threshold (thresholds.decide; predict_day's own rule kept)
        decisions.append(pred.decision if pred.decision == "uncertain" else
                         decide(pred.probability, outcome.get("threshold", pred.threshold),
                                outcome.get("uncertain_from")))
    flagged = np.array([d == "positive" for d in decisions])
    withheld = np.array([d == "uncertain" for d in decisions])
    y = np.asarray(days.y).astype(int)
    neg, pos = y == 0, y == 1
    return {"n": int(len(y)), "negatives": int(neg.sum()), "positives": int(pos.sum()),
            "fpr": float(flagged[neg].mean()) if neg.any() else float("nan"),
            "tpr": float(flagged[pos].mean()) if pos.any() else float("nan"),
            "withheld": float(withheld.mean()),
            "withheld_negatives": float(withheld[neg].mean()) if neg.any() else float("nan"),
            "withheld_positives": float(withheld[pos].mean()) if pos.any() else float("nan")}


def days_of_first_task(task, pids, series, tables):
    from biotune.mood.personal import crypto, labels
    from biotune.mood.personal.dataset import person_days

    return {pid: person_days(crypto.pseudonym(pid), task, series[pid], tables[pid], labels.list_labels(pid))
            for pid in pids}


def summarize(rows: list[dict]) -> dict:
    """AUC on the gate's test days; false-positive and true-positive rates of the side that serves, at the
    threshold chosen before those days; and the same served day by day on the later days nothing saw."""
    ev = [r for r in rows if "personal" in r and np.isfinite(r["personal"]["auc"]) and np.isfinite(r["population"]["auc"])]
    out: dict = {"evaluated": len(ev), "promoted": int(sum(r["decision"] == "personal" for r in rows)),
                 "fallback": int(sum(r["decision"] == "population" for r in rows))}
    if ev:
        pop = np.array([r["population"]["auc"] for r in ev])
        per = np.array([r["personal"]["auc"] for r in ev])
        served = np.where([r["decision"] == "personal" for r in ev], per, pop)
        side = [r[r["decision"]] for r in ev]
        out.update({"population_auc_mean": round(float(pop.mean()), 4),
                    "personal_auc_mean": round(float(per.mean()), 4),
                    "personal_minus_population_pp": round(float((per - pop).mean() * 100), 2),
                    "served_minus_population_pp": round(float((served - pop).mean() * 100), 2),
                    **_rates("test", side)})
    fut = [r["future"] for r in rows if "future" in r]
    if fut:
        out.update(_rates("later", fut))
        out["later_withheld_mean"] = round(float(np.mean([f["withheld"] for f in fut])), 4)
        out["later_days"] = int(sum(f["n"] for f in fut))
    return out


def _rates(prefix: str, parts: list[dict]) -> dict:
    fpr = np.array([p.get("fpr", np.nan) for p in parts], dtype=float)
    tpr = np.array([p.get("tpr", np.nan) for p in parts], dtype=float)
    out = {}
    for name, v in (("fpr", fpr), ("tpr", tpr)):
        v = v[np.isfinite(v)]
        if len(v):
            out.update({f"{prefix}_{name}_mean": round(float(v.mean()), 4),
                        f"{prefix}_{name}_median": round(float(np.median(v)), 4),
                        f"{prefix}_{name}_max" if name == "fpr" else f"{prefix}_{name}_min":
                            round(float(v.max() if name == "fpr" else v.min()), 4),
                        f"{prefix}_{name}_persons": int(len(v))})
    return out


def pat_s_timing(days_of: dict, pids: list[str], seed: int) -> dict:
    """One calibration with the real PAT-S: a briefly trained population PAT-S, adapter on one person."""
    from biotune.mood.personal import calibrate, population

    t0 = time.perf_counter()
    pm = population.train_population([days_of[p] for p in pids[0::2]], next(iter(days_of.values())).task,
                                     pat_config="S", pat_epochs=1, pat_stride=6, val_every=3, version="pat-s",
                                     seed=seed)
    t_pop = time.perf_counter() - t0
    target = days_of[pids[1]]
    t0 = time.perf_counter()
    o, art = calibrate.calibrate_days(target, pm, pat_epochs=6, pat_stride=2, seed=seed)
    total = time.perf_counter() - t0
    res = {"population_train_s": round(t_pop, 1), "person_days": len(target), "seconds_total": round(total, 1),
           "seconds": o.seconds, "adapter_bytes": len(art.get("adapter", b"")) or o.adapter_bytes,
           "decision": o.decision, "metrics": {s: {k: o.metrics[s][k] for k in ("auc", "fpr")} for s in o.metrics}}
    if "adapter" not in art:
        # the gate kept the population; the adapter was trained all the same: measure its size
        import io

        _, adapter, _ = calibrate.train_adapter(pm.pat, pm.scaler.transform(target.weeks[:8]), target.y[:8],
                                                pm.scaler.transform(target.weeks[8:12]), target.y[8:12], epochs=1)
        buf = io.BytesIO()
        np.savez(buf, **adapter)
        res["adapter_bytes"] = len(buf.getvalue())
    print(f"PAT-S calibration: {res['seconds_total']}s for {len(target)} days (xgb {o.seconds.get('xgb')}s, "
          f"pat {o.seconds.get('pat')}s), adapter {res['adapter_bytes']:,} bytes", flush=True)
    return res


# ----------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--import-mb", default="64,256", help="export.xml sizes in MB, e.g. 128,512,1024")
    ap.add_argument("--persons", type=int, default=8)
    ap.add_argument("--days", type=int, default=250)
    ap.add_argument("--future-days", type=int, default=50,
                    help="each person's last days, kept from calibration and served one by one")
    ap.add_argument("--tasks", default="depressive", help="comma-separated, or 'all'")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--pat-s", action="store_true", help="also time one calibration with the real PAT-S")
    ap.add_argument("--skip-import", action="store_true")
    ap.add_argument("--workdir", default="/tmp/biotune-bench-personal")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "personal.json"))
    a = ap.parse_args()
    if a.child:
        mode, arg = a.child
        print(json.dumps({"import": child_import, "iterparse": child_iterparse, "serve": child_serve}[mode](arg)))
        return

    from biotune.mood.personal import crypto

    workdir = Path(a.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    run_dir = workdir / f"run-{os.getpid()}"
    run_dir.mkdir()
    os.environ[crypto.ENV_KEY] = crypto.new_key()          # a throw-away key for generated persons
    os.environ["BIOTUNE_DRIFT_DB"] = f"sqlite:///{run_dir / 'biotune.db'}"
    os.environ["BIOTUNE_LAKE"] = str(run_dir / "lake")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "include")}
    tasks = ["depressive", "manic", "hypomanic"] if a.tasks == "all" else a.tasks.split(",")
    result = {"benchmark": "mood_personal", "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                                        "python": platform.python_version(),
                                                        "loadavg_before": [round(x, 2) for x in os.getloadavg()]}}
    t0 = time.perf_counter()
    if not a.skip_import:
        result["import"] = import_bench(workdir, [int(x) for x in a.import_mb.split(",") if x], env)
    persons, serving = persons_bench(run_dir, a.persons, a.days, a.seed, tasks, a.pat_s, a.future_days)
    result["persons"] = persons
    result["serving"] = run_child("serve", json.dumps(serving), env)
    s = result["serving"]
    print(f"serving: {s['ms_per_person_day_median']} ms per person-day (first {s['ms_per_person_day_first']} ms, "
          f"p95 {s['ms_per_person_day_p95']} ms), peak RSS {s['rss_mb']} MB, heavy modules {s['heavy_modules_loaded']}")
    result["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    result["seconds"] = round(time.perf_counter() - t0, 1)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {a.out} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
