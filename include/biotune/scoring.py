"""The daily side of the shared steps, through the contract: what batch_scoring and drift_monitoring run.

validate_batch -> score_batch (per champion; a family may serve some rows by other models, e.g. a
person's own) -> monitor_model (drift, confidence, error rate; one history row per model and date).
The predictions file keeps the champion's own outputs beside what served, so drift always measures
the champion.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from biotune import evaluation, metrics, storage
from biotune.dates import as_date
from biotune.errors import BiotuneError, InputFormatError, RegistryError
from biotune.family import Family, get_family
from biotune.specs import ModelSpec
from biotune.steps import family_of

log = logging.getLogger(__name__)


@dataclass
class ScoredBatch:
    """What monitoring needs from one (model, date): the drift features and the champion's outputs."""

    model: str
    model_version: str
    date: str
    task_type: str
    features: Any                   # the model's drift features (a frame)
    proba: Any                      # outputs: binary P(1) [n], multiclass [n, k], generation texts
    prediction: np.ndarray          # the predicted class (binary 0/1, multiclass index) or category
    confidence: np.ndarray | None   # None for generation
    labels: np.ndarray              # float, NaN where unlabelled
    threshold: float | None
    predictions_uri: str
    classes: list[str] | None = None
    extra: dict = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        return int(len(self.proba))


def predictions_uri(family: str, date, model_name: str) -> str:
    return storage.lake_path("predictions", family, as_date(date).isoformat(), f"{storage.safe_name(model_name)}.parquet")


def validate_batch(family: str, date, run_id: str = "") -> dict:
    """Run the family's batch suite on the day's batch; on failure quarantine it and raise.
    A day without a batch returns status 'missing' (nothing to score, not an error)."""
    from biotune import validation

    fam = get_family(family)
    day = as_date(date).isoformat()
    path = fam.batch_uri(day)
    if not storage.exists(path):
        log.info("no %s batch for %s at %s", fam.name, day, path)
        return {"family": fam.name, "date": day, "batch": path, "status": "missing"}
    try:
        frame = fam.batch_validation_frame(path)
    except BiotuneError as exc:  # unreadable: bad input, quarantined like a failing one
        if not exc.bad_input:
            raise
        raise validation.quarantine_input(path, exc, run_id) from exc
    if fam.batch_suite is None:
        return {"family": fam.name, "date": day, "batch": path, "status": "ok", "rows": int(len(frame))}
    report_dir = storage.lake_path("reports", "validation", fam.batch_suite, day)
    outcome = validation.validate_or_quarantine(frame, fam.batch_suite, path, run_id=run_id, report_dir=report_dir)
    return {"family": fam.name, "date": day, "batch": path, "status": "ok", "rows": outcome.rows,
            "report": outcome.report_html}


_loaded: dict[tuple[str, str], Any] = {}


def load_champion(model_name: str, version: str | None = None):
    """The champion's pyfunc (MLflow faults as RegistryError). Loaded once per process and version:
    a day's scoring and drift tasks for several dates reuse it instead of unpickling it again."""
    import mlflow.pyfunc

    from biotune import registry

    registry.configure()
    key = (model_name, str(version))
    if version is not None and key in _loaded:
        return _loaded[key]
    with registry.registry_call(f"load {model_name}@champion"):
        uri = f"models:/{model_name}/{version}" if version is not None else f"models:/{model_name}@champion"
        model = mlflow.pyfunc.load_model(uri)
    if version is not None:
        _loaded.clear()  # one model at a time: memory stays flat however many models are scored
        _loaded[key] = model
    return model


