"""The labelled production data a retrain learns from.

A drift-triggered retrain that re-reads the original training files reproduces the model it
replaces. Here the family's daily batches up to the retraining decision's date that the champion
has not learned from (a retrained champion's run records up to which day it learned), that pass
the batch suite (a failing one is quarantined, as batch_scoring does) and hold labels, become
production rows, split by person with the same stable hash as the training data, and mixed into
each split:

* train: the spec's ``retraining.new_data_share`` of new rows (0.7: the activity seed's 30% old /
  70% new); the original rows are subsampled (seeded) to the remaining share;
* val and test: every original row plus every production row of that split, so the gate compares
  challenger and champion on production-domain cases too.

The batches are read through the family contract (``read_batch``, ``batch_inputs``,
``batch_labels``), so every family's retrain learns from its own production data.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import numpy as np

from biotune import storage
from biotune.dates import as_date
from biotune.errors import BiotuneError
from biotune.family import Family, Progress, Split
from biotune.specs import ModelSpec
from biotune.splits import assign_splits

log = logging.getLogger(__name__)


def labelled(y) -> np.ndarray:
    """Which rows carry a label: a number (binary, multiclass) or a non-empty text (generation)."""
    y = np.asarray(y, dtype=object)
    return np.array([v is not None and not (isinstance(v, float) and np.isnan(v)) and v != "" for v in y], dtype=bool)


def learned_until(spec: ModelSpec) -> dt.date | None:
    """The last production day ``spec``'s champion learned from: the end of the production window
    its training run recorded (``data_production_until``); None when it learned from none (every
    labelled batch is new to it). A retrain that was not promoted moves nothing."""
    from biotune import registry

    champion = registry.champion(spec.name)
    if champion is None:
        return None
    client = registry.configure()
    with registry.registry_call(f"read the training run of {spec.name} v{champion.version}"):
        recorded = client.get_run(champion.run_id).data.params.get("data_production_until")
    return as_date(recorded) if recorded else None


def collect(fam: Family, until, run_id: str, *, since=None, progress: Progress | None = None) -> dict:
    """The family's labelled batches up to ``until`` that its models have not learned from yet
    (after ``since`` when given, else per model after :func:`learned_until`), validated. Returns a
    JSON-able summary for the run's dataset dict."""
    from biotune import scoring

    until = as_date(until)
    specs = fam.specs()
    since_by_model = {s.name: (as_date(since) if since is not None else learned_until(s)) for s in specs}
    bounds = [d for d in since_by_model.values() if d is not None]
    start = min(bounds) if len(bounds) == len(specs) and bounds else None
    batches, excluded = [], []
    for day in fam.batch_dates():
        if day > until or (start is not None and day <= start):
            continue
        uri = fam.batch_uri(day)
        try:
            scoring.validate_batch(fam.name, day, run_id)
            batch = fam.read_batch(uri)
        except BiotuneError as exc:
            if not exc.bad_input:
                raise
            excluded.append({"date": day.isoformat(), "uri": uri, "reason": str(exc)})
            continue
        counts = {s.name: int(labelled(fam.batch_labels(s, batch)).sum()) for s in specs}
        if any(counts.values()):
            batches.append({"date": day.isoformat(), "uri": uri, "rows": len(batch), "labelled": counts})
    found = {"since": start.isoformat() if start else None, "until": until.isoformat(),
             "since_by_model": {k: v.isoformat() if v else None for k, v in since_by_model.items()},
             "batches": batches, "excluded": excluded}
    if progress:
        total = sum(max(b["labelled"].values()) for b in batches)
        progress(f"production data after {start or 'the first batch'} up to {until}: {len(batches)} labelled "
                 f"batch(es), up to {total} labelled rows per model"
                 + (f"; {len(excluded)} batch(es) excluded (quarantined)" if excluded else ""))
    return found


def _after(production: dict, spec: ModelSpec, day: str) -> bool:
    """Whether ``spec``'s model has not learned from the batch of ``day`` yet."""
    since = production.get("since_by_model", {}).get(spec.name, production.get("since"))
    return since is None or as_date(day) > as_date(since)


def take(x, index) -> Any:
    """Rows ``index`` of a model input or label array, whatever its container."""
    import pandas as pd

    index = np.asarray(index, dtype=int)
    if isinstance(x, pd.DataFrame):
        return x.iloc[index].reset_index(drop=True)
    if isinstance(x, (pd.Series, np.ndarray)):
        return np.asarray(x)[index]
    return [x[i] for i in index]


