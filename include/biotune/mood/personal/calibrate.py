"""Per-person calibration from the population champions, with a time-split gate and fallback.

For one person and task (depressive / manic / hypomanic episode tomorrow):

1. The person's labelled days in date order (dataset.person_days). Fewer than
   ``min_days``: the population serves, reason recorded.
2. Time split, never random: the earliest days *fit* the personal models, the next ones
   (*val*) stop training early and calibrate, the latest ``test_fraction`` (*test*) judge.
3. Personal XGBoost: boosting continues from the population booster (``xgb.train(...,
   xgb_model=...)``) on the fit days with sample weight ``person_weight`` (2.0), at most
   ``rounds`` trees, early stopping on val.
4. Personal PAT: a LoRA adapter (peft, rank ``lora_r`` on the attention query/value
   projections) on a copy of the population PAT, plus its head, trained on the fit weeks with
   early stopping on val. Only the adapter (LoRA A/B and head: ~100 KB) is kept.
5. Both sides are scored on the same test days as ensembles: the weighted mean of the
   components' logits, with the population's weights (a person's few days are too noisy to
   re-weigh them). The personal ensemble is promoted only when its test AUC beats the
   population's by ``margin``; otherwise the population serves and the reason is recorded.
   Then the serving side's Platt calibrators (ensemble score and each component) and its
   thresholds are fitted on the days held out from its fitting (personal: val + test; population:
   all), with bootstrap replicates for the interval. Positive only where the false-positive
   rate's upper bound (``personal_fpr_confidence``, serially correlated days) is within
   ``personal_fpr_limit``; between that and the point threshold (``personal_max_fpr``) the day is
   withheld as uncertain (thresholds.py).
6. Everything is written encrypted under the person's store (``calibration/<task>/``):
   outcome.json (decision, reasons, metrics, population version + fingerprint), adapter.npz
   and xgb.json when personal. Serving refuses an adapter whose population fingerprint is not
   the current champion's.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import math
import time
from dataclasses import dataclass, field

import numpy as np

from biotune.errors import InputFormatError
from biotune.mood.personal.names import SLEEP_FEATURE_NAMES
from biotune.mood.personal import platt, thresholds
from biotune.mood.personal.population import (PopulationModels, auc, calibrator_key,
                                               ensemble_score)

OUTCOME, ADAPTER, XGB = "outcome.json.enc", "adapter.npz.enc", "xgb.json.enc"
DEFAULTS = {"personal_min_days": 30, "personal_test_fraction": 0.4, "personal_margin": 0.02,
            "personal_min_auc": 0.6,  # the person spec's gate.min_absolute (jobs.calibrate passes it)
            "personal_weight": 2.0, "personal_rounds": 40, "lora_r": 8, "personal_max_fpr": 0.05,
            # positive only where the FPR's upper bound (serially correlated days, thresholds.py) is met
            "personal_fpr_limit": 0.10, "personal_fpr_confidence": 0.9}


def calibration_file(task: str, name: str) -> str:
    return f"calibration/{task}/{name}"


@dataclass
class Outcome:
    person: str
    task: str
    decision: str                      # "personal" or "population"
    reasons: list[str]
    population_version: str
    population_fingerprint: str
    n_days: int = 0
    split: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    weights: dict = field(default_factory=dict)
    threshold: float = 0.5                              # positive at or above
    uncertain_from: float | None = None                 # withheld from here up to ``threshold``
    fpr_bound: dict = field(default_factory=dict)       # thresholds.ThresholdChoice of the serving threshold
    calibrators: dict = field(default_factory=dict)     # serving side: component -> Platt params
    lora: dict | None = None
    seconds: dict = field(default_factory=dict)
    adapter_bytes: int = 0
    calibrated_at: str = ""
    artifacts: dict = field(default_factory=dict)       # name -> sha256 of the stored file
    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _policy(spec_params: dict | None) -> dict:
    out = dict(DEFAULTS)
    out.update({k: v for k, v in (spec_params or {}).items() if k in DEFAULTS})
    return out


def split_by_time(n: int, test_fraction: float, val_fraction: float = 0.25) -> tuple[slice, slice, slice]:
    n_test = int(math.ceil(test_fraction * n))
    rest = n - n_test
    n_val = max(int(math.ceil(val_fraction * rest)), 5)
    return slice(0, rest - n_val), slice(rest - n_val, rest), slice(rest, n)


# ----------------------------------------------------------------------------- personal models
def boost_on(population_xgb, X, y, Xv, yv, *, weight: float, rounds: int, eta: float = 0.1, seed: int = 0):
    """Continue boosting the population booster on the person's days (weighted), early stop on val."""
    import xgboost as xgb

    base = population_xgb.get_booster()
    depth = json.loads(base.save_config())["learner"]["gradient_booster"].get("tree_train_param", {}).get(
        "max_depth", "3")
    params = {"objective": "binary:logistic", "eta": eta, "max_depth": int(depth), "eval_metric": "logloss",
              "seed": seed, "nthread": 2, "tree_method": "hist"}
    dfit = xgb.DMatrix(X, label=y, weight=np.full(len(y), float(weight)), feature_names=list(SLEEP_FEATURE_NAMES))
    dval = xgb.DMatrix(Xv, label=yv, feature_names=list(SLEEP_FEATURE_NAMES))
    n_base = base.num_boosted_rounds()
    # a fresh Booster from the saved model: the champion's training config (e.g. eval_metric=auc, which
    # warns and stops nothing on single-class validation days) is not carried into the person's rounds
    start = xgb.Booster(model_file=bytearray(base.save_raw("ubj")))
    booster = xgb.train(params, dfit, num_boost_round=int(rounds), xgb_model=start,
                        evals=[(dval, "val")], early_stopping_rounds=10, verbose_eval=False)
    best = getattr(booster, "best_iteration", None)
    if best is not None and best + 1 < booster.num_boosted_rounds():
        booster = booster[: max(best + 1, n_base)]
    return booster


