"""The shared steps: what every family's fine-tune and monitoring DAGs run, through the contract.

Each function is one DAG task (and one CLI or test step). Steps hand each other small JSON-able
dicts (lake URIs, counts, metrics), never frames. Outputs are keyed by the Airflow run and written
atomically, so a retried task overwrites its own output and nothing else.

fine-tune:  prepare -> prepare_architectures -> train (per model) [-> wait for a remote job ->
            collect] -> evaluate (challenger and champion on the same test split, each at its
            own threshold) -> registry.publish (register, gate, promote or wait for approval)
The daily side (validate a batch, score it, measure drift) is :mod:`biotune.scoring`.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from biotune import evaluation, metrics, storage
from biotune.errors import InputFormatError
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
