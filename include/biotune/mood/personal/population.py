"""Population episode models per task (PAT + XGBoost), as calibration takes them and serving reads them.

A ``PopulationModels`` holds the champions a person is calibrated from: a PAT classifier with
its per-minute scaler and an XGBClassifier on the 36 features, a version string (the registry
version) and a fingerprint of the weights themselves, so an adapter trained on one population
is never combined with another. ``train_population`` builds them from many persons' labelled
days (the generated multi-person data, when no mood_ml pickles or NHANES champions are given):
persons are split train/validation (never days of one person on both sides), XGBoost with early
stopping, PAT fine-tuned with ``biotune.mood.pat.finetune``, then on the validation persons:
ensemble weights (how far each component's AUC is above chance), the ensemble score (weighted
mean of the components' logits), Platt calibrators (per component, for display, and for the
ensemble score) and the decision threshold (false-positive rate <= 10%).

``save`` writes a directory (pat.npz with the architecture, scaler.npz, xgb.json,
population.json) that ``load_serving`` reads with numpy and xgboost only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from biotune.errors import InputFormatError, MissingInputError
from biotune.mood.personal.names import SLEEP_FEATURE_NAMES
from biotune.mood.personal import platt

MAX_FPR = 0.10


def default_dir(task: str) -> str:
    from biotune import storage

    return storage.lake_path("models", "mood-personal", "population", task)


def auc(y, p) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y).astype(int)
    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")


def ensemble_weights(aucs: dict[str, float]) -> dict[str, float]:
    """Weights proportional to how far each component's validation AUC is above chance."""
    raw = {k: max((v if np.isfinite(v) else 0.5) - 0.5, 0.02) for k, v in aucs.items()}
    total = sum(raw.values())
    return {k: v / total for k, v in raw.items()}


def ensemble_score(raw: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """Weighted mean of the components' logits (weights renormalized over the components present)."""
    w = {k: float(weights.get(k, 1.0)) for k in raw}
    total = sum(w.values()) or 1.0
    return sum((w[k] / total) * np.log(np.clip(p, 1e-6, 1 - 1e-6) / np.clip(1 - np.asarray(p), 1e-6, 1))
               for k, p in raw.items())


def calibrator_key(components) -> str:
    """The calibrator of an ensemble of these components: 'ensemble' for PAT + XGBoost, else the one."""
    comps = sorted(components)
    return "ensemble" if len(comps) > 1 else comps[0]


def choose_threshold(y, p, max_fpr: float = MAX_FPR, probability: bool = True) -> float:
    """The lowest threshold whose false-positive rate stays within ``max_fpr``. For probabilities it
    is kept in [0.05, 0.95] (0.5 without both classes); a raw score gets no such bounds."""
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=float)
    neg = np.sort(p[y == 0])
    if not len(neg):
        return 0.5 if probability else float(np.max(p)) if len(p) else 0.0
    k = int(np.floor(max_fpr * len(neg)))           # negatives allowed at or above the threshold (no positives needed)
    t = float(neg[len(neg) - k - 1] + 1e-9)
    return float(min(max(t, 0.05), 0.95)) if probability else t


def xgb_fingerprint(booster) -> str:
    return hashlib.sha256(bytes(booster.save_raw("ubj"))).hexdigest()


def pat_fingerprint(state: dict[str, np.ndarray] | None, mean, std) -> str:
    h = hashlib.sha256()
    for k in sorted(state or {}):
        h.update(k.encode())
        h.update(np.ascontiguousarray(state[k], dtype=np.float32).tobytes())
    if mean is not None:
        h.update(np.ascontiguousarray(mean, np.float64).tobytes() + np.ascontiguousarray(std, np.float64).tobytes())
    return h.hexdigest()


@dataclass
class PopulationModels:
    task: str
    xgb: object                                   # xgboost.XGBClassifier
    pat: object | None = None                     # biotune.mood.pat.PATClassifier
    scaler: object | None = None                  # biotune.mood.pat.PATScaler
    version: str = "unregistered"
    calibrators: dict[str, list] = field(default_factory=dict)   # component -> Platt params
    weights: dict[str, float] = field(default_factory=dict)
    threshold: float = 0.5
    fingerprint: str = ""

    def __post_init__(self) -> None:
        if not self.fingerprint:
            self.fingerprint = compute_fingerprint(self)

    def pat_config(self) -> dict | None:
        return None if self.pat is None else dataclasses.asdict(self.pat.config)


