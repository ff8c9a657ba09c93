"""Decisions as pure functions of measured facts: the promotion gate and the retraining rule.

No I/O here, so every rule is unit-tested without MLflow or Airflow, and a decision always
comes with the reasons that produced it.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

from biotune.dates import as_date
from biotune.specs import Gate, ModelSpec


@dataclass(frozen=True)
class Decision:
    yes: bool
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def gate(gate_spec: Gate, challenger: float, champion: float | None, *,
         others: dict[str, float] | None = None) -> Decision:
    """Promote when the challenger reaches ``min_absolute``, every metric in ``minimums`` reaches
    its minimum (``others``: the challenger's metrics by name), and it beats the champion on the
    same held-out data: strictly better when ``min_improvement`` is 0, by at least
    ``min_improvement`` otherwise (a tie never replaces a champion). With no champion only the
    minimums count."""
    metric = gate_spec.metric
    sign = 1.0 if gate_spec.higher_is_better else -1.0
    reasons: list[str] = []
    ok = True
    if challenger is None or (isinstance(challenger, float) and math.isnan(challenger)):
        return Decision(False, [f"challenger {metric} is missing or NaN"])
    if sign * (challenger - gate_spec.min_absolute) >= 0:
        reasons.append(f"{metric} {challenger:.4f} reaches the minimum {gate_spec.min_absolute:.4f}")
    else:
        ok = False
        reasons.append(f"{metric} {challenger:.4f} misses the minimum {gate_spec.min_absolute:.4f}")
    for name, minimum in sorted(gate_spec.minimums.items()):
        value = (others or {}).get(name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            ok = False
            reasons.append(f"{name} was not measured (needs >= {minimum:.4f})")
        elif value >= minimum:
            reasons.append(f"{name} {value:.4f} reaches the minimum {minimum:.4f}")
        else:
            ok = False
            reasons.append(f"{name} {value:.4f} misses the minimum {minimum:.4f}")
    if champion is None or (isinstance(champion, float) and math.isnan(champion)):
        reasons.append("no champion to beat")
    else:
        gain = sign * (challenger - champion)
        need = gate_spec.min_improvement
        beats = gain >= need if need > 0 else gain > 0
        if beats:
            reasons.append(f"{metric} beats the champion's {champion:.4f} by {gain:+.4f} "
                           f"(needs {'+' + format(need, '.4f') if need > 0 else 'strictly more'})")
        else:
            ok = False
            reasons.append(f"{metric} {challenger:.4f} does not beat the champion's {champion:.4f} "
                           f"({'by +' + format(need, '.4f') if need > 0 else 'a tie keeps the champion'}; "
                           f"gain {gain:+.4f})")
    return Decision(ok, reasons)


# ============================================================================ retraining rule


@dataclass(frozen=True)
class RetrainFacts:
    """What the rule needs beyond the drift history.

    ``as_of``: the date evaluated; ``last_retrain``: the latest retrain on or before it (a
    triggered retrain or the champion's registration), None when none is on record;
    ``in_flight``: a run of the fine-tune DAG is queued or running; ``test_error_rate``: the
    champion's error on its held-out test split (None: use the rows' ``reference_error_rate``).
    """

    as_of: dt.date
    last_retrain: dt.date | None = None
    in_flight: bool = False
    test_error_rate: float | None = None
    dag_id: str | None = None  # the fine-tune DAG a yes triggers

    def as_dict(self) -> dict:
        d = asdict(self)
        d["as_of"] = self.as_of.isoformat()
        d["last_retrain"] = self.last_retrain.isoformat() if self.last_retrain else None
        return d


def _latest_per_date(rows: Iterable[dict], model: str) -> dict[dt.date, dict]:
    out: dict[dt.date, dict] = {}
    for r in rows:
        if r.get("model", model) != model:
            continue
        d = as_date(r["date"])
        prev = out.get(d)
        if prev is None or str(r.get("created_at") or "") >= str(prev.get("created_at") or ""):
            out[d] = r
    return out


def drift_streak(rows: Iterable[dict], spec: ModelSpec, as_of) -> tuple[list[dict], list[str]]:
    """The consecutive drifted batches ending at ``as_of`` (newest first, at most
    ``consecutive_batches``) and why the streak stopped.

    Walking back one day at a time from ``as_of``: a batch (status 'ok') with at least
    ``min_drifted_features`` features at PSI >= ``drift.threshold`` extends the streak; a day with
    status 'missing' (no batch landed) is not a batch and is stepped over; a day without a
    measurement, an 'error' day, a batch below the bar, or a batch measured against another model
    version ends it.
    """
    as_of = as_date(as_of)
    by_date = _latest_per_date(rows, spec.name)
    need = spec.retraining.consecutive_batches
    k = spec.retraining.min_drifted_features
    thr = spec.drift.threshold
    streak: list[dict] = []
    notes: list[str] = []
    if not by_date:
        return streak, [f"no drift measurement for {spec.name} on record"]
    earliest = min(by_date)
    day = as_of
    version = None
    skipped: list[str] = []
    while len(streak) < need:
        if day < earliest:
            notes.append(f"no drift measurement before {earliest.isoformat()}")
            break
        row = by_date.get(day)
        if row is None:
            notes.append(f"no drift measurement on {day.isoformat()}")
            break
        status = row.get("status")
        if status in ("missing", "small"):  # no batch, or too small to judge: not a batch of the streak
            skipped.append(day.isoformat() + (" (too small)" if status == "small" else ""))
            day -= dt.timedelta(days=1)
            continue
        if status != "ok":
            notes.append(f"drift could not be measured on {day.isoformat()} ({(row.get('error') or status)[:120]})")
            break
        if version is None:
            version = row.get("model_version")
        elif row.get("model_version") != version:
            notes.append(f"{day.isoformat()} was measured against version {row.get('model_version')}, "
                         f"not the current {version}")
            break
        n = int(row.get("drifted_features") or 0)
        if n < k:
            notes.append(f"{day.isoformat()}: {n} features at PSI >= {thr} (needs {k})")
            break
        streak.append(row)
        day -= dt.timedelta(days=1)
    if skipped:
        notes.append(f"days without a batch stepped over: {', '.join(skipped)}")
    return streak, notes


def retraining_decision(rows: Sequence[dict], spec: ModelSpec, facts: RetrainFacts) -> Decision:
    """Retrain only when every condition holds (thresholds from ``spec.retraining``/``spec.drift``):

    1. drift: PSI >= ``drift.threshold`` in >= ``min_drifted_features`` features for
       ``consecutive_batches`` consecutive batches ending on ``as_of`` (see :func:`drift_streak`);
    2. performance: over those batches (or the latest batch when there is no streak), mean
       confidence < ``min_confidence``, or the error rate on labelled samples exceeds the model's
       test error by >= ``max_error_rate_increase``;
    3. labels: >= ``min_new_labels`` labelled samples since the last retrain (and, when
       ``min_classes`` is set, at least that many distinct classes among them);
    4. time: >= ``min_days_since_last`` days since the last retrain;
    5. no retrain of this model in flight.

    Every condition adds one reason starting with ``yes:`` or ``not:``.
    """
    r = spec.retraining
    as_of = as_date(facts.as_of)
    rows = [x for x in rows if as_date(x["date"]) <= as_of and x.get("model", spec.name) == spec.name]
    reasons: list[str] = []
    ok = True

    # 5. in flight (first: the reason that matters most when it holds)
    if facts.in_flight:
        ok = False
        reasons.append(f"not: a retrain is already in flight ({facts.dag_id or r.dag_id} has a queued or running run)")

    # 1. drift streak
    streak, notes = drift_streak(rows, spec, as_of)
    dates = ", ".join(sorted(as_date(x["date"]).isoformat() for x in streak))
    if len(streak) >= r.consecutive_batches:
        reasons.append(f"yes: {len(streak)} consecutive batches with >= {r.min_drifted_features} features at PSI "
                       f">= {spec.drift.threshold} ({dates})")
    else:
        ok = False
        why = "; ".join(notes) if notes else ""
        reasons.append(f"not: drift in {len(streak)} consecutive batch(es), needs {r.consecutive_batches}"
                       + (f" ({dates})" if dates else "") + (f": {why}" if why else ""))

    # 2. performance
    window = streak or [x for x in sorted(rows, key=lambda x: as_date(x["date"])) if x.get("status") == "ok"][-1:]
    perf_bits: list[str] = []
    degraded = False
    weights = [(x.get("mean_confidence"), int(x.get("n_rows") or 0)) for x in window
               if x.get("mean_confidence") is not None]
    if weights and sum(w for _, w in weights) > 0:
        conf = sum(c * w for c, w in weights) / sum(w for _, w in weights)
        if conf < r.min_confidence:
            degraded = True
            perf_bits.append(f"mean confidence {conf:.3f} < {r.min_confidence}")
        else:
            perf_bits.append(f"mean confidence {conf:.3f} >= {r.min_confidence}")
    else:
        perf_bits.append("no confidence measured")
    # the error rate's sample: labelled rows; a generation model's answers are each judged on their own
    judged = "answers" if spec.task_type == "generation" else "labelled samples"
    count = (lambda x: int(x.get("n_rows") or 0)) if spec.task_type == "generation" else \
        (lambda x: int(x.get("labeled_n") or 0))
    labelled = [(x.get("error_rate"), count(x)) for x in window if x.get("error_rate") is not None and count(x) > 0]
    base_error = facts.test_error_rate
    if base_error is None:
        refs = [x.get("reference_error_rate") for x in window if x.get("reference_error_rate") is not None]
        base_error = refs[0] if refs else None
    if labelled and base_error is not None:
        n = sum(w for _, w in labelled)
        err = sum(e * w for e, w in labelled) / n
        rise = err - base_error
        if rise >= r.max_error_rate_increase:
            degraded = True
            perf_bits.append(f"error rate {err:.3f} on {n} {judged} is {rise:+.3f} over the test "
                             f"error {base_error:.3f} (limit +{r.max_error_rate_increase})")
        else:
            perf_bits.append(f"error rate {err:.3f} on {n} {judged} vs test error {base_error:.3f} "
                             f"({rise:+.3f}, limit +{r.max_error_rate_increase})")
    elif not labelled:
        perf_bits.append(f"no {judged} to measure the error rate")
    else:
        perf_bits.append("the model's test error is unknown")
    if degraded:
        reasons.append("yes: performance degraded: " + "; ".join(perf_bits))
    else:
        ok = False
        reasons.append("not: performance not degraded: " + "; ".join(perf_bits))

    # 3. labels since the last retrain
    since = facts.last_retrain
    fresh = [x for x in rows if x.get("status") in ("ok", "small") and (since is None or as_date(x["date"]) > since)]
    new_labels = sum(int(x.get("labeled_n") or 0) for x in fresh)
    classes: set[str] = set()
    for x in fresh:
        classes |= {k for k, v in (x.get("label_counts") or {}).items() if int(v or 0) > 0}
    span = f"since {since.isoformat()}" if since else "on record"
    if new_labels >= r.min_new_labels:
        reasons.append(f"yes: {new_labels} new labels {span} (needs {r.min_new_labels})")
    else:
        ok = False
        reasons.append(f"not: {new_labels} new labels {span}, needs {r.min_new_labels}")
    if r.min_classes is not None:
        if len(classes) >= r.min_classes:
            reasons.append(f"yes: {len(classes)} classes among the new labels (needs {r.min_classes})")
        else:
            ok = False
            reasons.append(f"not: {len(classes)} classes among the new labels, needs {r.min_classes}")

    # 4. days since the last retrain
    if since is None:
        reasons.append(f"yes: no retrain on record on or before {as_of.isoformat()}")
    else:
        days = (as_of - since).days
        if days >= r.min_days_since_last:
            reasons.append(f"yes: {days} days since the last retrain on {since.isoformat()} "
                           f"(needs {r.min_days_since_last})")
        else:
            ok = False
            reasons.append(f"not: {days} days since the last retrain on {since.isoformat()}, "
                           f"needs {r.min_days_since_last}")
    return Decision(ok, reasons)

