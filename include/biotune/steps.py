"""The shared steps: what every family's fine-tune and monitoring DAGs run, through the contract.

Each function is one DAG task (and one CLI or test step). Steps hand each other small JSON-able
dicts (lake URIs, counts, metrics), never frames. Outputs are keyed by the Airflow run and written
atomically, so a retried task overwrites its own output and nothing else.

fine-tune:  prepare -> prepare_architectures -> train (per model) [-> wait for a remote job ->
            collect] -> evaluate (challenger and champion on the same test split, each at its
            own threshold) -> registry.publish (register, gate, promote or wait for approval)
monitoring: validate_batch -> score_batch (per champion) -> monitoring.monitor_model
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from biotune import evaluation, metrics, storage
from biotune.dates import as_date
from biotune.errors import BiotuneError, InputFormatError, RegistryError
from biotune.family import Family, Progress, RemoteJob, Split, Trained, get_family
from biotune.specs import ModelSpec, get_spec

log = logging.getLogger(__name__)

SMALL_TEST_SET = 100      # below this many test rows a validation/test gap is worth a warning
VAL_TEST_GAP = 0.1


def run_dir(dag_id: str, dag_run_id: str) -> str:
    return storage.lake_path("runs", dag_id, storage.safe_name(dag_run_id))


def fine_tune_dag_id(spec: ModelSpec) -> str:
    """The DAG a retrain of ``spec`` triggers: its ``retraining.dag_id``, else its family's fine-tune DAG."""
    return spec.retraining.dag_id or get_family(spec.family).fine_tune_dag_id


def family_of(spec_or_name) -> tuple[ModelSpec, Family]:
    spec = spec_or_name if isinstance(spec_or_name, ModelSpec) else get_spec(spec_or_name)
    return spec, get_family(spec.family)


# ====================================================================== fine-tuning


def model_names(family: str) -> list[str]:
    """The models a family's fine-tune DAG trains: its population specs in models/."""
    names = [s.name for s in get_family(family).specs()]
    if not names:
        from biotune import settings
        from biotune.errors import SpecError

        raise SpecError(f"family {family} has no model spec", where=str(settings.specs_dir()),
                        fix=f"add a models/{family}-<task>-<arch>.yaml (see models/README.md)")
    return names


def prepare(family: str, params: dict, dag_run_id: str, progress: Progress | None = None,
            retrain: dict | None = None) -> dict:
    """The family's prepared dataset for this run (see Family.prepare). A retrain (``retrain``: the
    conf retraining_triggers passes, with the decision's ``date`` and optionally ``since``) also
    gathers the labelled production batches since the champions' training (biotune.production)."""
    fam = get_family(family)
    dataset = {**fam.prepare(params, run_dir(fam.fine_tune_dag_id, dag_run_id), dag_run_id, progress),
               "family": fam.name,
               # what the run was given (paths, settings): logged with the model, so a retrain
               # triggered by drift reads the same training data (monitoring.loop.retrain_plans)
               "dag_params": {k: v for k, v in params.items() if isinstance(v, (str, int, float, bool))}}
    if retrain:
        from biotune import production

        until = retrain.get("date") or retrain.get("until")
        if not until:
            raise InputFormatError("the run's retrain conf has no 'date'", where="conf.retrain",
                                   fix='give {"retrain": {"date": "YYYY-MM-DD"}} (the last production day to learn from)')
        dataset["production"] = production.collect(fam, until, dag_run_id, since=retrain.get("since"),
                                                   progress=progress)
    return dataset


def split(spec: ModelSpec, fam: Family, dataset: dict, which: str) -> tuple[Split, dict[str, int]]:
    """One split of the run's dataset for ``spec``: the family's, with a retrain's labelled
    production rows mixed in (see biotune.production); and its counts."""
    original = fam.split(spec, dataset, which)
    if not dataset.get("production"):
        return original, {"original": len(original), "production": 0, "original_used": len(original)}
    from biotune import production

    return production.mix(spec, original, production.production_split(spec, fam, dataset["production"], which), which)


def prepare_architectures(dataset: dict, dag_run_id: str, params: dict,
                          progress: Progress | None = None) -> dict[str, Any]:
    """Each architecture's once-per-run work (e.g. PAT's encoder), keyed by kind."""
    fam = get_family(dataset["family"])
    specs = fam.specs()
    out: dict[str, Any] = {}
    for kind in sorted({s.architecture.kind for s in specs}):
        out[kind] = fam.architecture(kind).prepare(fam, [s for s in specs if s.architecture.kind == kind], dataset,
                                                    run_dir(fam.fine_tune_dag_id, dag_run_id), params, progress)
    return out


def _class_counts(spec: ModelSpec, split: Split) -> dict[str, int]:
    y = np.asarray(split.y)
    if spec.task_type == "generation" or len(y) == 0:
        return {}
    values, counts = np.unique(y.astype(int), return_counts=True)
    names = spec.classes or []
    return {(names[v] if v < len(names) else str(v)): int(c) for v, c in zip(values, counts)}