def scored_batch(model_name: str, date, run_id: str = "", *, version=None) -> ScoredBatch:
    """The day's batch as scored by this champion version: read back from the predictions
    batch_scoring wrote (no second scoring), else scored now."""
    from biotune import registry

    spec, fam = family_of(model_name)
    version = version or registry.champion(model_name)
    day = as_date(date).isoformat()
    uri = predictions_uri(fam.name, day, model_name)
    if version is None or not storage.exists(uri):
        return score_batch(model_name, day, run_id, version=version)
    written = storage.read_parquet(uri)
    batch = fam.read_batch(fam.batch_uri(day))
    same = (len(written) == len(batch) and (written["model_version"].astype(str) == str(version.version)).all()
            and (written[fam.id_column].astype(str).to_numpy() == np.asarray(batch.ids).astype(str)).all())
    if not same:
        return score_batch(model_name, day, run_id, version=version, batch=batch)
    # the champion's own outputs: its champion_* columns when other models served some rows
    own = {c: c[len(CHAMPION_PREFIX):] for c in written.columns if c.startswith(CHAMPION_PREFIX)}
    if own:
        written = written.drop(columns=[c for c in own.values() if c in written.columns]).rename(columns=own)
    if spec.task_type == "binary":
        outputs = written["proba"].to_numpy(dtype=np.float64)
        prediction = written["prediction"].to_numpy()
    elif spec.task_type == "multiclass":
        outputs = np.stack(written["probabilities"].to_numpy()).astype(np.float64)
        prediction = evaluation.predicted_labels("multiclass", outputs)
    else:
        outputs = list(written["output"])
        prediction = written["category"].to_numpy() if "category" in written else np.zeros(0)
    t = version.metrics.get(metrics.test(metrics.THRESHOLD))
    return ScoredBatch(model=model_name, model_version=str(version.version), date=day, task_type=spec.task_type,
                       features=fam.model_drift_features(spec, batch), proba=outputs, prediction=prediction,
                       confidence=written["confidence"].to_numpy() if "confidence" in written else None,
                       labels=fam.batch_labels(spec, batch), threshold=float(t) if t is not None else None,
                       predictions_uri=uri, classes=spec.classes, extra={"run_id": run_id, "reused": True})


def _served_outputs(spec: ModelSpec, fam: Family, outputs, threshold, served):
    """(outputs, prediction) per row after the family's per-row serving (``Family.serve_batch``):
    the rows another model served take its outputs and, binary, its threshold."""
    rows = np.asarray(served.rows, dtype=np.int64)
    if spec.task_type == "generation":
        out = list(outputs)
        for i, text in zip(rows, served.outputs):
            out[int(i)] = text
        cats = fam.output_categories(spec, out)
        return out, np.asarray(cats if cats is not None else np.zeros(0))
    out = np.array(outputs, dtype=np.float64, copy=True)
    if len(rows):
        out[rows] = np.asarray(served.outputs, dtype=np.float64)
    if spec.task_type == "binary":
        thresholds = np.full(len(out), threshold, dtype=np.float64)
        if served.thresholds is not None and len(rows):
            thresholds[rows] = np.asarray(served.thresholds, dtype=np.float64)
        return out, (out >= thresholds).astype(np.int64)
    return out, evaluation.predicted_labels(spec.task_type, out)


def _output_columns(spec: ModelSpec, outputs, prediction, conf, prefix: str = "") -> dict:
    """The predictions file's output columns by task type (``prefix``: the champion's own, beside
    what served)."""
    cols: dict = {}
    if spec.task_type == "multiclass":
        names = spec.classes or [str(i) for i in range(outputs.shape[1] if outputs.ndim == 2 else 0)]
        cols["prediction"] = [names[i] for i in prediction]
        cols["probabilities"] = list(outputs)
    elif spec.task_type == "binary":
        cols["proba"] = outputs
        cols["prediction"] = prediction.astype(np.int8)
    else:
        cols["output"] = list(outputs)
        if len(prediction) == len(outputs):
            cols["category"] = prediction
    if conf is not None:
        cols["confidence"] = conf
    return {prefix + k: v for k, v in cols.items()}


CHAMPION_PREFIX = "champion_"  # the champion's own outputs when other models served some rows