def concat(parts: list) -> Any:
    import pandas as pd

    if isinstance(parts[0], pd.DataFrame):
        return pd.concat(parts, ignore_index=True)
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    return [v for part in parts for v in part]


def _join(splits: list[Split]) -> Split:
    splits = [s for s in splits if len(s)]
    if not splits:
        return Split(x=[], y=np.array([]), ids=np.array([], dtype=object))
    y = concat([np.asarray(s.y) if not isinstance(s.y, list) else s.y for s in splits])
    ids = concat([np.asarray(s.ids, dtype=object) if s.ids is not None else np.full(len(s), None, dtype=object)
                  for s in splits])
    return Split(concat([s.x for s in splits]), y, ids)


def _labelled_rows(spec: ModelSpec, fam: Family, production: dict, which: str):
    """(batch record, batch, rows, labels, ids) of ``spec``'s labelled production rows of one split,
    per batch after the spec's champion was trained (persons assigned by a stable hash)."""
    for record in production.get("batches", []):
        if not _after(production, spec, record["date"]) or not record["labelled"].get(spec.name):
            continue
        batch = fam.read_batch(record["uri"])
        y = fam.batch_labels(spec, batch)
        ids = np.asarray(batch.ids).astype(str)
        split_of = assign_splits(ids, spec.training.validation_fraction, spec.training.test_fraction)
        rows = np.flatnonzero(labelled(y) & np.array([split_of[i] == which for i in ids], dtype=bool))
        if len(rows):
            yield record, batch, rows, y, ids


def production_split(spec: ModelSpec, fam: Family, production: dict, which: str) -> Split:
    """``spec``'s labelled production rows of one split."""
    return _join([Split(take(fam.batch_inputs(spec, batch), rows), take(y, rows), ids[rows])
                  for _, batch, rows, y, ids in _labelled_rows(spec, fam, production, which)])


def old_rows_kept(spec: ModelSpec, n_original: int, n_new: int) -> np.ndarray:
    """Which original training rows a retrain keeps beside ``n_new`` production rows (seeded)."""
    share = spec.retraining.new_data_share
    if n_new == 0 or share <= 0:
        return np.arange(n_original)
    n_old = min(n_original, round(n_new * (1 - share) / share))
    rng = np.random.default_rng(spec.training.seed)
    return np.sort(rng.choice(n_original, size=n_old, replace=False))


def reference_frame(spec: ModelSpec, fam: Family, production: dict, original):
    """The drift reference of a retrained model: what it trained on, the kept share of the original
    training rows' features plus the production training rows' features."""
    import pandas as pd

    parts = [fam.model_drift_features(spec, batch).iloc[rows].reset_index(drop=True)
             for _, batch, rows, _, _ in _labelled_rows(spec, fam, production, "train")]
    if not parts or spec.retraining.new_data_share <= 0:
        return original
    new = pd.concat(parts, ignore_index=True)
    new = new[[c for c in original.columns if c in new.columns]]  # the reference's own features only
    kept = original.iloc[old_rows_kept(spec, len(original), len(new))].reset_index(drop=True)
    return pd.concat([kept, new], ignore_index=True)


def batch_inputs(spec: ModelSpec, fam: Family, production: dict) -> list[tuple[Any, str, str]]:
    """(drift features, source URI, name) of each production batch the retrain learned from: logged
    as the MLflow run's inputs (schema, profile and digest; never the rows)."""
    out = []
    for record in production.get("batches", []):
        if _after(production, spec, record["date"]) and record["labelled"].get(spec.name):
            batch = fam.read_batch(record["uri"])
            out.append((fam.model_drift_features(spec, batch), record["uri"], f"{fam.name}-batch-{record['date']}"))
    return out


def mix(spec: ModelSpec, original: Split, new: Split, which: str) -> tuple[Split, dict[str, int]]:
    """The split a retrain uses and its counts (see the module docstring)."""
    counts = {"original": len(original), "production": len(new)}
    if not len(new):
        return original, {**counts, "original_used": len(original)}
    if isinstance(original.y, np.ndarray) and original.y.dtype.kind in "iub":
        new = Split(new.x, np.asarray(new.y, dtype=float).astype(original.y.dtype), new.ids)
    kept = original
    if which == "train":
        if spec.retraining.new_data_share <= 0:  # production rows stay out of training
            return original, {**counts, "production": 0, "original_used": len(original)}
        index = old_rows_kept(spec, len(original), len(new))
        if len(index) < len(original):
            kept = Split(take(original.x, index), take(original.y, index),
                         take(original.ids, index) if original.ids is not None else None)
    return _join([kept, new]), {**counts, "original_used": len(kept)}
