"""The activity family's prepared dataset and daily batches, in the lake.

Prepared dataset (one per fine-tune run, under the run folder):

* ``windows.parquet``: one row per new-domain window -- ``window_id``, ``session``, ``person``,
  ``split`` (train/val/test, by person: a stable hash of the pseudonymous id), ``anxiety`` (class
  index), ``activity`` (class name) and the drift features (per-channel mean and sd of the window);
* ``windows.npy``: the windows themselves, (n, 200, 6) float32 in model units (m/s^2, deg/s), not
  scaled: the model bundle carries its scaler;
* ``source_windows.npy`` / ``source.parquet``: the source domain's windows and labels, for the 30%
  source share of the head-only transfer and the shift check's reference;
* ``config.json`` (the training config) and ``diagnostic.json`` (the pipeline diagnostic, which
  must pass before anything is prepared).

Daily batch: ``landing/activity/<YYYY-MM-DD>/batch.csv``, one device's IMU CSV for the day (the
session format; an optional ``label`` column), processed with ``pipeline.json`` beside it, else
``landing/activity/pipeline.json``, else the training pipeline's defaults (rate measured from the
timestamps). Gaps between recordings split the day into segments (windows never cross a gap).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from biotune import storage
from biotune.activity import SENSOR_COLS
from biotune.activity.config import PIPELINE_FILE, PipelineConfig, TrainingConfig, read_pipeline, read_training_config
from biotune.activity.windows import WindowSet, load_windows
from biotune.errors import DataValidationError, MissingInputError
from biotune.splits import assign_splits

TASK = "anxiety"  # the spec's task: the label column of windows and batches
FEATURES = [f"{ch}_{stat}" for ch in SENSOR_COLS for stat in ("mean", "sd")]
Progress = Callable[[str], None] | None


def drift_features(x: np.ndarray) -> pd.DataFrame:
    """Per-channel mean and sd of each window (unscaled, model units): the drift features."""
    x = np.asarray(x, dtype=np.float32)
    if len(x) == 0:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in FEATURES})
    mean, sd = x.mean(axis=1, dtype=np.float64), x.std(axis=1, dtype=np.float64)
    cols = {}
    for j, ch in enumerate(SENSOR_COLS):
        cols[f"{ch}_mean"], cols[f"{ch}_sd"] = mean[:, j], sd[:, j]
    return pd.DataFrame(cols)[FEATURES]


def _pipeline(folder: str, pipeline: str | None, tc: TrainingConfig) -> PipelineConfig:
    if pipeline:
        return read_pipeline(pipeline)
    candidate = storage.join(str(folder), PIPELINE_FILE)
    return read_pipeline(candidate) if storage.exists(candidate) else PipelineConfig.from_training(tc, scaler=None)


def prepare(params: dict, run_dir: str, val_fraction: float = 0.2, test_fraction: float = 0.2,
            progress: Progress = None) -> dict:
    """Diagnose the new-domain data, then write the prepared dataset (see the module docstring).

    ``params``: ``data`` (new-domain session folder), ``source`` (source-domain session folder),
    ``config`` (the deployed model's training config.json), optional ``pipeline`` and
    ``min_new_windows`` (default 500). Refuses (DataValidationError) a failing diagnostic, fewer
    labelled new-domain windows than required, or fewer than three people (train/val/test).
    """
    from biotune.activity.diagnose import diagnose
    from biotune.activity.transfer import MIN_NEW_WINDOWS, check_transfer_data

    for key in ("data", "source", "config"):
        if not params.get(key):
            raise MissingInputError(f"the activity run needs '{key}'", where="DAG params",
                                    fix="set data (new device's session CSVs), source (the source domain's) and "
                                        "config (the deployed model's config.json)")
    tc = read_training_config(params["config"]).require_consistent()
    diag = diagnose(params["data"], tc, params.get("pipeline"))
    report = storage.write_json(storage.join(run_dir, "diagnostic.json"), diag.to_dict())
    if not diag.ok:
        from biotune.activity.workflow import require_clean_pipeline

        require_clean_pipeline(diag)
    pipe = _pipeline(params["data"], params.get("pipeline"), tc)
    new = load_windows(params["data"], pipe, tc, scaler=False)
    check_transfer_data(new, int(params.get("min_new_windows") or MIN_NEW_WINDOWS), where=str(params["data"]))
    split_of = assign_splits(new.person, val_fraction, test_fraction)
    if len(set(split_of.values())) < 3:
        raise DataValidationError("refusing to prepare: fewer than three people in the new-domain data",
                                  where=str(params["data"]),
                                  fix="label sessions of at least three people (training, validation and test "
                                      "need different people)",
                                  failures=[f"people: {sorted(split_of)}"])
    src = load_windows(params["source"], _pipeline(params["source"], None, tc), tc, scaler=False)
    if not src.labelled or len(src) == 0:
        raise DataValidationError("refusing to prepare: the source-domain sessions are unlabelled",
                                  where=str(params["source"]), fix="point source at the labelled training sessions",
                                  failures=["no labelled source windows"])
    table = pd.DataFrame({
        "window_id": [f"{s}#{i}" for i, s in enumerate(new.session)],
        "session": new.session.astype(str), "person": new.person.astype(str),
        "split": [split_of[str(p)] for p in new.person],
        TASK: new.y.astype(np.int16), "activity": [tc.label_to_activity[int(c)] for c in new.y],
        "start_s": new.start_s,
    })
    table = pd.concat([table, drift_features(new.x)], axis=1)
    uris = {
        "uri": storage.write_parquet(table, storage.join(run_dir, "windows.parquet")),
        "x": _write_npy(new.x, storage.join(run_dir, "windows.npy")),
        "source_x": _write_npy(src.x, storage.join(run_dir, "source_windows.npy")),
        "source": storage.write_parquet(pd.DataFrame({"person": src.person.astype(str), TASK: src.y.astype(np.int16)}),
                                        storage.join(run_dir, "source.parquet")),
        "config": storage.write_text(storage.join(run_dir, "config.json"),
                                     storage.read_text(params["config"]) if storage.exists(params["config"]) else ""),
        "diagnostic": report,
    }
    counts = table["split"].value_counts().to_dict()
    if progress:
        progress(f"prepared {len(table)} new-domain windows ({counts}) from {table['person'].nunique()} people and "
                 f"{len(src)} source windows; diagnostic {diag.status}")
    return {**uris, "n_windows": int(len(table)), "n_source": int(len(src)),
            "splits": {k: int(v) for k, v in counts.items()}, "diagnostic_status": diag.status}


def _write_npy(arr: np.ndarray, uri: str) -> str:
    return storage.write_npy(arr, uri)


def _read_npy(uri: str) -> np.ndarray:
    return storage.read_npy(uri)


def load_split(dataset: dict, which: str) -> WindowSet:
    """One split of the prepared new-domain windows (unscaled)."""
    table = storage.read_parquet(dataset["uri"])
    x = _read_npy(dataset["x"])
    mask = (table["split"] == which).to_numpy()
    part = table[mask]
    return WindowSet(x[mask], part[TASK].to_numpy(np.int16), part["session"].to_numpy(object),
                     part["person"].to_numpy(object), part["start_s"].to_numpy(), scaled=False)


def load_source(dataset: dict) -> WindowSet:
    table = storage.read_parquet(dataset["source"])
    x = _read_npy(dataset["source_x"])
    n = len(table)
    return WindowSet(x, table[TASK].to_numpy(np.int16), np.array(["source"] * n, dtype=object),
                     table["person"].to_numpy(object), np.zeros(n), scaled=False)


def training_config(dataset: dict) -> TrainingConfig:
    return read_training_config(dataset["config"]).require_consistent()


def reference_frame(dataset: dict) -> pd.DataFrame:
    """The training split's drift features and label."""
    table = storage.read_parquet(dataset["uri"])
    return table.loc[table["split"] == "train", [*FEATURES, TASK]].reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# daily batches


def batch_pipeline(path: str) -> PipelineConfig:
    """The pipeline a batch is processed with: beside it, else the family's, else defaults."""
    folder = path.rsplit("/", 1)[0] if storage.is_s3(path) else str(Path(path).parent)
    for candidate in (storage.join(folder, PIPELINE_FILE), storage.lake_path("landing", "activity", PIPELINE_FILE)):
        if storage.exists(candidate):
            return read_pipeline(candidate).with_(on_gap="split")
    return PipelineConfig(input_hz=None, on_gap="split")


def read_batch(path: str) -> dict:
    """A day's IMU CSV -> unscaled windows, ids, labels (NaN when unlabelled) and drift features."""
    from biotune.activity.readers import read_session
    from biotune.activity.windows import make_windows

    pipe = batch_pipeline(path)
    segments = read_session(path, pipe)
    ws = make_windows(segments, pipe.window_size, pipe.step_size, None)
    if len(ws) == 0:
        from biotune.errors import InputFormatError

        raise InputFormatError(f"the batch holds no complete window ({pipe.window_size} samples at "
                               f"{pipe.target_hz:g} Hz)", where=path, fix="land at least one window of data")
    ids = np.array([f"{s}@{t:.2f}" for s, t in zip(ws.session, ws.start_s)], dtype=object)
    labels = pd.DataFrame({TASK: ws.y.astype("float64") if ws.y is not None else np.full(len(ws), np.nan)})
    return {"x": ws.x, "ids": ids, "labels": labels, "features": drift_features(ws.x)}


def validation_frame(path: str) -> pd.DataFrame:
    """One row per window for the batch suite: drift features, accelerometer magnitude, label."""
    batch = read_batch(path)
    frame = batch["features"].copy()
    frame.insert(0, "window_id", batch["ids"])
    frame["accel_magnitude"] = np.linalg.norm(batch["x"][:, :, :3], axis=2).mean(axis=1)
    frame["label"] = batch["labels"][TASK].to_numpy()
    return frame


__all__ = ["FEATURES", "TASK", "assign_splits", "batch_pipeline", "drift_features", "load_source", "load_split",
           "prepare", "read_batch", "reference_frame", "training_config", "validation_frame"]