def score_batch(model_name: str, date, run_id: str = "", *, version=None, batch=None) -> ScoredBatch:
    """Score the day's batch with the champion; write its predictions (atomically, idempotent):
    id, the outputs, prediction, confidence, model_version, and per row which model served it and
    why (``served_by``, ``serving_reason``). A family that serves some rows by other models
    (``Family.serve_batch``: a person's own model) puts their outputs in the output columns and the
    champion's own in ``champion_*`` columns: drift monitoring measures the champion on every row."""
    import pandas as pd

    from biotune import registry

    spec, fam = family_of(model_name)
    version = version or registry.champion(model_name)
    if version is None:
        raise RegistryError(f"{model_name} has no champion to score with", where=model_name,
                            fix="run the family's fine-tuning DAG first (biotune registry list shows champions)")
    day = as_date(date).isoformat()
    batch = batch if batch is not None else fam.read_batch(fam.batch_uri(day))
    features = fam.model_drift_features(spec, batch)
    x = fam.batch_inputs(spec, batch)
    outputs = load_champion(model_name, version.version).predict(x) if len(batch) else []
    if spec.task_type != "generation":
        outputs = np.asarray(outputs, dtype=np.float64)
        if spec.task_type == "binary":
            outputs = outputs.ravel()
    if len(outputs) != len(batch):
        raise InputFormatError(f"{model_name} returned {len(outputs)} outputs for {len(batch)} rows",
                               where=model_name, fix="check the model's pyfunc signature")
    t = version.metrics.get(metrics.test(metrics.THRESHOLD))
    threshold = float(t) if spec.task_type == "binary" and t is not None and np.isfinite(t) else (
        0.5 if spec.task_type == "binary" else None)
    if spec.task_type == "generation":
        cats = fam.output_categories(spec, outputs)
        prediction = np.asarray(cats if cats is not None else np.zeros(0))
    else:
        prediction = evaluation.predicted_labels(spec.task_type, outputs, threshold)
    conf = evaluation.confidence(spec.task_type, outputs)
    served = fam.serve_batch(spec, batch, version, x) if len(batch) else None
    label = f"{model_name} v{version.version}"
    out = pd.DataFrame({fam.id_column: np.asarray(batch.ids).astype(str)})
    if served is None:
        out = out.assign(**_output_columns(spec, outputs, prediction, conf))
        out["served_by"], out["serving_reason"] = label, "population champion"
        counts = {"population champion": len(out)}
    else:
        if len(served.served_by) != len(batch) or len(served.reasons) != len(batch):
            raise InputFormatError(f"{fam.name}.serve_batch named {len(served.served_by)} servers for {len(batch)} rows",
                                   where=f"family {fam.name}", fix="return one served_by and reason per batch row")
        s_out, s_pred = _served_outputs(spec, fam, outputs, threshold, served)
        out = out.assign(**_output_columns(spec, s_out, s_pred, evaluation.confidence(spec.task_type, s_out)),
                         **_output_columns(spec, outputs, prediction, conf, CHAMPION_PREFIX))
        out["served_by"], out["serving_reason"] = list(served.served_by), list(served.reasons)
        counts = {str(k): int(v) for k, v in out["serving_reason"].value_counts().items()}
    out["model_version"] = str(version.version)
    uri = storage.write_parquet(out, predictions_uri(fam.name, day, model_name))
    labels = fam.batch_labels(spec, batch)
    log.info("%s v%s scored %d rows of %s%s: %s; served: %s", model_name, version.version, len(out), day,
             f" (mean confidence {float(np.mean(conf)):.3f})" if conf is not None and len(conf) else "", uri,
             "; ".join(f"{n} x {reason}" for reason, n in sorted(counts.items())))
    return ScoredBatch(model=model_name, model_version=str(version.version), date=day, task_type=spec.task_type,
                       features=features, proba=outputs, prediction=prediction, confidence=conf, labels=labels,
                       threshold=threshold, predictions_uri=uri, classes=spec.classes,
                       extra={"run_id": run_id, "served": counts})