def check_splits(spec: ModelSpec, splits: dict[str, Split], where: str) -> None:
    """Classification needs every split to hold both classes (binary) or at least two (multiclass):
    say so up front with the class counts per split, not after training with NaN metrics."""
    if spec.task_type == "generation":
        empty = [k for k, s in splits.items() if len(s) == 0]
        if empty:
            raise InputFormatError(f"{spec.name}: the {', '.join(empty)} split(s) are empty", where=where,
                                   fix="supply more examples")
        return
    counts = {k: _class_counts(spec, s) for k, s in splits.items()}
    bad = [k for k, c in counts.items() if len(c) < 2]
    if bad:
        shown = "; ".join(f"{k}: {c or 'no rows'}" for k, c in counts.items())
        raise InputFormatError(
            f"{spec.name}: the {', '.join(bad)} split(s) of {spec.task} hold fewer than two classes ({shown})",
            where=where, fix="supply more participants (both classes are needed in every split to train and gate)")


def train(model_name: str, dataset: dict, prepared: dict | None, dag_run_id: str, params: dict | None = None,
          progress: Progress | None = None) -> dict:
    """Fit one model on its training split (early stopping on validation); the trained files go to
    the run's folder in the lake. A remote trainer returns ``{"job": ...}`` to wait for instead."""
    spec, fam = family_of(model_name)
    arch = fam.architecture(spec.architecture.kind)
    params = {k: v for k, v in (params or {}).items() if v not in (None, "")}
    (tr, tr_counts), (va, va_counts) = split(spec, fam, dataset, "train"), split(spec, fam, dataset, "val")
    check_splits(spec, {"training": tr, "validation": va}, where=str(dataset.get("uri") or dataset))
    data = {f"{which}_{k}": v for which, c in (("train", tr_counts), ("val", va_counts)) for k, v in c.items()}
    if progress and dataset.get("production"):
        progress(f"{spec.name}: training on {tr_counts['original_used']} of {tr_counts['original']} original rows + "
                 f"{tr_counts['production']} labelled production rows (new_data_share "
                 f"{spec.retraining.new_data_share:g}); validation {va_counts['original']} + {va_counts['production']}")
    base = {"model": spec.name, "family": fam.name, "kind": spec.architecture.kind, "task_type": spec.task_type,
            "artifact": storage.join(run_dir(fam.fine_tune_dag_id, dag_run_id), "models", spec.name), "data": data}
    with tempfile.TemporaryDirectory() as tmp:
        result = arch.train(spec, tr, va, Path(tmp), prepared=(prepared or {}).get(spec.architecture.kind),
                            params=params, progress=progress)
        if isinstance(result, RemoteJob):
            return {**base, "job": result.job, "params": result.params}
        return _finish(spec, fam, result, Path(tmp), va, base, progress)


def collect(candidate: dict, dataset: dict, progress: Progress | None = None) -> dict:
    """After a remote job finished: fetch what it trained and finish like a local model."""
    if "job" not in candidate:
        return candidate
    spec, fam = family_of(candidate["model"])
    arch = fam.architecture(spec.architecture.kind)
    va, _ = split(spec, fam, dataset, "val")
    with tempfile.TemporaryDirectory() as tmp:
        result = arch.collect(candidate["job"], Path(tmp))
        result.params = {**candidate.get("params", {}), **result.params}
        base = {k: v for k, v in candidate.items() if k not in ("params",)}
        return _finish(spec, fam, result, Path(tmp), va, base, progress)


def _finish(spec: ModelSpec, fam: Family, result: Trained, workdir: Path, val: Split, base: dict,
            progress: Progress | None) -> dict:
    arch = fam.architecture(spec.architecture.kind)
    outputs = arch.predict(arch.load(workdir), val.x)
    threshold = result.threshold
    if spec.task_type == "binary" and threshold is None:
        threshold = evaluation.youden_threshold(val.y, outputs)
    val_metrics = _metrics(spec, fam, val.y, outputs, threshold)
    storage.upload_dir(str(workdir), base["artifact"])
    headline = metrics.HEADLINE[spec.task_type]
    shown = ", ".join(f"{k} {val_metrics[k]:.3f}" for k in headline if k in val_metrics)
    if progress:
        progress(f"{spec.name}: validation {shown}" + (f", threshold {threshold:.3f}" if threshold is not None else ""))
    keep = (*headline, metrics.BRIER, metrics.ERROR_RATE)
    return {**base, "threshold": threshold, "params": dict(result.params),
            "history": {k: [round(float(x), 6) for x in v] for k, v in (result.history or {}).items()},
            "val_metrics": {metrics.val(k): v for k, v in val_metrics.items() if k in keep}}


