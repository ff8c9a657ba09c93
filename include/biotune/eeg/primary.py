"""The primary dataset: every participant's processed EEG as sub-window rows in one parquet file.

``{window}s_{channels}_primary_dataset.parquet`` (e.g. ``10s_TP9-AF7-AF8-TP10_primary_dataset.parquet``),
one row per sub-window:

| column | type | |
|---|---|---|
| Participant | string | |
| Remission | int8 | 1 remission, 0 non-remission (the participant's label; null in an unlabelled batch) |
| session | string | the recording's file name |
| parent_window_id | int32 | grid index of the parent window (per participant, continuing across sessions) |
| sub_window_id | int16 | 0 .. n_sub-1 inside the parent window |
| window_start, window_end | float64 | seconds from the session start (of the sub-window) |
| TP9, AF7, AF8, TP10 | fixed_size_list<float32> | the sub-window's samples, filtered, DC removed |

Rows are sorted Participant -> parent_window_id -> sub_window_id; the sampling rate, window
lengths and channels are in the parquet schema metadata (key ``biotune.eeg``). ``read_primary``
verifies the order, that every parent window holds all its sub-windows, one label per
participant and the signal lengths, on every read: a scrambled or edited file fails naming the
first bad row.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from biotune import storage
from biotune.eeg import processing
from biotune.eeg.formats import CHANNELS, FS
from biotune.eeg.readers import discover_recordings, read_labels, read_recording
from biotune.errors import BiotuneError, InputFormatError, MissingInputError

META_KEY = b"biotune.eeg"
FORMAT = "biotune-eeg-primary"
META_COLUMNS = ("Participant", "Remission", "session", "parent_window_id", "sub_window_id", "window_start", "window_end")
ORDER = ("Participant", "parent_window_id", "sub_window_id")


def channel_tag(channels) -> str:
    return "-".join(channels)


def primary_filename(window_seconds: float, channels=CHANNELS) -> str:
    return f"{window_seconds:g}s_{channel_tag(channels)}_primary_dataset.parquet"


def dataset_name(window_seconds: float, channels, n_windows: int) -> str:
    """The MLflow dataset name: ``EEG_{window}s_{channels}_{N}windows_primary``."""
    return f"EEG_{window_seconds:g}s_{channel_tag(channels)}_{int(n_windows)}windows_primary"


@dataclass
class PrimaryDataset:
    meta: pd.DataFrame        # one row per sub-window, META_COLUMNS
    signals: np.ndarray       # (rows, channels, sub_samples) float32
    channels: tuple[str, ...]
    fs: float
    window_seconds: float
    sub_window_seconds: float
    path: str = ""

    @property
    def n_sub(self) -> int:
        return int(round(self.window_seconds / self.sub_window_seconds))

    @property
    def n_windows(self) -> int:
        return len(self.meta) // self.n_sub

    def windows(self) -> tuple[pd.DataFrame, np.ndarray]:
        """(one row per parent window: Participant, Remission, session, parent_window_id, window_start;
        signals (k, n_sub, channels, sub_samples))."""
        first = self.meta.iloc[:: self.n_sub].reset_index(drop=True)
        parents = first[["Participant", "Remission", "session", "parent_window_id", "window_start"]].copy()
        x = self.signals.reshape(self.n_windows, self.n_sub, len(self.channels), self.signals.shape[-1])
        return parents, x

    def participants(self) -> pd.DataFrame:
        """Participant, Remission, windows (count)."""
        parents, _ = self.windows()
        return (parents.groupby("Participant", sort=True)
                .agg(Remission=("Remission", "first"), windows=("parent_window_id", "size")).reset_index())

    def features(self) -> pd.DataFrame:
        """Band-power drift features per parent window (Participant, parent_window_id, Remission + features)."""
        parents, x = self.windows()
        feats = processing.band_powers(x, self.channels, self.fs)
        out = parents[["Participant", "parent_window_id", "Remission"]].copy()
        for j, name in enumerate(processing.band_power_names(self.channels)):
            out[name] = feats[:, j]
        return out


def _say(progress: Callable[[str], None] | None, msg: str) -> None:
    if progress is not None:
        progress(msg)


def _file_error(exc: BiotuneError, path: str, quarantine: bool, run_id: str) -> BiotuneError:
    """Move the offending file aside (when asked) and say where it went."""
    if not quarantine:
        return exc
    dest = storage.quarantine(path, reason=str(exc), run_id=run_id)
    return type(exc)(exc.what, f"{exc.where} (moved to quarantine: {dest})", exc.fix)


def build_primary(source: str, labels: str, out: str, *, window_seconds: float = 10.0,
                  sub_window_seconds: float = 0.25, channels=CHANNELS, expected_fs: float = FS,
                  on_nan: str = "error", quarantine: bool = False, run_id: str = "",
                  progress: Callable[[str], None] | None = None) -> dict:
    """Read, check and process every recording under ``source`` with its label; write the primary
    parquet at ``out`` (a file, or a directory to hold ``primary_filename(...)``). Returns a report."""
    channels = tuple(channels)
    processing.window_sizes(window_seconds, sub_window_seconds, expected_fs)  # fail before any reading
    if str(out).endswith("/") or Path(out).is_dir():
        out = storage.join(str(out), primary_filename(window_seconds, channels))
    label_of = read_labels(labels)
    found = discover_recordings(source)
    unlabelled = sorted(set(found) - set(label_of))
    if unlabelled:
        listing = "; ".join(f"{p} ({Path(found[p][0]).name})" for p in unlabelled[:10])
        raise MissingInputError(
            f"{len(unlabelled)} participant(s) have recordings but no label: {listing}",
            where=f"labels {labels}, participant {unlabelled[0]}",
            fix=f"add a row '{unlabelled[0]},<0|1>' per participant to {Path(labels).name}, or move their "
                "recordings out of the source directory")
    unknown = sorted(set(label_of) - set(found))
    if unknown:
        raise InputFormatError(
            f"{len(unknown)} labelled participant(s) have no recording: {', '.join(unknown[:10])}",
            where=f"labels {labels}, participant {unknown[0]}",
            fix=f"remove their rows from {Path(labels).name} or add their recordings under {source}/<participant>/")
    w, s = processing.window_sizes(window_seconds, sub_window_seconds, expected_fs)
    n_sub = w // s
    metas, sigs = [], []
    report_sessions, dropped, gap_samples, interpolated = [], 0, 0, 0
    for pid in sorted(found):
        offset = 0
        kept_before = sum(len(m) for m in metas)
        for path in found[pid]:
            try:
                rec = read_recording(path, pid, channels=channels, expected_fs=expected_fs, on_nan=on_nan)
            except BiotuneError as exc:
                raise _file_error(exc, path, quarantine, run_id) from exc
            win = processing.process(rec.data, rec.fs, window_seconds, sub_window_seconds)
            k = len(win.parent_ids)
            sub_starts = win.starts[:, None] + np.arange(n_sub)[None, :] * (s / rec.fs)
            metas.append(pd.DataFrame({
                "Participant": pid, "Remission": np.int8(label_of[pid]), "session": Path(path).name,
                "parent_window_id": np.repeat(win.parent_ids + offset, n_sub).astype(np.int32),
                "sub_window_id": np.tile(np.arange(n_sub, dtype=np.int16), k),
                "window_start": sub_starts.reshape(-1), "window_end": sub_starts.reshape(-1) + s / rec.fs,
            }))
            sigs.append(win.signals.reshape(k * n_sub, len(channels), s))
            offset += len(rec.data) // w
            dropped += win.dropped
            gap_samples += rec.gap_samples
            interpolated += rec.interpolated
            report_sessions.append({"participant": pid, "file": path, "format": rec.fmt,
                                    "fs_measured": round(rec.fs_measured, 3), "seconds": round(rec.seconds, 2),
                                    "windows": k, "dropped_windows": win.dropped})
            _say(progress, f"{pid}: {Path(path).name} {rec.fmt} {rec.fs_measured:.2f} Hz measured, "
                           f"{rec.seconds:.0f} s, {k} windows ({win.dropped} dropped)")
        if sum(len(m) for m in metas) == kept_before:
            raise InputFormatError(
                f"participant {pid} has no complete {window_seconds:g} s window", where=f"participant {pid}, "
                f"files {', '.join(Path(p).name for p in found[pid])}",
                fix="use longer recordings, a shorter --window-seconds, or remove the participant")
    meta = pd.concat(metas, ignore_index=True)
    signals = np.concatenate(sigs)
    data = PrimaryDataset(meta, signals, channels, float(expected_fs), float(window_seconds), float(sub_window_seconds))
    write_primary(data, out)
    parts = data.participants()
    return {
        "path": str(out), "dataset_name": dataset_name(window_seconds, channels, data.n_windows),
        "digest": file_digest(out), "participants": int(len(parts)), "windows": int(data.n_windows),
        "rows": int(len(meta)), "dropped_windows": int(dropped), "gap_samples": int(gap_samples),
        "interpolated_samples": int(interpolated),
        "remission": {str(k): int(v) for k, v in parts["Remission"].value_counts().sort_index().items()},
        "channels": list(channels), "window_seconds": float(window_seconds),
        "sub_window_seconds": float(sub_window_seconds), "fs": float(expected_fs), "sessions": report_sessions,
    }


def write_primary(data: PrimaryDataset, out: str) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    meta = data.meta.sort_values(list(ORDER), kind="stable")
    if not meta.index.equals(pd.RangeIndex(len(meta))):  # keep rows and signals together
        data = PrimaryDataset(meta.reset_index(drop=True), data.signals[meta.index.to_numpy()], data.channels,
                              data.fs, data.window_seconds, data.sub_window_seconds)
        meta = data.meta
    s = data.signals.shape[-1]
    arrays = {
        "Participant": pa.array(meta["Participant"].astype(str).tolist(), pa.string()),
        "Remission": pa.array(meta["Remission"].astype("Int8"), type=pa.int8(), from_pandas=True),
        "session": pa.array(meta["session"].astype(str).tolist(), pa.string()),
        "parent_window_id": pa.array(meta["parent_window_id"].to_numpy(np.int32)),
        "sub_window_id": pa.array(meta["sub_window_id"].to_numpy(np.int16)),
        "window_start": pa.array(meta["window_start"].to_numpy(np.float64)),
        "window_end": pa.array(meta["window_end"].to_numpy(np.float64)),
    }
    for c, ch in enumerate(data.channels):
        flat = pa.array(np.ascontiguousarray(data.signals[:, c, :], dtype=np.float32).reshape(-1))
        arrays[ch] = pa.FixedSizeListArray.from_arrays(flat, s)
    info = {"format": FORMAT, "version": 1, "fs": data.fs, "window_seconds": data.window_seconds,
            "sub_window_seconds": data.sub_window_seconds, "channels": list(data.channels), "sub_samples": int(s)}
    table = pa.table(arrays).replace_schema_metadata({META_KEY: json.dumps(info).encode()})
    with storage.atomic_local_path(str(out), suffix=".parquet") as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return str(out)


def file_digest(uri: str) -> str:
    h = hashlib.sha256()
    with storage.local_copy(str(uri)) as local, open(local, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


_REBUILD = "rebuild it with `biotune eeg primary --source DIR --labels FILE.csv --out FILE.parquet`"


def _row_desc(p, w, s, i) -> str:
    return f"row {i} (Participant {p[i]}, parent_window_id {w[i]}, sub_window_id {s[i]})"


def verify_order(participant: np.ndarray, parent: np.ndarray, sub: np.ndarray, where: str) -> None:
    """Strictly increasing (Participant, parent_window_id, sub_window_id); else name the first bad row."""
    if len(participant) < 2:
        return
    p = participant.astype(str)
    lt = p[1:] > p[:-1]
    eq = p[1:] == p[:-1]
    ok = lt | (eq & ((parent[1:] > parent[:-1]) | ((parent[1:] == parent[:-1]) & (sub[1:] > sub[:-1]))))
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0]) + 1
        raise InputFormatError(
            f"the primary dataset is not sorted Participant -> parent_window_id -> sub_window_id: "
            f"{_row_desc(p, parent, sub, i)} comes after {_row_desc(p, parent, sub, i - 1)}",
            where=f"{where}, row {i}, participant {p[i]}",
            fix=f"the file was re-sorted or edited after it was written: {_REBUILD}")


def read_primary(uri: str, verify: bool = True, labels_required: bool = True) -> PrimaryDataset:
    """Load a primary dataset and (by default) verify it; see the module docstring.

    ``labels_required=False`` accepts null Remission (a daily batch: most rows are unlabelled)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    uri = str(uri)
    with storage.local_copy(uri) as local:
        try:
            table = pq.read_table(local)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputFormatError(f"not a parquet file ({exc})", where=uri, fix=_REBUILD) from exc
    raw_info = (table.schema.metadata or {}).get(META_KEY)
    info = json.loads(raw_info) if raw_info else {}
    channels = tuple(info.get("channels") or [c for c in CHANNELS if c in table.column_names])
    missing = [c for c in (*META_COLUMNS, *channels) if c not in table.column_names]
    if missing or not channels:
        raise MissingInputError(f"the primary dataset lacks column(s) {missing or 'for any channel'}", where=uri,
                                fix=_REBUILD)
    if not info:
        raise InputFormatError("the primary dataset has no biotune.eeg metadata (rate, windows, channels)",
                               where=uri, fix=f"it was rewritten by another tool: {_REBUILD}")
    meta = table.select(list(META_COLUMNS)).to_pandas()
    fs, ws, ss = float(info["fs"]), float(info["window_seconds"]), float(info["sub_window_seconds"])
    sub_samples = int(info["sub_samples"])
    sigs = []
    for ch in channels:
        col = table.column(ch).combine_chunks()
        lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
        if len(lengths) and (lengths != sub_samples).any():
            i = int(np.flatnonzero(lengths != sub_samples)[0])
            raise InputFormatError(f"channel {ch} holds {lengths[i]} samples in row {i}; expected {sub_samples}",
                                   where=f"{uri}, row {i}, participant {meta['Participant'].iloc[i]}", fix=_REBUILD)
        sigs.append(pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, sub_samples))
    signals = np.stack(sigs, axis=1) if sigs else np.zeros((0, 0, sub_samples), np.float32)
    data = PrimaryDataset(meta, signals, channels, fs, ws, ss, path=uri)
    if verify:
        _verify(data, uri, labels_required)
    return data


