"""What a fine-tune run trains on, and the daily batches the champion scores.

``prepare_dataset`` turns recordings + labels into one prepared dataset under a run directory:

- ``<window>s_<channels>_primary_dataset.parquet``: the primary dataset (see ``primary``);
- ``windows.parquet``: one row per parent window: ``window_id`` ("<participant>/<parent id>"),
  Participant, session, parent_window_id, window_start, Remission, ``split`` (train / val / test,
  by participant, stratified, deterministic for the seed) and the band-power drift features;
- ``windows.npy``: the windows' samples (k, n_sub, channels, sub_samples) float32, row-aligned.

It returns a small JSON-able dict (URIs and counts) for XCom; ``load_split`` and
``reference_frame`` read a split back. A daily batch (``landing/eeg/<date>/batch.parquet``) is a
primary dataset whose Remission may be null: ``read_batch`` verifies it like any primary file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from biotune import storage
from biotune.eeg import processing
from biotune.eeg.finetune import WindowSet, participant_splits
from biotune.eeg.formats import CHANNELS
from biotune.eeg.primary import PrimaryDataset, build_primary, primary_filename, read_primary
from biotune.errors import InputFormatError

WINDOWS_FILE = "windows.parquet"
ARRAYS_FILE = "windows.npy"
BATCH_FILE = "batch.parquet"
ID_COLUMN = "window_id"
LABEL = "Remission"


def window_ids(participants, parent_ids) -> list[str]:
    return [f"{p}/{int(w):05d}" for p, w in zip(participants, parent_ids)]


def window_frame(data: PrimaryDataset) -> tuple[pd.DataFrame, np.ndarray]:
    """(one row per parent window with ids, label and drift features; the windows' samples)."""
    parents, x = data.windows()
    feats = processing.band_powers(x, data.channels, data.fs)
    frame = parents.copy()
    frame.insert(0, ID_COLUMN, window_ids(parents["Participant"], parents["parent_window_id"]))
    for j, name in enumerate(processing.band_power_names(data.channels)):
        frame[name] = feats[:, j]
    return frame, x


def feature_columns(channels=CHANNELS) -> list[str]:
    return processing.band_power_names(channels)


def _save_npy(x: np.ndarray, uri: str) -> str:
    return storage.write_npy(x, uri)


def _load_npy(uri: str) -> np.ndarray:
    return storage.read_npy(uri)


def prepare_dataset(source: str, labels: str, run_dir: str, *, window_seconds: float = 10.0,
                    sub_window_seconds: float = 0.25, channels=CHANNELS, val_fraction: float = 0.2,
                    test_fraction: float = 0.2, seed: int = 0, on_nan: str = "error", quarantine: bool = False,
                    run_id: str = "", progress: Callable[[str], None] | None = None) -> dict:
    """Recordings + labels -> the primary dataset, windows.parquet and windows.npy under ``run_dir``."""
    out = storage.join(str(run_dir), primary_filename(window_seconds, channels))
    report = build_primary(source, labels, out, window_seconds=window_seconds,
                           sub_window_seconds=sub_window_seconds, channels=channels, on_nan=on_nan,
                           quarantine=quarantine, run_id=run_id, progress=progress)
    data = read_primary(report["path"])
    frame, x = window_frame(data)
    split_of = participant_splits(data.participants(), val_fraction, test_fraction, seed)
    frame["split"] = frame["Participant"].map(split_of)
    windows_uri = storage.write_parquet(frame, storage.join(str(run_dir), WINDOWS_FILE))
    arrays_uri = _save_npy(x, storage.join(str(run_dir), ARRAYS_FILE))
    counts = frame.groupby("split").agg(windows=(ID_COLUMN, "size"), participants=("Participant", "nunique"))
    return {
        "primary": report["path"], "windows": windows_uri, "arrays": arrays_uri,
        "dataset_name": report["dataset_name"], "digest": report["digest"], "id_column": ID_COLUMN,
        "label": LABEL, "features": feature_columns(data.channels), "channels": list(data.channels),
        "fs": data.fs, "window_seconds": data.window_seconds, "sub_window_seconds": data.sub_window_seconds,
        "n_windows": int(len(frame)), "n_participants": int(frame["Participant"].nunique()),
        "splits": {s: {k: int(v) for k, v in row.items()} for s, row in counts.to_dict("index").items()},
        "remission": report["remission"], "dropped_windows": report["dropped_windows"], "seed": int(seed),
    }


def load_split(dataset: dict, which: str, allow_empty: bool = False) -> WindowSet:
    """One split of a prepared dataset: windows, labels and participant ids (``allow_empty``: an
    absent split gives zero windows instead of an error, for callers that report class counts)."""
    frame = storage.read_parquet(dataset["windows"], columns=[ID_COLUMN, "Participant", LABEL, "split"])
    rows = np.flatnonzero(frame["split"].to_numpy() == which)
    if len(rows) == 0 and not allow_empty:
        raise InputFormatError(f"the prepared dataset has no {which!r} split", where=dataset["windows"],
                               fix="prepare the dataset again (train / val / test are assigned by participant)")
    x = _load_npy(dataset["arrays"])
    if len(x) != len(frame):
        raise InputFormatError(f"windows.npy holds {len(x)} windows but windows.parquet {len(frame)} rows",
                               where=dataset["arrays"], fix="prepare the dataset again: the files are from two runs")
    return WindowSet(x[rows], frame[LABEL].to_numpy()[rows].astype(np.int64),
                     frame["Participant"].to_numpy()[rows].astype(str))


def split_participants(dataset: dict) -> dict[str, list[str]]:
    """split -> its participants (sorted)."""
    frame = storage.read_parquet(dataset["windows"], columns=["Participant", "split"]).drop_duplicates()
    return {s: sorted(g["Participant"].astype(str)) for s, g in frame.groupby("split")}


def reference_frame(dataset: dict) -> pd.DataFrame:
    """The training split's drift features and label (the drift reference)."""
    frame = storage.read_parquet(dataset["windows"])
    return frame.loc[frame["split"] == "train", [*dataset["features"], LABEL]].reset_index(drop=True)


# --------------------------------------------------------------------------- daily batches
@dataclass
class EEGBatch:
    path: str
    windows: pd.DataFrame  # one row per parent window: window_id, Participant, ..., Remission (NaN unlabelled), features
    x: np.ndarray          # (k, n_sub, channels, sub_samples)
    channels: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.windows)


def read_batch(path: str) -> EEGBatch:
    """A landed batch (primary format, labels optional), verified; typed errors for anything unusable."""
    data = read_primary(path, labels_required=False)
    frame, x = window_frame(data)
    return EEGBatch(str(path), frame, x, tuple(data.channels))


def batch_summary(path: str) -> pd.DataFrame:
    """One row per window for the batch suite: ids, label, sub-window count, RMS per channel, features."""
    batch = read_batch(path)
    out = batch.windows.copy()
    out["n_sub"] = batch.x.shape[1]
    rms = np.sqrt((batch.x.astype(np.float64) ** 2).mean(axis=(1, 3)))
    for c, ch in enumerate(batch.channels):
        out[f"rms_{ch}"] = rms[:, c]
    return out
