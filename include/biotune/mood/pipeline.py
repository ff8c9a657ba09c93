"""The mood population job, step by step: each function is one DAG task (and one CLI step).

Steps hand each other paths and small dicts, never frames. Every step writes under a
run directory keyed by the Airflow run, atomically, so a retried task overwrites its own
output and nothing else.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from pathlib import Path
from typing import Callable

import numpy as np

from biotune import settings, storage
from biotune.errors import InputFormatError
from biotune.specs import get_spec

log = logging.getLogger(__name__)

# NHANES 2013-14 file -> the expectation suite that checks it.
RAW_SUITES = {
    "PAXHD_H": "nhanes_paxhd",
    "PAXDAY_H": "nhanes_paxday",
    "PAXMIN_H": "nhanes_paxmin",
    "DPQ_H": "nhanes_dpq",
    "RXQ_RX_H": "nhanes_rxq_rx",
    "RXQ_DRUG": "nhanes_rxq_drug",
    "DEMO_H": "nhanes_demo",
}
# PAXMIN_H has ~10k rows per person: the suite runs on the leading rows (GX on 9 GB would not fit).
PAXMIN_SAMPLE_ROWS = 200_000
LABELS = ["phq9_total", "depression", "benzodiazepine", "ssri"]
MODEL_NAMES = ["mood-depression-pat", "mood-benzodiazepine-pat", "mood-ssri-pat", "mood-depression-xgb"]


def default_source() -> str:
    return storage.lake_path("landing", "nhanes", "2013-2014")


def run_dir(dag_run_id: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in dag_run_id)
    return storage.lake_path("runs", "mood_population_finetune", safe)


def raw_tables(source: str) -> list[dict]:
    """One validation job per raw table present: path, suite, how many rows to read. Every
    required file must be there (MissingInputError naming each missing one) before work starts."""
    from biotune import validation
    from biotune.mood.nhanes import match_tables

    found = match_tables(storage.listdir(source), source)
    return [{"path": storage.join(source, found[table]), "suite": suite,
             "row_limit": PAXMIN_SAMPLE_ROWS if table == "PAXMIN_H" else None}
            for table, suite in RAW_SUITES.items() if table in found and validation.suite_path(suite).exists()]


def build_cohort(source: str, dag_run_id: str, progress: Callable[[str], None] | None = None) -> dict:
    """NHANES files -> cohort parquet (one row per participant), validated by the mood_cohort suite."""
    import tempfile

    from biotune import validation
    from biotune.mood import cohort

    out = storage.join(run_dir(dag_run_id), "cohort.parquet")
    with _staged_source(source) as local_source, tempfile.TemporaryDirectory() as tmp:
        local_out = str(Path(tmp) / "cohort.parquet")
        report = _report_dict(cohort.build_cohort(local_source, local_out, progress=progress))
        frame, activity, state = cohort.load_cohort_arrays(local_out)
        storage.upload_file(local_out, out)
    # the suite sees the matrices as per-row arrays (views, no copy)
    checked = frame.assign(activity=list(activity), state=list(state))
    storage.write_json(out + ".report.json", report)
    if frame.empty:
        raise InputFormatError("no participant passed the cohort rules", where=source,
                               fix=f"check the exclusion counts: {report}")
    validation.validate_or_quarantine(checked, "mood_cohort", out, run_id=dag_run_id,
                                      report_dir=storage.join(run_dir(dag_run_id), "validation"))
    return {"cohort": out, "participants": int(len(frame)), "report": report}


def _report_dict(report) -> dict:
    from dataclasses import asdict, is_dataclass

    if hasattr(report, "as_dict"):
        return report.as_dict()
    return asdict(report) if is_dataclass(report) else dict(report)


@contextlib.contextmanager
def _staged_source(source: str):
    """A local directory holding the NHANES files (the source itself when local)."""
    if not storage.is_s3(source):
        yield source
        return
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for name in storage.listdir(source):
            with storage.local_copy(storage.join(source, name)) as local:
                Path(tmp, name).write_bytes(Path(local).read_bytes())
        yield tmp


def split_of(seqn, seed: int, validation_fraction: float, test_fraction: float) -> str:
    """Stable participant-level split: the same SEQN lands in the same split in every run, so a
    champion and a challenger are always compared on data neither was trained on."""
    h = int(hashlib.sha256(f"{seed}:{int(seqn)}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if h < test_fraction:
        return "test"
    if h < test_fraction + validation_fraction:
        return "val"
    return "train"


def build_features(cohort_info: dict, dag_run_id: str) -> dict:
    """PAT input (activity week, NaN as 0) and the 36 mood_ml features, with labels and split."""
    from biotune.mood import cohort
    from biotune.mood.features import mood_ml_features, sleep_from_paxpredm

    with storage.local_copy(cohort_info["cohort"]) as local:
        frame, activity, state = cohort.load_cohort_arrays(local)
    feats = mood_ml_features(sleep_from_paxpredm(state))
    split_spec = get_spec(MODEL_NAMES[0]).training
    table = frame[["SEQN", *LABELS]].reset_index(drop=True)
    table["split"] = [split_of(s, split_spec.seed, split_spec.validation_fraction, split_spec.test_fraction)
                      for s in table["SEQN"]]
    table = table.join(feats.reset_index(drop=True))
    activity_path = storage.join(run_dir(dag_run_id), "activity.npy")
    with storage.atomic_local_path(activity_path, suffix=".npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.nan_to_num(activity.astype(np.float32), nan=0.0))
    features_path = storage.write_parquet(table, storage.join(run_dir(dag_run_id), "features.parquet"))
    counts = table["split"].value_counts().to_dict()
    return {"features": features_path, "activity": activity_path, "n": int(len(table)),
            "splits": {k: int(v) for k, v in counts.items()}}


def load_features(features_info: dict):
    """(table with labels, split and the 36 features; activity array [n, 10080])."""
    table = storage.read_parquet(features_info["features"])
    with storage.local_copy(features_info["activity"]) as path:
        activity = np.load(path)
    return table, activity


def pretrained_weights(size: str) -> Path | None:
    for name in (f"PAT-{size}_29k_weights.h5", f"PAT-{size}_29k_weights.pt", f"PAT-{size}.pt"):
        path = settings.pretrained_dir() / name
        if path.exists():
            return path
    return None


def prepare_encoder(features_info: dict, dag_run_id: str, size: str, pretrain_epochs: int,
                    progress: Callable[[str], None] | None = None) -> dict:
    """Fit the per-minute scaler on the training split, then load released PAT weights from
    models/pretrained/ or, when none are there, pretrain a masked autoencoder on the training split."""
    import tempfile

    import torch

    from biotune.mood import pat, pat_weights

    spec = get_spec(MODEL_NAMES[0])
    table, activity = load_features(features_info)
    train = activity[(table["split"] == "train").to_numpy()]
    scaler = pat.PATScaler().fit(train)
    out = storage.join(run_dir(dag_run_id), "encoder", size)
    weights = pretrained_weights(size)
    with tempfile.TemporaryDirectory() as tmp:
        scaler.save(str(Path(tmp) / "scaler.npz"))
        if weights is not None:
            if weights.suffix == ".h5":
                pat_weights.convert_keras_weights(str(weights), size, str(Path(tmp) / "encoder.pt"))
            else:
                model = pat.build_pat(size)
                pat_weights.load_encoder_weights(model, str(weights))  # checks the shapes
                torch.save(model.state_dict(), Path(tmp) / "encoder.pt")
            origin = f"released weights {weights.name}"
        else:
            if progress:
                progress(f"no PAT-{size} weights in {settings.pretrained_dir()}: masked-autoencoder "
                         f"pretraining on {len(train)} training participants for {pretrain_epochs} epochs")
            state = pat.pretrain_mae(scaler.transform(train), size=size, epochs=pretrain_epochs,
                                     batch_size=spec.training.batch_size, lr=1e-3, seed=spec.training.seed,
                                     progress=progress)
            torch.save(state, Path(tmp) / "encoder.pt")
            origin = f"masked-autoencoder pretraining ({pretrain_epochs} epochs, {len(train)} participants)"
        storage.upload_dir(tmp, out)
    return {"encoder": storage.join(out, "encoder.pt"), "scaler": storage.join(out, "scaler.npz"),
            "size": size, "origin": origin}


def _label_rows(table, label: str, split: str):
    mask = (table["split"] == split) & table[label].notna()
    return mask.to_numpy(), table.loc[mask, label].astype(int).to_numpy()


def train_model(model_name: str, features_info: dict, encoder_info: dict | None, dag_run_id: str,
                overrides: dict | None = None, progress: Callable[[str], None] | None = None) -> dict:
    """Fine-tune one registered model on the training split; early stopping on validation."""
    import tempfile

    from biotune.evaluation import youden_threshold

    overrides = {k: v for k, v in (overrides or {}).items() if v not in (None, "")}
    spec = get_spec(model_name)
    table, activity = load_features(features_info)
    tr, y_tr = _label_rows(table, spec.task, "train")
    va, y_va = _label_rows(table, spec.task, "val")
    for name, y in (("training", y_tr), ("validation", y_va)):
        if len(np.unique(y)) < 2:
            raise InputFormatError(f"the {name} split of {spec.task} has a single class ({len(y)} participants)",
                                   where=features_info["features"],
                                   fix="supply more participants (both classes are needed to train and gate)")
    out = storage.join(run_dir(dag_run_id), "models", model_name)
    params: dict = {"train_n": int(tr.sum()), "val_n": int(va.sum()), "train_prevalence": round(float(y_tr.mean()), 4)}
    with tempfile.TemporaryDirectory() as tmp:
        if spec.architecture.kind == "xgboost":
            from biotune.mood.features import SLEEP_FEATURE_NAMES
            from biotune.mood.xgb import train_xgb

            model = train_xgb(spec, table.loc[tr, SLEEP_FEATURE_NAMES], y_tr, table.loc[va, SLEEP_FEATURE_NAMES],
                              y_va, progress=progress)
            model.save_model(str(Path(tmp) / "model.json"))
            val_proba = model.predict_proba(table.loc[va, SLEEP_FEATURE_NAMES])[:, 1]
            params.update(spec.architecture.params, learning_rate=spec.training.learning_rate,
                          best_iteration=int(model.best_iteration))
            history: dict = {}
        else:
            from biotune.mood import pat

            with storage.local_copy(encoder_info["scaler"]) as path:
                scaler = pat.PATScaler.load(path)
            with storage.local_copy(encoder_info["encoder"]) as path:
                import torch

                encoder_state = torch.load(path, map_location="cpu")
            mode = overrides.get("pat_mode", spec.training.mode)
            epochs = int(overrides.get("epochs") or spec.training.epochs)
            model, history = pat.finetune(
                scaler.transform(activity[tr]), y_tr, scaler.transform(activity[va]), y_va,
                size=encoder_info["size"], mode=mode, epochs=epochs, batch_size=spec.training.batch_size,
                lr=spec.training.learning_rate, patience=spec.training.early_stopping_patience,
                encoder_state=encoder_state, seed=spec.training.seed, progress=progress)
            pat.save_pat_bundle(model, scaler, str(Path(tmp) / "bundle"))
            val_proba = pat.predict_proba(model, scaler.transform(activity[va]), batch_size=64)
            params.update(size=encoder_info["size"], mode=mode, epochs=epochs, encoder=encoder_info["origin"],
                          batch_size=spec.training.batch_size, learning_rate=spec.training.learning_rate)
        storage.upload_dir(tmp, out)
    threshold = youden_threshold(y_va, val_proba)
    from biotune.evaluation import binary_metrics

    val = binary_metrics(y_va, val_proba, threshold)
    if progress:
        progress(f"{model_name}: validation AUC {val['auc']:.3f}, threshold {threshold:.3f}")
    return {"model": model_name, "kind": spec.architecture.kind, "artifact": out, "threshold": threshold,
            "params": params, "val_metrics": {f"val_{k}": v for k, v in val.items() if k in ("auc", "pr_auc", "brier")},
            "history": {k: [round(float(x), 5) for x in v] for k, v in (history or {}).items() if isinstance(v, list)}}


def model_inputs(kind: str, table, activity, mask):
    """What a model of this kind takes as input, for the rows in ``mask``."""
    if kind == "xgboost":
        from biotune.mood.features import SLEEP_FEATURE_NAMES

        return table.loc[mask, SLEEP_FEATURE_NAMES].reset_index(drop=True)
    return activity[mask]


def evaluate_model(trained: dict, features_info: dict, dag_run_id: str) -> dict:
    """Score the challenger and the current champion on the same held-out test split."""
    import tempfile

    import mlflow.pyfunc

    from biotune import registry
    from biotune.evaluation import binary_metrics, binary_plots

    spec = get_spec(trained["model"])
    table, activity = load_features(features_info)
    te, y_te = _label_rows(table, spec.task, "test")
    x_te = model_inputs(trained["kind"], table, activity, te)
    with tempfile.TemporaryDirectory() as tmp:
        storage.download_dir(trained["artifact"], tmp)
        proba = _predictor(trained["kind"], tmp)(x_te)
        test = binary_metrics(y_te, proba, trained["threshold"])
        plots_dir = Path(tmp) / "plots"
        binary_plots(y_te, proba, trained["threshold"], plots_dir, f"{spec.name} (test)")
        plots_uri = storage.upload_dir(str(plots_dir), storage.join(run_dir(dag_run_id), "plots", spec.name))
    champion = registry.champion(spec.name)
    champion_value = None
    if champion is not None:
        champ_proba = np.asarray(mlflow.pyfunc.load_model(f"models:/{spec.name}@champion").predict(x_te))
        champion_value = binary_metrics(y_te, champ_proba, 0.5)[spec.gate.metric]
    metrics = {**trained["val_metrics"], **{f"test_{k}": v for k, v in test.items()}}
    return {**trained, "metrics": metrics, "plots": plots_uri,
            "challenger_value": test[spec.gate.metric], "champion_value": champion_value,
            "champion_version": champion.version if champion else None,
            "dataset": features_info["features"], "family_module": "biotune.mood.pipeline"}


def _predictor(kind: str, local_dir: str):
    if kind == "xgboost":
        from xgboost import XGBClassifier

        model = XGBClassifier()
        model.load_model(str(Path(local_dir) / "model.json"))
        return lambda x: model.predict_proba(x)[:, 1]
    from biotune.mood import pat

    model, scaler = pat.load_pat_bundle(str(Path(local_dir) / "bundle"))
    return lambda x: pat.predict_proba(model, scaler.transform(x), batch_size=64)


def log_model(candidate: dict, local_dir: str):
    """Log the candidate's model (inside the active MLflow run) as a pyfunc returning P(label)."""
    import mlflow.pyfunc
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    from biotune.mood.pyfunc import PATPyfunc, XGBPyfunc

    output = Schema([TensorSpec(np.dtype(np.float64), (-1,))])
    if candidate["kind"] == "xgboost":
        from biotune.mood.features import SLEEP_FEATURE_NAMES

        signature = ModelSignature(inputs=Schema([ColSpec("double", c) for c in SLEEP_FEATURE_NAMES]), outputs=output)
        return mlflow.pyfunc.log_model(name="model", python_model=XGBPyfunc(), signature=signature,
                                       artifacts={"model": str(Path(local_dir) / "model.json")})
    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 10080))]), outputs=output)
    return mlflow.pyfunc.log_model(name="model", python_model=PATPyfunc(), signature=signature,
                                   artifacts={"bundle": str(Path(local_dir) / "bundle")})


def training_frame(candidate: dict):
    """The training split's features and label: logged as the run's dataset and drift reference."""
    from biotune.mood.features import SLEEP_FEATURE_NAMES

    spec = get_spec(candidate["model"])
    table = storage.read_parquet(candidate["dataset"])
    rows = (table["split"] == "train") & table[spec.task].notna()
    return table.loc[rows, [*SLEEP_FEATURE_NAMES, spec.task]].reset_index(drop=True)