def _pat_numpy(model) -> dict[str, np.ndarray] | None:
    if model is None:
        return None
    from biotune.mood.personal.patnp import to_numpy_state

    return to_numpy_state(model)


def compute_fingerprint(pm: PopulationModels) -> str:
    parts = [xgb_fingerprint(pm.xgb.get_booster())]
    if pm.pat is not None:
        parts.append(pat_fingerprint(_pat_numpy(pm.pat), pm.scaler.mean_, pm.scaler.std_))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]


# ----------------------------------------------------------------------------- training
def _pat_inputs(days, scaler, stride: int):
    xs, ys = [], []
    for d in days:
        if d.weeks is None:
            continue
        idx = np.arange(0, len(d), max(int(stride), 1))
        xs.append(d.weeks[idx])
        ys.append(d.y[idx])
    if not xs:
        return None, None
    x = np.concatenate(xs)
    return (x if scaler is None else scaler.transform(x)), np.concatenate(ys)


def train_population(days: list, task: str, *, pat_config="S", pat_epochs: int = 3, pat_stride: int = 2,
                     pat_lr: float = 5e-4, xgb_params: dict | None = None, val_every: int = 4, seed: int = 0,
                     version: str = "generated", progress=None) -> PopulationModels:
    """Population models for ``task`` from many persons' ``PersonDays`` (person-level validation split)."""
    from xgboost import XGBClassifier

    from biotune.mood import pat

    if len(days) < 2:
        raise InputFormatError("a population needs at least two persons", where="train_population",
                               fix="generate or import more persons")
    val_mask = np.array([i % val_every == val_every - 1 for i in range(len(days))])
    if not val_mask.any():
        val_mask[-1] = True                       # at least one validation person
    has_pos = np.array([bool(d.y.any()) for d in days])
    if not has_pos[val_mask].any() and has_pos[~val_mask].sum() >= 2:
        # no episode among the validation persons: trade one for a training person who has some
        give = int(np.flatnonzero(val_mask)[0])
        take = int(np.flatnonzero(~val_mask & has_pos)[-1])
        val_mask[give], val_mask[take] = False, True
    tr = [d for d, v in zip(days, val_mask) if not v]
    va = [d for d, v in zip(days, val_mask) if v]
    xt, yt = np.concatenate([d.X for d in tr]), np.concatenate([d.y for d in tr])
    xv, yv = np.concatenate([d.X for d in va]), np.concatenate([d.y for d in va])
    for name, y in (("training", yt), ("validation", yv)):
        if len(np.unique(y)) < 2:
            raise InputFormatError(f"the {name} persons hold one class only for {task}", where="train_population",
                                   fix="add persons with and without episodes of this kind")
    params = dict(n_estimators=200, max_depth=3, learning_rate=0.1, subsample=0.8, colsample_bytree=0.8)
    params.update(xgb_params or {})
    xgb = XGBClassifier(**params, eval_metric="auc", early_stopping_rounds=20, random_state=seed, n_jobs=2,
                        tree_method="hist")
    import pandas as pd

    xgb.fit(pd.DataFrame(xt, columns=SLEEP_FEATURE_NAMES), yt,
            eval_set=[(pd.DataFrame(xv, columns=SLEEP_FEATURE_NAMES), yv)], verbose=False)
    p_val = {"xgb": xgb.predict_proba(pd.DataFrame(xv, columns=SLEEP_FEATURE_NAMES))[:, 1]}
    pat_model = scaler = None
    raw_t, _ = _pat_inputs(tr, None, pat_stride)
    if raw_t is not None:
        scaler = pat.PATScaler().fit(raw_t)
        pxt, pyt = _pat_inputs(tr, scaler, pat_stride)
        pxv, pyv = _pat_inputs(va, scaler, pat_stride)
        pat_model, _ = pat.finetune(pxt, pyt, pxv, pyv, size=pat_config, mode="full", epochs=pat_epochs,
                                    batch_size=32, lr=pat_lr, patience=2, seed=seed, progress=progress)
        xv_all = scaler.transform(np.concatenate([d.weeks for d in va]))
        p_val["pat"] = pat.predict_proba(pat_model, xv_all)
    weights = ensemble_weights({k: auc(yv, p) for k, p in p_val.items()})
    calibrators = {k: platt.fit(p, yv, seed=seed).tolist() for k, p in p_val.items()}
    score = platt.from_logit(ensemble_score(p_val, weights))
    if len(p_val) > 1:
        calibrators["ensemble"] = platt.fit(score, yv, seed=seed).tolist()
    ens = platt.apply(np.asarray(calibrators[calibrator_key(p_val)]), score)[0]
    return PopulationModels(task, xgb, pat_model, scaler, version, calibrators, weights,
                            choose_threshold(yv, ens))