# ====================================================================== monitoring


def monitor_model(spec: ModelSpec, date, *, run_id: str = "", report: bool = True, uri: str | None = None) -> dict:
    """Measure one champion on one date and upsert its ``drift_history`` row; return the row.

    No batch that day -> status 'missing'. Bad input (unusable batch, no logged reference, nothing
    comparable) -> status 'error' with the typed message in ``error``, logged, and returned (the
    history stays one row per date). Registry/storage faults propagate so the task retries.
    """
    from biotune import monitoring, registry
    from biotune.monitoring import measure, report_dir, upsert_drift, write_report
    from biotune.monitoring.alerts import _fmt

    family = get_family(spec.family)

    day = as_date(date).isoformat()
    version = registry.champion(spec.name)
    base = {"model": spec.name, "date": day, "run_id": run_id,
            "model_version": version.version if version else None}
    if version is None:
        row = upsert_drift({**base, "status": "error", "error": f"{spec.name} has no champion"}, uri)
        log.error("%s %s: no champion to monitor", spec.name, day)
        return row
    batch = family.batch_uri(day)
    if not storage.exists(batch):
        log.info("%s %s: no batch at %s: recorded as 'missing' (not drift)", spec.name, day, batch)
        return {**upsert_drift({**base, "status": "missing", "error": f"no batch at {batch}"}, uri), "reasons": []}
    try:
        reference = family.reference_features(monitoring.reference_frame(version.run_id, spec.name))
        current = scored_batch(spec.name, day, run_id, version=version)
        measured = measure(reference, current.features, spec, proba=current.proba, prediction=current.prediction,
                           labels=current.labels, confidence=current.confidence,
                           reference_prediction=monitoring.loop.reference_prediction_labels(version),
                           output_errors=family.output_errors(spec, current.proba)
                           if spec.task_type == "generation" else None)
    except monitoring.BAD_INPUT as exc:
        log.error("%s %s: drift not measured: %s: %s", spec.name, day, type(exc).__name__, exc)
        row = upsert_drift({**base, "status": "error", "error": f"{type(exc).__name__}: {exc}"}, uri)
        return {**row, "reasons": [f"{type(exc).__name__}: {exc.what}"]}
    reasons = measured.pop("reasons")
    small = []
    if measured["n_rows"] < spec.drift.min_rows:  # PSI on a handful of rows is noise, not drift
        small = [f"{measured['n_rows']} rows < drift.min_rows {spec.drift.min_rows}: too small to judge"]
        reasons = small + reasons
        measured.update(status="small", critical=False, drifted_features=0, drifted=[])
    report_uri = None
    if report:  # the report shows the very PSI values of the history row, with the spec's method
        cols = list(spec.drift.features) if spec.drift.features else list(reference.columns)
        report_uri = write_report(reference, current.features, spec.name, day, version.run_id, cols,
                                  version=version.version, method=spec.drift.method, bins=spec.drift.bins,
                                  threshold=spec.drift.threshold, psi=measured["psi"],
                                  notes=[s + "; not counted as drift" for s in small])
    row = upsert_drift({**base, **measured, "report_uri": report_uri, "predictions_uri": current.predictions_uri,
                        "reference_error_rate": monitoring.reference_error_rate(version.metrics)}, uri)
    storage.write_json(storage.join(report_dir(spec.name, day), "drift.json"), {**row, "reasons": reasons})
    log.info("%s v%s %s: %d rows, max PSI %s on %s, %d drifted features, mean confidence %s, error rate %s",
             spec.name, version.version, day, row["n_rows"], _fmt(row["max_psi"]), row["max_feature"],
             row["drifted_features"], _fmt(row["mean_confidence"]), _fmt(row["error_rate"]))
    return {**row, "reasons": reasons}