def _metrics(spec: ModelSpec, fam: Family, y, outputs, threshold) -> dict[str, float]:
    gen = fam.generation_metrics if spec.task_type == "generation" else None
    out = evaluation.evaluate(spec.task_type, y, outputs, threshold=threshold, classes=spec.classes,
                              generation_metrics=gen)
    errors = fam.output_errors(spec, outputs) if spec.task_type == "generation" else None
    if errors is not None and len(errors):
        out[metrics.ERROR_RATE] = float(np.mean(errors))
    return out


def evaluate(trained: dict, dataset: dict, dag_run_id: str) -> dict:
    """Score the challenger and the current champion on the same held-out test split, each the
    same way (binary: each at the threshold it was evaluated with), with the task type's metrics
    and plots. The gate compares the spec's ``gate.metric`` of the two."""
    import mlflow.pyfunc

    from biotune import registry

    spec, fam = family_of(trained["model"])
    arch = fam.architecture(spec.architecture.kind)
    te, te_counts = split(spec, fam, dataset, "test")
    trained = {**trained, "data": {**trained.get("data", {}), "test_original": te_counts["original"],
                                   "test_production": te_counts["production"]}}
    check_splits(spec, {"test": te}, where=str(dataset.get("uri") or dataset))
    folder = run_dir(fam.fine_tune_dag_id, dag_run_id)
    threshold = trained.get("threshold")
    with tempfile.TemporaryDirectory() as tmp:
        storage.download_dir(trained["artifact"], str(Path(tmp) / "model"))
        outputs = arch.predict(arch.load(Path(tmp) / "model"), te.x)
        test = _metrics(spec, fam, te.y, outputs, threshold)
        plots_dir = Path(tmp) / "plots"
        evaluation.plots(spec.task_type, te.y, outputs, plots_dir, f"{spec.name} (test)", threshold=threshold,
                         classes=spec.classes)
        plots_uri = storage.upload_dir(str(plots_dir), storage.join(folder, "plots", spec.name)) \
            if plots_dir.exists() and any(plots_dir.iterdir()) else None
    predicted = evaluation.predicted_labels(spec.task_type, outputs, threshold)
    if spec.task_type == "generation":
        predicted = fam.output_categories(spec, outputs)
    reference_predictions = None
    if predicted is not None and len(predicted):
        import pandas as pd

        reference_predictions = storage.write_parquet(pd.DataFrame({"prediction": np.asarray(predicted)}),
                                                      storage.join(folder, "predictions", f"{spec.name}.parquet"))
    champion = registry.champion(spec.name)
    champion_metrics: dict[str, float] = {}
    if champion is not None:
        with registry.registry_call(f"load {spec.name}@champion"):
            champ_model = mlflow.pyfunc.load_model(f"models:/{spec.name}@champion")
        champ_outputs = champ_model.predict(te.x)
        champ_threshold = champion.metrics.get(metrics.test(metrics.THRESHOLD))
        champion_metrics = _metrics(spec, fam, te.y, champ_outputs,
                                    float(champ_threshold) if champ_threshold is not None else None)
    all_metrics = {**trained["val_metrics"], **{metrics.test(k): v for k, v in test.items()}}
    warnings = _gap_warnings(spec, all_metrics)
    for w in warnings:
        log.warning("%s: %s", spec.name, w)
    gate_metric = spec.gate.metric
    return {**trained, "metrics": all_metrics, "plots": plots_uri, "dataset": dataset,
            "reference_predictions": reference_predictions, "warnings": warnings,
            "challenger_value": test.get(gate_metric),
            "champion_value": champion_metrics.get(gate_metric) if champion is not None else None,
            "champion_version": champion.version if champion else None,
            "champion_metrics": {metrics.test(k): v for k, v in champion_metrics.items()}}


def _gap_warnings(spec: ModelSpec, all_metrics: dict) -> list[str]:
    """A small test set with a large validation/test gap: the test figure is not to be trusted far."""
    n = all_metrics.get(metrics.test(metrics.N)) or 0
    key = metrics.HEADLINE[spec.task_type][0]
    v, t = all_metrics.get(metrics.val(key)), all_metrics.get(metrics.test(key))
    if v is None or t is None or not np.isfinite(v) or not np.isfinite(t):
        return []
    if n < SMALL_TEST_SET and abs(v - t) >= VAL_TEST_GAP:
        return [f"validation {key} {v:.3f} vs test {t:.3f} on only {int(n)} test rows: the test estimate is "
                f"uncertain (±{1.96 * np.sqrt(max(t * (1 - t), 0.01) / max(n, 1)):.2f}); get more labelled data"]
    return []


# ====================================================================== scoring


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
    log.info("%s v%s scored %d rows of %s%s: %s", model_name, version.version, len(out), day,
             f" (mean confidence {float(np.mean(conf)):.3f})" if conf is not None and len(conf) else "", uri)
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
