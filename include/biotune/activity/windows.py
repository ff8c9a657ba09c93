"""Sliding windows (the seed's 200 samples x 6 channels, 50% overlap, majority label), vectorised.

Windows are strided views over each segment's samples (no Python loop over windows); the one copy
is into the preallocated output. The window label is the majority of its samples' labels, ties to
the lowest class index (what the seed's ``Series.mode()[0]`` gave). The scaler is applied to the
samples before windowing (each sample is then scaled once, not once per window it falls in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from biotune.activity import CLASSES, SENSOR_COLS
from biotune.activity.config import PipelineConfig, Scaler, TrainingConfig
from biotune.activity.readers import Segment, read_sessions
from biotune.errors import InputFormatError


@dataclass
class WindowSet:
    """Model input windows with their labels and where each came from."""

    x: np.ndarray  # (n, window, 6) float32
    y: np.ndarray | None  # (n,) int16, or None when unlabelled
    session: np.ndarray  # (n,) session id per window
    person: np.ndarray  # (n,) person id per window
    start_s: np.ndarray  # (n,) epoch seconds of each window's first sample
    scaled: bool = True

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, idx) -> "WindowSet":
        return WindowSet(self.x[idx], None if self.y is None else self.y[idx], self.session[idx],
                         self.person[idx], self.start_s[idx], self.scaled)

    @property
    def labelled(self) -> bool:
        return self.y is not None

    @staticmethod
    def concat(parts: Sequence["WindowSet"]) -> "WindowSet":
        parts = [p for p in parts if len(p)]
        if not parts:
            raise InputFormatError("no windows to combine", where="biotune.activity.windows.WindowSet.concat",
                                   fix="pass at least one non-empty window set")
        ys = [p.y for p in parts]
        return WindowSet(
            np.concatenate([p.x for p in parts]),
            None if any(y is None for y in ys) else np.concatenate(ys),
            np.concatenate([p.session for p in parts]), np.concatenate([p.person for p in parts]),
            np.concatenate([p.start_s for p in parts]), parts[0].scaled)


def n_windows(n: int, window: int, step: int) -> int:
    return 0 if n < window else (n - window) // step + 1


def window_view(values: np.ndarray, window: int, step: int) -> np.ndarray:
    """(n_windows, window, channels) read-only strided view of an (n, channels) array."""
    values = np.ascontiguousarray(values)
    nw = n_windows(values.shape[0], window, step)
    s0, s1 = values.strides
    return np.lib.stride_tricks.as_strided(values, shape=(nw, window, values.shape[1]),
                                           strides=(s0 * step, s0, s1), writeable=False)


def majority_labels(labels: np.ndarray, window: int, step: int, n_classes: int = len(CLASSES)) -> np.ndarray:
    """Majority label per window via one cumulative count per class (ties -> lowest class)."""
    nw = n_windows(len(labels), window, step)
    starts = np.arange(nw) * step
    counts = np.empty((nw, n_classes), dtype=np.int32)
    for c in range(n_classes):
        cs = np.concatenate([[0], np.cumsum(labels == c, dtype=np.int32)])
        counts[:, c] = cs[starts + window] - cs[starts]
    return counts.argmax(axis=1).astype(np.int16)


def make_windows(segments: Sequence[Segment], window: int, step: int, scaler: Scaler | None = None,
                 n_classes: int = len(CLASSES)) -> WindowSet:
    """Windows of every segment (none cross a segment boundary), scaled when a scaler is given."""
    counts = [n_windows(s.n, window, step) for s in segments]
    total = int(sum(counts))
    x = np.empty((total, window, len(SENSOR_COLS)), dtype=np.float32)
    labelled = bool(segments) and all(s.labels is not None for s in segments)
    y = np.empty(total, dtype=np.int16) if labelled else None
    session = np.empty(total, dtype=object)
    person = np.empty(total, dtype=object)
    start = np.empty(total, dtype=np.float64)
    at = 0
    for seg, nw in zip(segments, counts):
        if nw == 0:
            continue
        vals = scaler.transform(seg.values) if scaler is not None else seg.values
        x[at:at + nw] = window_view(vals, window, step)
        if y is not None:
            y[at:at + nw] = majority_labels(seg.labels, window, step, n_classes)
        session[at:at + nw] = seg.session
        person[at:at + nw] = seg.person
        start[at:at + nw] = seg.start_s + np.arange(nw) * step / seg.hz
        at += nw
    return WindowSet(x, y, session, person, start, scaled=scaler is not None)


def load_windows(data, pipe: PipelineConfig, training: TrainingConfig | None = None,
                 scaler: Scaler | None | bool = True) -> WindowSet:
    """Read a folder (or list) of session CSVs with ``pipe`` and cut scaled windows.

    ``scaler``: True -> the pipeline's scaler, else the training config's; a Scaler -> that one;
    False/None -> unscaled (model units).
    """
    label_map = training.activity_to_label() if training is not None else None
    n_classes = training.n_classes if training is not None else len(CLASSES)
    segs = read_sessions(data, pipe, label_map).segments
    if scaler is True:
        scaler = pipe.scaler or (training.scaler if training is not None else None)
        if scaler is None:
            raise InputFormatError("no scaler to apply: neither the pipeline config nor the training config has one",
                                   where=pipe.source or "pipeline config",
                                   fix="set 'scaler' in pipeline.json or scaler_mean/scaler_scale in config.json")
    return make_windows(segs, pipe.window_size, pipe.step_size, scaler or None, n_classes)