def _verify(data: PrimaryDataset, where: str, labels_required: bool = True) -> None:
    m = data.meta
    p = m["Participant"].to_numpy().astype(str)
    parent = m["parent_window_id"].to_numpy()
    sub = m["sub_window_id"].to_numpy()
    verify_order(p, parent, sub, where)
    n_sub = data.n_sub
    if len(m) == 0:
        raise InputFormatError("the primary dataset holds no rows", where=where, fix=_REBUILD)
    expected_sub = np.tile(np.arange(n_sub), len(m) // n_sub + 1)[: len(m)]
    start_of = np.ones(len(m), dtype=bool)  # a parent window starts where participant or parent changes
    start_of[1:] = (p[1:] != p[:-1]) | (parent[1:] != parent[:-1])
    # with strict order, complete windows <=> sub ids run 0..n_sub-1 and restart exactly at each new window
    bad = (sub != expected_sub) | (start_of != (expected_sub == 0))
    if bad.any() or len(m) % n_sub:
        i = int(np.flatnonzero(bad)[0]) if bad.any() else len(m) - 1
        raise InputFormatError(
            f"parent window incomplete: {_row_desc(p, parent, sub, i)}; every parent window needs sub-windows "
            f"0..{n_sub - 1}", where=f"{where}, row {i}, participant {p[i]}", fix=_REBUILD)
    rem = m["Remission"].to_numpy(dtype=np.float64, na_value=np.nan)
    known = ~np.isnan(rem)
    if labels_required and not known.all():
        i = int(np.flatnonzero(~known)[0])
        raise InputFormatError(f"Remission is missing in row {i}", where=f"{where}, row {i}, participant {p[i]}",
                               fix=f"every participant of a training dataset needs a label: {_REBUILD}")
    if not np.isin(rem[known], (0, 1)).all():
        i = int(np.flatnonzero(known & ~np.isin(rem, (0, 1)))[0])
        raise InputFormatError(f"Remission {rem[i]:g} in row {i} is not 0/1", where=f"{where}, row {i}, participant {p[i]}",
                               fix=_REBUILD)
    same = (rem[1:] == rem[:-1]) | (np.isnan(rem[1:]) & np.isnan(rem[:-1]))
    changes = (p[1:] == p[:-1]) & ~same
    if changes.any():
        i = int(np.flatnonzero(changes)[0]) + 1
        raise InputFormatError(f"participant {p[i]} has two Remission labels (row {i})",
                               where=f"{where}, row {i}, participant {p[i]}", fix=_REBUILD)
    if not np.isfinite(data.signals).all():
        i = int(np.flatnonzero(~np.isfinite(data.signals).all(axis=(1, 2)))[0])
        raise InputFormatError(f"row {i} holds NaN or infinite samples", where=f"{where}, row {i}, participant {p[i]}",
                               fix=_REBUILD)