def _lora(model, r: int, alpha: int):
    from peft import LoraConfig, inject_adapter_in_model

    inject_adapter_in_model(LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=["query", "value"],
                                       bias="none"), model)
    return model


def adapter_state(model, train_head: bool) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()
            if "lora_" in k or (train_head and k.startswith("head."))}


def train_adapter(population_pat, x_fit, y_fit, x_val, y_val, *, r: int = 8, epochs: int = 8, lr: float = 2e-3,
                  batch_size: int = 16, train_head: bool = True, seed: int = 0):
    """LoRA (query/value) + head on a copy of the population PAT; returns (model, adapter arrays, history)."""
    import torch
    from torch import nn

    from biotune.mood.pat import configure_threads

    configure_threads()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = _lora(copy.deepcopy(population_pat), r, 2 * r)
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name or (train_head and name.startswith("head.")))
    xt, xv = torch.from_numpy(np.ascontiguousarray(x_fit)), torch.from_numpy(np.ascontiguousarray(x_val))
    yt = torch.from_numpy(np.asarray(y_fit, np.float32))
    n_pos = float(yt.sum())
    pos_weight = torch.tensor((len(yt) - n_pos) / max(n_pos, 1.0))
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    use_auc = len(np.unique(y_val)) == 2
    best, best_state, history = -np.inf, None, []
    yv_t = torch.from_numpy(np.asarray(y_val, np.float32))
    for _ in range(int(epochs)):
        model.train()
        order = rng.permutation(len(xt))
        for i in range(0, len(order), batch_size):
            idx = torch.from_numpy(order[i:i + batch_size])
            loss = loss_fn(model(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            logits = model(xv)
        score = auc(y_val, torch.sigmoid(logits).numpy()) if use_auc else -float(loss_fn(logits, yv_t))
        history.append(score)
        if score > best:
            best, best_state = score, copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return model, adapter_state(model, train_head), history


def _pat_proba(model, x) -> np.ndarray:
    import torch

    model.eval()
    with torch.no_grad():
        return torch.cat([torch.sigmoid(model(torch.from_numpy(np.ascontiguousarray(x[i:i + 64]))))
                          for i in range(0, len(x), 64)]).numpy().astype(np.float64)


# ----------------------------------------------------------------------------- evaluation
def _side_metrics(y, p, choice: "thresholds.ThresholdChoice") -> dict:
    """AUC, and the FPR / TPR of positive answers (a withheld day is not flagged; 'withheld' is its share)."""
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=float)
    pred = p >= choice.threshold
    held = ~pred & (p >= choice.uncertain_from)
    neg, pos = (y == 0), (y == 1)
    return {"auc": auc(y, p), "fpr": float(pred[neg].mean()) if neg.any() else float("nan"),
            "tpr": float(pred[pos].mean()) if pos.any() else float("nan"), "n": int(len(y)),
            "withheld": float(held.mean()) if len(y) else float("nan"),
            "prevalence": float(y.mean()) if len(y) else float("nan"), "certified": choice.certified}


def _threshold(y, p, pol: dict, probability: bool = True) -> "thresholds.ThresholdChoice":
    return thresholds.choose(y, p, max_fpr=pol["personal_max_fpr"], fpr_limit=pol["personal_fpr_limit"],
                             confidence=pol["personal_fpr_confidence"], probability=probability)


def component_weights(population: PopulationModels, components) -> dict[str, float]:
    """The population's ensemble weights (set on many validation persons) for the components present.
    A person's few validation days are too noisy to re-weigh PAT against XGBoost."""
    w = {k: float(population.weights.get(k, 1.0)) for k in components}
    total = sum(w.values()) or 1.0
    return {k: v / total for k, v in w.items()}


def calibrate_days(days, population: PopulationModels, *, policy: dict | None = None, pat_epochs: int = 8,
                   pat_lr: float = 2e-3, pat_stride: int = 1, train_head: bool = True,
                   seed: int = 0) -> tuple[Outcome, dict]:
    """Calibrate one person's ``PersonDays`` for one task. Returns (outcome, artifacts) where
    artifacts holds ``adapter`` (numpy arrays) and ``xgb`` (booster JSON bytes) when personal."""
    pol = _policy(policy)
    out = Outcome(days.person, days.task, "population", [], population.version, population.fingerprint,
                  n_days=len(days), lora={"r": int(pol["lora_r"]), "alpha": 2 * int(pol["lora_r"]),
                                          "target_modules": ["query", "value"], "head": bool(train_head)},
                  calibrated_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    artifacts: dict = {}
    if len(days) < pol["personal_min_days"]:
        out.reasons.append(f"only {len(days)} labelled days for {days.task} (needs {pol['personal_min_days']}): "
                           "the population model serves")
        return _fallback_calibrators(out, days, population, seed, pol), artifacts
    fit, val, test = split_by_time(len(days), pol["personal_test_fraction"])
    F, V, T = days.take(fit), days.take(val), days.take(test)
    out.split = {"fit": [str(F.dates[0]), str(F.dates[-1]), len(F)], "val": [str(V.dates[0]), str(V.dates[-1]), len(V)],
                 "test": [str(T.dates[0]), str(T.dates[-1]), len(T)]}
    for name, part in (("earlier (fit)", F), ("latest (test)", T)):
        if len(np.unique(part.y)) < 2:
            out.reasons.append(f"the person's {name} days hold one class only for {days.task}: the personal model "
                               "cannot be trained and judged; the population model serves")
            return _fallback_calibrators(out, days, population, seed, pol), artifacts
    t0 = time.perf_counter()
    pop_xgb = population.xgb.get_booster()
    import xgboost as xgb

    def xgb_p(booster, part):
        return booster.predict(xgb.DMatrix(part.X, feature_names=list(SLEEP_FEATURE_NAMES)))

    booster = boost_on(population.xgb, F.X, F.y, V.X, V.y, weight=pol["personal_weight"],
                       rounds=pol["personal_rounds"], seed=seed)
    pop = {"xgb": (xgb_p(pop_xgb, V), xgb_p(pop_xgb, T))}
    per = {"xgb": (xgb_p(booster, V), xgb_p(booster, T))}
    out.seconds["xgb"] = round(time.perf_counter() - t0, 3)
    use_pat = population.pat is not None and days.weeks is not None
    if use_pat:
        t0 = time.perf_counter()
        sF, sV, sT = (population.scaler.transform(p.weeks) for p in (F, V, T))
        # adjacent weeks share 6 of 7 days: a stride thins the fit weeks at little loss, much less time
        k = np.arange(len(F) - 1, -1, -max(int(pat_stride), 1))[::-1]
        model, adapter, hist = train_adapter(population.pat, sF[k], F.y[k], sV, V.y, r=int(pol["lora_r"]),
                                             epochs=pat_epochs, lr=pat_lr, train_head=train_head, seed=seed)
        pop["pat"] = (_pat_proba(population.pat, sV), _pat_proba(population.pat, sT))
        per["pat"] = (_pat_proba(model, sV), _pat_proba(model, sT))
        out.seconds["pat"] = round(time.perf_counter() - t0, 3)
        buf = io.BytesIO()
        np.savez(buf, **adapter)
        artifacts["adapter"] = buf.getvalue()
        out.adapter_bytes = len(artifacts["adapter"])
    else:
        out.reasons.append("PAT not used: " + ("no activity data (sleep-only input)" if days.weeks is None
                                               else "no population PAT"))
    # the gate compares calibration-free scores: the weighted mean of the components' logits
    # the false-positive limit is set before the test days: for the population on every earlier day (it
    # never saw this person), for the personal models on the validation days (they were fit on the rest)
    w = component_weights(population, pop)
    pop_fit = {"xgb": xgb_p(pop_xgb, F)}
    if use_pat:
        pop_fit["pat"] = _pat_proba(population.pat, sF)
    metrics, scores = {}, {}
    for side, comps in (("population", pop), ("personal", per)):
        sv = ensemble_score({k: v[0] for k, v in comps.items()}, w)
        st = ensemble_score({k: v[1] for k, v in comps.items()}, w)
        if side == "population":
            thr = _threshold(np.concatenate([F.y, V.y]), np.concatenate([ensemble_score(pop_fit, w), sv]), pol,
                             probability=False)
        else:
            thr = _threshold(V.y, sv, pol, probability=False)
        metrics[side] = {**_side_metrics(T.y, st, thr), "components": {k: auc(T.y, v[1]) for k, v in comps.items()}}
        scores[side] = (sv, st)
    out.metrics = metrics
    gain = metrics["personal"]["auc"] - metrics["population"]["auc"]
    # beating a population that is worse than chance on this person is not enough: the personal model
    # must be good on its own too
    beats = bool(np.isfinite(gain) and gain >= pol["personal_margin"])
    weak = not metrics["personal"]["auc"] >= pol["personal_min_auc"]
    if beats and not weak:
        out.decision = "personal"
        out.reasons.append(f"personal AUC {metrics['personal']['auc']:.3f} beats the population's "
                           f"{metrics['population']['auc']:.3f} by {gain:+.3f} on the latest {len(T)} days "
                           f"(needs {pol['personal_margin']:+.3f})")
        artifacts["xgb"] = bytes(booster.save_raw("json"))
    else:
        out.reasons.append(
            f"personal AUC {metrics['personal']['auc']:.3f} beats the population's "
            f"{metrics['population']['auc']:.3f} but misses the minimum {pol['personal_min_auc']:.3f} "
            "on the latest days: the population model serves" if beats else
            f"personal AUC {metrics['personal']['auc']:.3f} does not beat the population's "
            f"{metrics['population']['auc']:.3f} by {pol['personal_margin']:+.3f} "
            f"(gain {gain:+.3f}): the population model serves")
        artifacts.pop("adapter", None)
        out.adapter_bytes = 0
    # serving calibrators on every day held out from the serving side's fitting: val + test for the personal
    # models, every day for the population (it never saw this person; three times the negative days make
    # the FPR bound of the threshold reachable): each component (for display and the disagreement flag),
    # the ensemble score, and a threshold whose FPR bound is met
    if out.decision == "personal":
        y_hold = np.concatenate([V.y, T.y])
        held = {k: np.concatenate(v) for k, v in per.items()}
    else:
        y_hold = np.concatenate([F.y, V.y, T.y])
        held = {k: np.concatenate([pop_fit[k], *v]) for k, v in pop.items()}
    cal = {k: platt.fit(p, y_hold, seed=seed) for k, p in held.items()}
    score = platt.from_logit(ensemble_score(held, w))
    if len(held) > 1:
        cal["ensemble"] = platt.fit(score, y_hold, seed=seed)
    out.calibrators = {k: v.tolist() for k, v in cal.items()}
    out.weights = w
    _set_threshold(out, _threshold(y_hold, platt.apply(cal[calibrator_key(held)], score)[0], pol))
    return out, artifacts


def _set_threshold(out: Outcome, choice: "thresholds.ThresholdChoice") -> None:
    # kept out of ``reasons``: serving shows the gate's reason (the last one) with every prediction
    out.threshold, out.uncertain_from = choice.threshold, choice.uncertain_from
    out.fpr_bound = {**choice.as_dict(), "note": choice.describe()}


def _fallback_calibrators(out: Outcome, days, population: PopulationModels, seed: int, pol: dict) -> Outcome:
    """Population serving. The population never saw this person, so every labelled day of theirs is
    held out for it: with enough days of both classes its calibrators and threshold are fitted on
    them; otherwise the population's own (fitted on its validation persons) serve."""
    comps = ["xgb"] + (["pat"] if population.pat is not None and days.weeks is not None else [])
    out.weights = component_weights(population, comps)
    if len(days) >= 20 and len(np.unique(days.y)) == 2:
        import xgboost as xgb

        raw = {"xgb": population.xgb.get_booster().predict(xgb.DMatrix(days.X, feature_names=list(SLEEP_FEATURE_NAMES)))}
        if "pat" in comps:
            raw["pat"] = _pat_proba(population.pat, population.scaler.transform(days.weeks))
        cal = {k: platt.fit(p, days.y, seed=seed) for k, p in raw.items()}
        score = platt.from_logit(ensemble_score(raw, out.weights))
        if len(raw) > 1:
            cal["ensemble"] = platt.fit(score, days.y, seed=seed)
        out.calibrators = {k: v.tolist() for k, v in cal.items()}
        out.reasons.append(f"population calibrated on the person's {len(days)} labelled days")
        _set_threshold(out, _threshold(days.y, platt.apply(cal[calibrator_key(raw)], score)[0], pol))
        return out
    keys = comps + (["ensemble"] if len(comps) > 1 else [])
    out.calibrators = {k: v for k, v in population.calibrators.items() if k in keys}
    out.threshold = population.threshold
    return out


# ----------------------------------------------------------------------------- the stored step
def calibrate_person(person: str, task: str, population: PopulationModels, *, base: str | None = None,
                     policy: dict | None = None, labels_uri: str | None = None, save: bool = True,
                     **kwargs) -> Outcome:
    """Load the person's data and labels, calibrate, write the outcome (and adapter) encrypted."""
    from biotune.mood.personal import crypto, labels, store
    from biotune.mood.personal.dataset import daily_table, person_days

    if task not in labels.TASKS:
        raise InputFormatError(f"unknown task {task!r}", where="task", fix=f"use one of {', '.join(labels.TASKS)}")
    key = crypto.pseudonym(person)
    series = store.read_series(key, base)
    table = daily_table(key, series, base)
    days = person_days(key, task, series, table, labels.list_labels(key, uri=labels_uri))
    t0 = time.perf_counter()
    outcome, artifacts = calibrate_days(days, population, policy=policy, **kwargs)
    outcome.seconds["total"] = round(time.perf_counter() - t0, 3)
    if save:
        # artifacts first, the outcome last: the outcome names the digests of the files it goes with
        import hashlib

        outcome.artifacts = {k: hashlib.sha256(v).hexdigest() for k, v in artifacts.items()}
        if "adapter" in artifacts:
            store.write_file(key, calibration_file(task, ADAPTER), artifacts["adapter"], base)
        if "xgb" in artifacts:
            store.write_file(key, calibration_file(task, XGB), artifacts["xgb"], base)
        store.write_file(key, calibration_file(task, OUTCOME), json.dumps(outcome.as_dict(), default=str).encode(),
                         base)
    return outcome


def read_outcome(person: str, task: str, base: str | None = None) -> dict | None:
    from biotune.mood.personal import store

    name = calibration_file(task, OUTCOME)
    if not store.exists(person, name, base):
        return None
    return json.loads(store.read_file(person, name, base))
