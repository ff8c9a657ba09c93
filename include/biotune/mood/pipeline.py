"""The mood population data, step by step: NHANES files -> validated cohort -> features -> PAT encoder.

The mood family (:mod:`biotune.mood.family`) calls these from the contract; training, evaluation
and publishing are the shared steps (:mod:`biotune.steps`). Steps hand each other paths and small
dicts, never frames, and write under a run directory keyed by the Airflow run, atomically.
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
LABELS = ["phq9_total", "depression", "benzodiazepine", "ssri"]
DAG_ID = "mood_population_finetune"


def __getattr__(name: str):
    if name == "MODEL_NAMES":  # the family's specs in models/, not a hard-coded list
        from biotune.steps import model_names

        return model_names("mood")
    raise AttributeError(name)


def default_source() -> str:
    return storage.lake_path("landing", "nhanes", "2013-2014")


def run_dir(dag_run_id: str) -> str:
    from biotune import steps

    return steps.run_dir(DAG_ID, dag_run_id)


def raw_tables(source: str) -> list[dict]:
    """One validation job per raw table present: path, suite, how many rows to read. Every
    required file must be there (MissingInputError naming each missing one) before work starts."""
    from biotune import validation
    from biotune.mood.nhanes import match_tables

    found = match_tables(storage.listdir(source), source)
    return [{"path": storage.join(source, found[table]), "suite": suite, "reader": "xpt"}
            for table, suite in RAW_SUITES.items() if table in found and validation.suite_path(suite).exists()]


def build_cohort(source: str, dag_run_id: str, progress: Callable[[str], None] | None = None) -> dict:
    """NHANES files -> cohort parquet (one row per participant), validated by the mood_cohort suite."""
    import tempfile

    from biotune import validation
    from biotune.mood import cohort, nhanes

    out = storage.join(run_dir(dag_run_id), "cohort.parquet")
    with _staged_source(source) as local_source, tempfile.TemporaryDirectory() as tmp:
        # the files must agree with each other (a minute file cut short passes each suite alone)
        nhanes.check_consistency(local_source, dag_run_id, report_dir=storage.join(run_dir(dag_run_id), "validation"))
        local_out = str(Path(tmp) / "cohort.parquet")
        report = _report_dict(cohort.build_cohort(local_source, local_out, progress=progress))
        frame, activity, state = cohort.load_cohort_arrays(local_out)
        # parquet first, then its report (both carry one build id: a kill in between is detected)
        storage.upload_file(local_out, out)
        storage.upload_file(local_out + ".report.json", out + ".report.json")
    # the suite sees the matrices as per-row arrays (views, no copy)
    checked = frame.assign(activity=list(activity), state=list(state))
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
    """PAT input (activity week, NaN as 0), the 36 mood_ml features and PAT's drift features (the
    activity week summarised: :mod:`biotune.mood.activity_week`), with labels and split."""
    from biotune.mood import cohort
    from biotune.mood.activity_week import activity_week_features
    from biotune.mood.features import mood_ml_features, sleep_from_paxpredm

    with storage.local_copy(cohort_info["cohort"]) as local:
        frame, activity, state = cohort.load_cohort_arrays(local)
    feats = mood_ml_features(sleep_from_paxpredm(state))
    split_spec = _split_spec().training
    table = frame[["SEQN", *LABELS]].reset_index(drop=True)
    table["split"] = [split_of(s, split_spec.seed, split_spec.validation_fraction, split_spec.test_fraction)
                      for s in table["SEQN"]]
    table = table.join(feats.reset_index(drop=True))
    # PAT's own drift features, from the minutes with their gaps (activity.npy below fills them with 0)
    table = table.join(activity_week_features(activity, state))
    activity_path = storage.join(run_dir(dag_run_id), "activity.npy")
    with storage.atomic_local_path(activity_path, suffix=".npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.nan_to_num(activity.astype(np.float32), nan=0.0))
    features_path = storage.write_parquet(table, storage.join(run_dir(dag_run_id), "features.parquet"))
    counts = table["split"].value_counts().to_dict()
    return {"features": features_path, "activity": activity_path, "n": int(len(table)),
            "splits": {k: int(v) for k, v in counts.items()}}


def _split_spec():
    """The spec whose seed and fractions split participants: one split for every mood model, so a
    champion and a challenger of any mood model are compared on people neither was trained on."""
    from biotune.family import get_family

    specs = sorted(get_family("mood").specs(), key=lambda s: s.name)
    if not specs:
        from biotune.steps import model_names

        model_names("mood")  # raises the clear "no spec" error
    return specs[0]


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
    return prepare_encoder_in(features_info, run_dir(dag_run_id), size, pretrain_epochs, _split_spec(), progress)


def prepare_encoder_in(features_info: dict, folder: str, size: str, pretrain_epochs: int, spec,
                       progress: Callable[[str], None] | None = None) -> dict:
    """Fit the per-minute scaler on the training split, then load released PAT weights from
    models/pretrained/ or, when none are there, pretrain a masked autoencoder on the training split."""
    import tempfile

    import torch

    from biotune.mood import pat, pat_weights

    table, activity = load_features(features_info)
    train = activity[(table["split"] == "train").to_numpy()]
    scaler = pat.PATScaler().fit(train)
    out = storage.join(folder, "encoder", size)
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


def train_model(model_name: str, features_info: dict, encoder_info: dict | None, dag_run_id: str,
                overrides: dict | None = None, progress: Callable[[str], None] | None = None) -> dict:
    """The shared train step for one mood model (kept for callers of the mood-only API)."""
    from biotune import steps

    dataset = {"family": "mood", "uri": features_info["features"], **features_info}
    return steps.train(model_name, dataset, {"pat": encoder_info} if encoder_info else None, dag_run_id,
                       overrides, progress)


def evaluate_model(trained: dict, features_info: dict, dag_run_id: str) -> dict:
    """The shared evaluate step for one mood model."""
    from biotune import steps

    return steps.evaluate(trained, {"family": "mood", "uri": features_info["features"], **features_info}, dag_run_id)