# ----------------------------------------------------------------------------- files
def save(pm: PopulationModels, directory: str | os.PathLike) -> str:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    pm.xgb.get_booster().save_model(str(d / "xgb.json"))
    if pm.pat is not None:
        np.savez(d / "pat.npz", **_pat_numpy(pm.pat))
        np.savez(d / "scaler.npz", mean=pm.scaler.mean_, std=pm.scaler.std_, n_fit=np.int64(pm.scaler.n_fit_))
    meta = {"task": pm.task, "version": pm.version, "fingerprint": pm.fingerprint, "calibrators": pm.calibrators,
            "weights": pm.weights, "threshold": pm.threshold, "pat_config": pm.pat_config()}
    tmp = d / ".population.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, d / "population.json")          # last: its presence marks a complete bundle
    return str(d)


def _meta(directory) -> dict:
    path = Path(directory) / "population.json"
    if not path.exists():
        raise MissingInputError(f"no population models at {directory}", where=str(directory),
                                fix="run the population step (train_population + save) or point to its directory")
    return json.loads(path.read_text())


def load(directory: str | os.PathLike) -> PopulationModels:
    """The torch + xgboost objects (for calibration)."""
    import torch
    from xgboost import XGBClassifier

    from biotune.mood.pat import PATClassifier, PATConfig, PATScaler

    meta, d = _meta(directory), Path(directory)
    xgb = XGBClassifier()
    xgb.load_model(str(d / "xgb.json"))
    model = scaler = None
    if meta.get("pat_config"):
        model = PATClassifier(PATConfig(**meta["pat_config"]))
        with np.load(d / "pat.npz") as z:
            model.load_state_dict({k: torch.from_numpy(z[k]) for k in z.files})
        model.eval()
        with np.load(d / "scaler.npz") as z:
            scaler = PATScaler(z["mean"], z["std"], int(z["n_fit"]))
    return PopulationModels(meta["task"], xgb, model, scaler, meta["version"], meta["calibrators"], meta["weights"],
                            meta["threshold"], meta["fingerprint"])


@dataclass
class ServingPopulation:
    """The population models as numpy arrays and a numpy tree ensemble (no torch, no xgboost)."""
    task: str
    version: str
    fingerprint: str
    booster: object                    # xgbnp.Forest
    pat_weights: dict | None
    pat_config: dict | None
    scaler_mean: np.ndarray | None
    scaler_std: np.ndarray | None
    calibrators: dict
    weights: dict
    threshold: float


def load_serving(directory: str | os.PathLike) -> ServingPopulation:
    from biotune.mood.personal.xgbnp import Forest

    meta, d = _meta(directory), Path(directory)
    booster = Forest.from_json((d / "xgb.json").read_bytes(), where=str(d / "xgb.json"))
    weights = mean = std = None
    if meta.get("pat_config"):
        with np.load(d / "pat.npz") as z:
            weights = {k: z[k] for k in z.files}
        with np.load(d / "scaler.npz") as z:
            mean, std = z["mean"], z["std"]
    return ServingPopulation(meta["task"], meta["version"], meta["fingerprint"], booster, weights,
                             meta.get("pat_config"), mean, std, meta["calibrators"], meta["weights"], meta["threshold"])


def scale(mean: np.ndarray, std: np.ndarray, x: np.ndarray) -> np.ndarray:
    """PATScaler.transform in numpy: standardize per minute, missing -> 0."""
    z = (np.asarray(x, dtype=np.float64) - mean) / std
    return np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
