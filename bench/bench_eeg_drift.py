"""EEG drift thresholds from measurements, and the classifier beside a band-power baseline.

    python bench/bench_eeg_drift.py [--participants 24] [--batches 8] [--rows 60]

Windows cluster by participant: a day's batch holds a handful of new people, so its band-power
features sit away from the training quantiles even when nothing changed. This measures, with the
family's own generator and code:

- PSI per band-power feature (21: 5 bands x 4 channels + alpha asymmetry) of undrifted daily
  batches (``demo_batch``, new participants, same device) and of drifted ones (``shifted``: a
  headband with 1.6x gain, 3x mains noise, twice the blinks) against the training split, with the
  spec's PSI settings and with the default 10 bins: the largest PSI per batch and how many features
  reach the spec's ``threshold`` and ``critical`` (what the alerts and the retraining rule see);
- window AUC on the held-out participants (val + test) of the frozen-backbone Mamba-2 classifier
  (the spec's settings), its head on the mean of the backbone's outputs alone (the seed's pooling)
  and on the mean + the log energy the final RMSNorm removes (the default), beside a logistic
  regression on the same 21 band-power features.
Figures, not pass/fail: written to bench/results/eeg_drift.json and printed.
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


def psi_table(ref, batches, features, spec, bins) -> dict:
    import numpy as np

    from biotune import drift

    rows = []
    for frame in batches:
        psi = drift.psi(ref, frame[features], method=spec.drift.method, bins=bins).to_numpy()
        rows.append({"max_psi": round(float(psi.max()), 3), "median_psi": round(float(np.median(psi)), 3),
                     "at_threshold": int((psi >= spec.drift.threshold).sum()),
                     "at_critical": int((psi >= spec.drift.critical).sum())})
    return {"bins": bins, "batches": rows,
            "max_psi_range": [min(r["max_psi"] for r in rows), max(r["max_psi"] for r in rows)],
            "most_features_at_threshold": max(r["at_threshold"] for r in rows)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--participants", type=int, default=24)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--rows", type=int, default=60, help="windows per daily batch")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "eeg_drift.json"))
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="bench-eeg-drift-")
    os.environ["BIOTUNE_HOME"] = tmp
    os.environ["BIOTUNE_PRETRAINED"] = str(Path(tmp) / "pretrained")
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    from biotune import storage
    from biotune.eeg import pipeline
    from biotune.eeg.dataset import load_split, read_batch, split_participants
    from biotune.eeg.family import EEGFamily
    from biotune.eeg.finetune import WindowSet, train_classifier
    from biotune.eeg.pretrain import pretrain
    from biotune.eeg.primary import read_primary
    from biotune.specs import load_spec

    spec = load_spec(ROOT / "models" / "eeg-remission-mamba2.yaml")
    fam = EEGFamily()
    t0 = time.perf_counter()
    params = fam.demo_training_data(str(Path(tmp) / "landing"), args.participants, seed=args.seed)
    dataset = fam.prepare(params, str(Path(tmp) / "run"), "bench")
    features = dataset["features"]
    frame = storage.read_parquet(dataset["windows"])
    ref = frame.loc[frame["split"] == "train", features]
    calm, moved = [], []
    for i in range(args.batches):
        for shifted, out in ((False, calm), (True, moved)):
            day = dt.date(2026, 1, 1) + dt.timedelta(days=2 * i + shifted)
            out.append(read_batch(fam.demo_batch(day, args.rows, seed=100 + i, shifted=shifted)).windows)
    drift_figures = {}
    for bins in sorted({spec.drift.bins, 10}):
        drift_figures[f"bins_{bins}"] = {"undrifted": psi_table(ref, calm, features, spec, bins),
                                         "drifted": psi_table(ref, moved, features, spec, bins)}

    # the classifier (spec settings) and a band-power logistic regression, same participants
    cfg = pipeline.run_config(spec, {})
    t1 = time.perf_counter()
    ck = pretrain(read_primary(dataset["primary"]), str(Path(tmp) / "pretrained"), d_model=cfg.d_model,
                  n_layers=cfg.n_layers, mask_ratio=cfg.mask_ratio, style=cfg.style, backbone=cfg.backbone,
                  epochs=cfg.pretrain_epochs, batch_size=cfg.pretrain_batch_size, lr=cfg.pretrain_lr, seed=cfg.seed,
                  participants=split_participants(dataset)["train"])
    sets = {w: load_split(dataset, w) for w in ("train", "val", "test")}
    held = WindowSet(np.concatenate([sets["val"].x, sets["test"].x]), np.concatenate([sets["val"].y, sets["test"].y]),
                     np.concatenate([sets["val"].participants, sets["test"].participants]))
    pooled = {}
    for pool in ("mean", "mean_energy"):
        res = train_classifier({"train": sets["train"], "val": sets["val"], "held_out": held},
                               str(Path(tmp) / f"model_{pool}"), layout=pipeline.layout(dataset), checkpoint=ck["path"],
                               epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                               dropout=cfg.dropout, seed=cfg.seed, pool=pool)
        pooled[pool] = {"window_auc": round(res["metrics"]["held_out_window_auc"], 3),
                        "participant_auc": round(res["metrics"]["held_out_participant_auc"], 3)}
    mamba_s = time.perf_counter() - t1
    tr = (frame["split"] == "train").to_numpy()
    scaler = StandardScaler().fit(frame.loc[tr, features])
    lr = LogisticRegression(C=0.3, max_iter=1000).fit(scaler.transform(frame.loc[tr, features]), frame.loc[tr, "Remission"])
    p = lr.predict_proba(scaler.transform(frame.loc[~tr, features]))[:, 1]
    lr_auc = float(roc_auc_score(frame.loc[~tr, "Remission"], p))

    result = {
        "benchmark": "eeg_drift_thresholds",
        "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                    "load_avg_1m": round(os.getloadavg()[0], 2)},
        "data": {"participants": args.participants, "seconds_each": 60, "windows": dataset["n_windows"],
                 "train_windows": int(tr.sum()), "batches": args.batches, "windows_per_batch": args.rows},
        "spec_drift": spec.drift.model_dump(),
        "psi": drift_figures,
        "classifier_window_auc_held_out": {
            "mamba2_frozen_backbone_by_pooling": pooled,
            "band_power_logistic_regression": round(lr_auc, 3),
            "held_out_windows": int(len(held)), "mamba2_seconds": round(mamba_s, 1),
            "mamba2_settings": {"d_model": cfg.d_model, "n_layers": cfg.n_layers, **cfg.backbone,
                                "pretrain_epochs": cfg.pretrain_epochs, "epochs": cfg.epochs}},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for key, fig in drift_figures.items():
        for kind in ("undrifted", "drifted"):
            f = fig[kind]
            print(f"{key} {kind:9}: max PSI per batch {f['max_psi_range'][0]:.2f}..{f['max_psi_range'][1]:.2f}, "
                  f"at most {f['most_features_at_threshold']} features >= threshold {spec.drift.threshold}")
    c = result["classifier_window_auc_held_out"]
    for pool, fig in pooled.items():
        print(f"held-out window AUC, Mamba-2 frozen backbone, pooling {pool:11}: {fig['window_auc']:.3f} "
              f"(participants {fig['participant_auc']:.3f})")
    print(f"held-out window AUC, band-power logistic regression: {c['band_power_logistic_regression']:.3f}")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
