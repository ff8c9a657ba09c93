"""Daily prediction per person and task: PAT + XGBoost ensemble, calibrated, with an interval.

Serving imports numpy, xgboost and cryptography only (no torch, no pandas): the PAT runs in
numpy with the person's LoRA adapter merged into the population weights (patnp.py).

For each task the person's calibration outcome decides which side serves:

- ``personal``: the adapter and the continued booster, if the outcome's population
  fingerprint is the current champion's. Otherwise the population serves and the reason says
  so: an adapter is never combined with a population it was not trained on.
- ``population``: the champions, with the person's calibrators when the calibration could fit
  them, else the population's own; also when the person was never calibrated.

The ensemble score is the weighted mean of the components' logits (calibrate.py); its Platt
calibrator gives the probability, and the 5th-95th percentile over the calibrator's bootstrap
replicates the interval. Each component is also shown calibrated on its own. The answer is ``uncertain`` (withheld) when the interval is wider than
``max_width``; ``disagreement`` flags PAT and XGBoost more than ``disagree_at`` apart or on
opposite sides of the threshold.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
from dataclasses import asdict, dataclass

import numpy as np

from biotune.errors import InputFormatError, MissingInputError
from biotune.mood.personal import patnp, platt, thresholds
from biotune.mood.personal.population import ServingPopulation, scale

NO_BAND = (None, "")       # the population's own threshold: no withheld band
MIN_WEEK_DAYS = 4          # the PAT scores a week only when this many of its days hold data


@dataclass
class Prediction:
    person: str
    task: str
    date: str
    probability: float | None
    interval: tuple[float, float] | None
    decision: str                  # positive / negative / uncertain
    served_by: str                 # personal / population
    reason: str
    components: dict
    disagreement: bool
    threshold: float
    population_version: str

    def as_dict(self) -> dict:
        return asdict(self)


def _personal_parts(person, task, outcome, pop: ServingPopulation, base):
    """(booster, pat weights) of the person's calibrated models, checked against the outcome's digests."""
    from biotune.mood.personal import store
    from biotune.mood.personal.calibrate import ADAPTER, XGB, calibration_file
    from biotune.mood.personal.xgbnp import Forest

    def read(name, key):
        data = store.read_file(person, calibration_file(task, name), base)
        if hashlib.sha256(data).hexdigest() != outcome.get("artifacts", {}).get(key):
            raise InputFormatError(f"the stored {key} does not match its calibration outcome", where=name,
                                   fix="re-run the calibration for this person")
        return data

    booster = Forest.from_json(read(XGB, "xgb"), where=calibration_file(task, XGB))
    weights = pop.pat_weights
    if "adapter" in outcome.get("artifacts", {}) and pop.pat_weights is not None:
        with np.load(io.BytesIO(read(ADAPTER, "adapter")), allow_pickle=False) as z:
            adapter = {k: z[k] for k in z.files}
        lora = outcome.get("lora") or {}
        weights = patnp.merge_lora(pop.pat_weights, adapter, lora.get("alpha", 16) / lora.get("r", 8))
    return booster, weights


def _choose(person, task, pop: ServingPopulation, base):
    from biotune.mood.personal.calibrate import read_outcome

    outcome = read_outcome(person, task, base)
    if outcome is None:
        return ("population", "not calibrated yet: the population model serves", pop.booster, pop.pat_weights,
                pop.calibrators, pop.weights, pop.threshold, NO_BAND)
    cal, w, thr = outcome["calibrators"], outcome["weights"], outcome["threshold"]
    band = outcome.get("uncertain_from"), (outcome.get("fpr_bound") or {}).get("note", "")
    if outcome["decision"] == "personal":
        if outcome["population_fingerprint"] != pop.fingerprint:
            return ("population", f"the personal models were calibrated on population {outcome['population_version']} "
                    f"({outcome['population_fingerprint'][:8]}), the champion is {pop.version} "
                    f"({pop.fingerprint[:8]}): re-calibrate; the population model serves", pop.booster,
                    pop.pat_weights, pop.calibrators, pop.weights, pop.threshold, NO_BAND)
        booster, weights = _personal_parts(person, task, outcome, pop, base)
        return "personal", outcome["reasons"][-1], booster, weights, cal, w, thr, band
    if outcome["population_fingerprint"] != pop.fingerprint:
        cal, w, thr, band = pop.calibrators, pop.weights, pop.threshold, NO_BAND   # fits for another model
    return "population", outcome["reasons"][0], pop.booster, pop.pat_weights, cal, w, thr, band


def predict_day(person: str, task: str, pop: ServingPopulation, features: np.ndarray, week: np.ndarray | None,
                *, date: str = "", base: str | None = None, max_width: float = 0.4,
                disagree_at: float = 0.3) -> Prediction:
    """One person-day for one task from its feature row [36] and activity week [10080] (or None)."""
    served, reason, booster, pat_w, cal, weights, thr, (uncertain_from, bound_note) = _choose(person, task, pop, base)
    raw: dict[str, float] = {}
    if np.isfinite(features).any():
        raw["xgb"] = float(booster.predict_proba(features[None, :])[0])
    notes = []
    if week is not None and pat_w is not None and "pat" in cal:
        days_with_data = np.isfinite(week.reshape(7, 1440)).any(axis=1).sum()
        if days_with_data >= MIN_WEEK_DAYS:
            x = scale(pop.scaler_mean, pop.scaler_std, week[None, :])
            raw["pat"] = float(patnp.predict_proba(pat_w, pop.pat_config, x)[0])
        else:
            notes.append(f"PAT skipped: {days_with_data} of 7 days hold activity")
    if not raw:
        return Prediction(person, task, date, None, None, "uncertain", served, reason + "; no data for this day",
                          {}, False, thr, pop.version)
    from biotune.mood.personal.population import calibrator_key, ensemble_score

    key = calibrator_key(raw)
    if key not in cal:
        raise InputFormatError(f"no {key} calibrator for {task}", where=f"person {person}",
                               fix="re-run the calibration for this person")
    comps = {k: round(float(platt.apply(np.asarray(cal[k]), np.array([p]))[0][0]), 4) for k, p in raw.items() if k in cal}
    score = platt.from_logit(ensemble_score({k: np.array([p]) for k, p in raw.items()}, weights))
    c, reps = platt.apply(np.asarray(cal[key]), score)
    prob = float(c[0])
    lo, hi = platt.interval(reps)
    width = float(hi[0] - lo[0])
    disagree = len(comps) == 2 and (abs(comps["pat"] - comps["xgb"]) > disagree_at
                                    or (comps["pat"] >= thr) != (comps["xgb"] >= thr))
    if width > max_width:
        decision = "uncertain"
        notes.append(f"interval {lo[0]:.2f}-{hi[0]:.2f} wider than {max_width:.2f}: withheld")
    else:
        decision = thresholds.decide(prob, thr, uncertain_from)
        if decision == "uncertain":
            notes.append(f"P={prob:.2f} is below the threshold whose false-positive rate is bounded: withheld"
                         + (f" ({bound_note})" if bound_note else ""))
    if notes:
        reason = reason + "; " + "; ".join(notes)
    return Prediction(person, task, date, round(prob, 4), (round(float(lo[0]), 4), round(float(hi[0]), 4)), decision,
                      served, reason, comps, bool(disagree), round(float(thr), 4), pop.version)


def predict(person: str, populations: dict[str, ServingPopulation], date: str | dt.date | None = None, *,
            base: str | None = None, **kwargs) -> list[Prediction]:
    """Predictions for every task in ``populations`` on ``date`` (default: the last day with data)."""
    from biotune.mood.personal import crypto, store
    from biotune.mood.personal.dataset import daily_table

    key = crypto.pseudonym(person)
    if key not in store.known_persons(base):
        raise MissingInputError(f"unknown person {key}: no imported data", where="--person",
                                fix="import the person's data first: biotune mood import-health EXPORT.zip --person P")
    series = store.read_series(key, base)
    table = daily_table(key, series, base)
    if date is None:
        ok = np.flatnonzero(table.valid)
        if not len(ok):
            raise MissingInputError(f"person {key} has no day with enough data", where="--date",
                                    fix="import more data (a day needs 3/4 of its minutes known)")
        i = int(ok[-1])
    else:
        d = date if isinstance(date, dt.date) else _parse_date(date)
        i = table.index_of(d)
        if i is None:
            raise MissingInputError(f"no data for {d} (the record covers {table.dates[0]}..{table.dates[-1]})",
                                    where="--date", fix="pick a date inside the imported record")
    day = table.dates[i]
    week = None
    if series.source != "sleep_csv":
        week = series.week(int((day - np.datetime64(series.start_date, "D")).astype(int)))[0]
    return [predict_day(key, task, pop, table.X[i], week, date=str(day), base=base, **kwargs)
            for task, pop in populations.items()]


def _parse_date(text) -> dt.date:
    try:
        return dt.date.fromisoformat(str(text))
    except ValueError:
        raise InputFormatError(f"not a date: {text!r}", where="--date", fix="write YYYY-MM-DD") from None


def load_populations(tasks, directory: str | None = None) -> dict[str, ServingPopulation]:
    """Serving populations per task from ``<directory>/<task>`` (default: the lake's population folder)."""
    from biotune import storage
    from biotune.mood.personal.population import default_dir, load_serving

    out = {}
    for task in tasks:
        d = storage.join(directory, task) if directory else default_dir(task)
        out[task] = load_serving(d)
    return out


def format_prediction(p: Prediction) -> str:
    if p.probability is None:
        return f"{p.task:10} {p.date}  uncertain        ({p.served_by}: {p.reason})"
    flag = "  DISAGREE" if p.disagreement else ""
    comps = " ".join(f"{k}={v:.2f}" for k, v in p.components.items())
    return (f"{p.task:10} {p.date}  P={p.probability:.2f} [{p.interval[0]:.2f}, {p.interval[1]:.2f}]  "
            f"{p.decision:9} {p.served_by:10} ({comps}){flag}\n{'':12}{p.reason}")


def json_lines(preds: list[Prediction]) -> str:
    return json.dumps([p.as_dict() for p in preds], indent=2, default=str)
