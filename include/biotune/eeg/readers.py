"""Readers: Muse recordings (Mind Monitor or muse-lsl CSV) and the per-participant labels file.

A recording becomes samples on a uniform grid at the device rate. The rate is *measured*
from the timestamps over the whole recording (Mind Monitor stamps Bluetooth packets on
arrival, so neighbouring rows say nothing) and must agree with the expected rate; a stretch
with no rows longer than ``GAP_SECONDS`` (a disconnection) is kept on the grid as NaN, so the
windows that overlap it can be dropped later. Every bad input raises a typed error naming the
file, the participant and what to do.

Source layout: ``DIR/<participant>/*.csv`` (one or more sessions per participant) or
``DIR/<participant>.csv``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from biotune.eeg.formats import CHANNELS, FS
from biotune.errors import InputFormatError, MissingInputError

GAP_SECONDS = 0.5  # no rows for longer than this = a disconnection (packet jitter stays < 0.1 s)
RATE_TOLERANCE = 0.03  # the phone's clock against the headband's: real files measure 256.1-256.9 Hz
FLAT_STD_UV = 0.5
MAX_CLIPPED_FRACTION = 0.01
MAX_NAN_SECONDS = 0.1  # empty cells shorter than this are interpolated (a lost value or two)
_TIME_COLUMNS = ("timestamps", "timestamp", "time", "TimeStamp")
_PARTICIPANT_COLUMNS = ("participant", "participant_id", "subject", "subject_id", "id")
_REMISSION_COLUMNS = ("remission", "label", "remitted")
_TRUE = {"1", "1.0", "true", "yes", "y", "remission", "remitted"}
_FALSE = {"0", "0.0", "false", "no", "n", "non-remission", "nonremission", "not remitted"}


@dataclass
class Recording:
    """One session of one participant on a uniform grid (NaN where the headband was disconnected)."""
    participant: str
    path: str
    fmt: str  # mind_monitor | plain
    channels: tuple[str, ...]
    fs: float  # the grid's rate (the expected device rate, confirmed by the measurement)
    fs_measured: float
    start: pd.Timestamp
    data: np.ndarray  # (n, channels) float64 microvolts
    gap_samples: int = 0  # samples put on the grid for disconnections
    interpolated: int = 0  # empty cells filled by interpolation
    events: list[tuple[float, str]] = field(default_factory=list)  # (seconds from start, element)

    @property
    def seconds(self) -> float:
        return len(self.data) / self.fs


def _where(path: str, participant: str | None, extra: str = "") -> str:
    parts = [f"file {path}"]
    if participant:
        parts.append(f"participant {participant}")
    if extra:
        parts.append(extra)
    return ", ".join(parts)


def sniff_format(path: str) -> tuple[str, list[str]]:
    """('mind_monitor' | 'plain', header columns) from the first line."""
    p = Path(path)
    if not p.exists():
        raise MissingInputError(f"no recording at {path}", where=path, fix="check the --source directory")
    with open(p, "r", encoding="utf-8-sig", errors="replace") as fh:
        header = [c.strip() for c in fh.readline().rstrip("\r\n").split(",")]
    if header and header[0] == "TimeStamp" and any(c.startswith("RAW_") or c.startswith("Delta_") for c in header):
        return "mind_monitor", header
    if header and header[0].lower() in ("timestamps", "timestamp", "time"):
        return "plain", header
    raise InputFormatError(
        f"not a Muse recording: the header starts {','.join(header[:4])!r}", where=path,
        fix="export from Mind Monitor (TimeStamp,Delta_TP9,...,RAW_TP9,...) or write a plain CSV "
            "'timestamps,TP9,AF7,AF8,TP10' (Unix seconds, microvolts)")


def _numeric(frame: pd.DataFrame, column: str, path: str, participant: str, line_offset: int = 2) -> np.ndarray:
    if pd.api.types.is_float_dtype(frame[column]):
        return frame[column].to_numpy(dtype=np.float64)
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() & frame[column].notna() & (frame[column].astype(str).str.strip() != "")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputFormatError(f"column {column} holds a non-number {frame[column].iloc[i]!r}",
                               where=_where(path, participant, f"line {frame.index[i] + line_offset}"),
                               fix="remove or repair the line (re-export the recording)")
    return values.to_numpy(dtype=np.float64)


def _read_rows(path: str, participant: str, channels: tuple[str, ...]):
    """(times in s from the first sample row, (rows, ch) values, start timestamp, events, fmt)."""
    fmt, header = sniff_format(path)
    if fmt == "mind_monitor":
        wanted = {ch: f"RAW_{ch}" for ch in channels}
    else:
        wanted = {ch: (ch if ch in header else f"RAW_{ch}") for ch in channels}
    missing = [ch for ch, col in wanted.items() if col not in header]
    if missing:
        raise MissingInputError(
            f"channel(s) {', '.join(missing)} missing from the recording (columns: {', '.join(header[:30])})",
            where=_where(path, participant),
            fix="record with all four Muse electrodes (TP9, AF7, AF8, TP10), or build the dataset from the "
                f"channels present with --channels {','.join(c for c in channels if c not in missing) or 'TP9'}")
    time_col = header[0]
    usecols = [time_col, *wanted.values()] + (["Elements"] if fmt == "mind_monitor" and "Elements" in header else [])
    # Numbers parsed by the C parser; only when that fails is the file read as text to name the bad line.
    dtypes = {c: (np.float64 if c in wanted.values() else str) for c in usecols}
    if fmt == "plain":
        dtypes[time_col] = np.float64
    try:
        try:
            frame = pd.read_csv(path, usecols=usecols, dtype=dtypes, skipinitialspace=True)
        except ValueError:
            frame = pd.read_csv(path, usecols=usecols, dtype=str, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise InputFormatError(f"cannot parse the CSV: {exc}", where=_where(path, participant),
                               fix="re-export the recording; every line needs the header's number of fields") from exc
    events: list[tuple[pd.Timestamp, str]] = []
    if fmt == "mind_monitor":
        if "Elements" in frame:
            is_event = frame["Elements"].notna() & (frame["Elements"].str.strip() != "")
            ev = frame[is_event]
            frame = frame[~is_event]
        else:
            ev = frame.iloc[:0]
        try:
            stamps = pd.to_datetime(frame[time_col], format="%Y-%m-%d %H:%M:%S.%f")
        except (ValueError, TypeError):
            parsed = pd.to_datetime(frame[time_col], format="%Y-%m-%d %H:%M:%S.%f", errors="coerce")
            i = int(np.flatnonzero(parsed.isna().to_numpy())[0])
            raise InputFormatError(f"TimeStamp {frame[time_col].iloc[i]!r} is not 'YYYY-MM-DD HH:MM:SS.fff'",
                                   where=_where(path, participant, f"line {frame.index[i] + 2}"),
                                   fix="repair the line or re-export from Mind Monitor") from None
        if len(stamps) == 0:
            raise InputFormatError("the recording holds no sample rows", where=_where(path, participant),
                                   fix="record again: the file has a header and events only")
        start = stamps.iloc[0]
        t = (stamps - start).dt.total_seconds().to_numpy()
        ev_stamps = pd.to_datetime(ev[time_col], format="%Y-%m-%d %H:%M:%S.%f", errors="coerce")
        events = [((s - start).total_seconds(), str(e).strip()) for s, e in zip(ev_stamps, ev["Elements"]) if pd.notna(s)]
    else:
        t_abs = _numeric(frame, time_col, path, participant)
        if np.isnan(t_abs).any():
            i = int(np.flatnonzero(np.isnan(t_abs))[0])
            raise InputFormatError(f"empty {time_col} value", where=_where(path, participant, f"line {i + 2}"),
                                   fix="every row needs its timestamp (Unix seconds)")
        if len(t_abs) == 0:
            raise InputFormatError("the recording holds no sample rows", where=_where(path, participant),
                                   fix="record again")
        start = pd.Timestamp(t_abs[0], unit="s")
        t = t_abs - t_abs[0]
    values = np.column_stack([_numeric(frame, wanted[ch], path, participant) for ch in channels])
    lines = frame.index.to_numpy() + 2  # 1-based file line of each sample row (header is line 1)
    back = np.flatnonzero(np.diff(t) < 0)
    if len(back):
        i = int(back[0]) + 1
        raise InputFormatError(f"timestamps go backwards at line {lines[i]} ({t[i - 1]:.3f} s -> {t[i]:.3f} s)",
                               where=_where(path, participant, f"line {lines[i]}"),
                               fix="the rows were reordered or two recordings were pasted together: "
                                   "sort by the time column or split the file into sessions")
    return fmt, t, values, lines, start, events


def measure_rate(t: np.ndarray, gap_seconds: float = GAP_SECONDS) -> float:
    """Samples per second over the recording: (rows - 1) / span within each stretch between
    disconnections, pooled. Robust to packet bursts (rows ~1 ms apart, then ~47 ms)."""
    if len(t) < 2:
        return float("nan")
    cuts = np.flatnonzero(np.diff(t) > gap_seconds) + 1
    bounds = np.concatenate([[0], cuts, [len(t)]])
    samples, span = 0, 0.0
    for a, b in zip(bounds[:-1], bounds[1:]):
        if b - a >= 2 and t[b - 1] > t[a]:
            samples += b - a - 1
            span += t[b - 1] - t[a]
    return samples / span if span > 0 else float("nan")


def _nan_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True."""
    if not mask.any():
        return []
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def _on_grid(t: np.ndarray, values: np.ndarray, fs: float, gap_seconds: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Samples in order, with NaN rows standing for each disconnection: (grid, row index or -1, gap samples)."""
    cuts = np.flatnonzero(np.diff(t) > gap_seconds) + 1
    if len(cuts) == 0:
        return values, np.arange(len(values)), 0
    pieces, index, gap_total, prev = [], [], 0, 0
    for c in list(cuts) + [len(t)]:
        pieces.append(values[prev:c])
        index.append(np.arange(prev, c))
        if c < len(t):
            missing = max(0, int(round((t[c] - t[c - 1]) * fs)) - 1)
            pieces.append(np.full((missing, values.shape[1]), np.nan))
            index.append(np.full(missing, -1))
            gap_total += missing
        prev = c
    return np.concatenate(pieces), np.concatenate(index), gap_total


def read_recording(path: str, participant: str | None = None, *, channels: tuple[str, ...] = CHANNELS,
                   expected_fs: float = FS, rate_tolerance: float = RATE_TOLERANCE,
                   gap_seconds: float = GAP_SECONDS, max_nan_seconds: float = MAX_NAN_SECONDS,
                   on_nan: str = "error") -> Recording:
    """Read and check one recording; see the module docstring.

    ``on_nan``: what to do with runs of empty/NaN cells longer than ``max_nan_seconds`` in a
    channel: ``error`` (default) or ``drop`` (keep them as NaN so their windows are dropped).
    """
    participant = participant or Path(path).parent.name
    channels = tuple(channels)
    fmt, t, values, lines, start, events = _read_rows(path, participant, channels)
    fs_measured = measure_rate(t, gap_seconds)
    if not np.isfinite(fs_measured) or len(t) < expected_fs:
        raise InputFormatError(f"the recording is too short to measure its sampling rate ({len(t)} samples)",
                               where=_where(path, participant), fix="use recordings of at least a few seconds")
    if abs(fs_measured / expected_fs - 1.0) > rate_tolerance:
        raise InputFormatError(
            f"timestamps say {fs_measured:.1f} Hz; expected {expected_fs:g} Hz (+-{rate_tolerance:.0%})",
            where=_where(path, participant),
            fix=f"this is not a {expected_fs:g} Hz Muse EEG stream (check the device and that Mind Monitor's "
                "recording interval is 'Constant'); for another device set --sampling-rate to its rate")
    grid, row_of, gap_samples = _on_grid(t, values, expected_fs, gap_seconds)
    from_rows = row_of >= 0
    max_run = max(1, int(round(max_nan_seconds * expected_fs)))
    interpolated = 0
    for c, ch in enumerate(channels):
        col = grid[:, c]
        finite = col[np.isfinite(col)]
        if finite.size == 0:
            raise MissingInputError(f"channel {ch} is empty in every row", where=_where(path, participant, f"RAW_{ch}"),
                                    fix=f"the electrode never delivered data: re-record, or leave {ch} out with --channels")
        for a, b in _nan_runs(np.isnan(col) & from_rows):
            if b - a > max_run:
                if on_nan == "drop":
                    continue
                raise InputFormatError(
                    f"channel {ch} is empty/NaN for {b - a} consecutive samples ({(b - a) / expected_fs:.2f} s, "
                    f"lines {lines[row_of[a]]}-{lines[row_of[b - 1]]})",
                    where=_where(path, participant, f"lines {lines[row_of[a]]}-{lines[row_of[b - 1]]}, {ch}"),
                    fix="repair or cut that stretch of the recording, or pass --on-nan drop to drop the windows "
                        "that overlap it")
            lo, hi = a - 1, b  # short run: interpolate between the neighbours (or hold at an edge)
            left = col[lo] if lo >= 0 and np.isfinite(col[lo]) else np.nan
            right = col[hi] if hi < len(col) and np.isfinite(col[hi]) else np.nan
            if np.isnan(left) and np.isnan(right):
                continue
            left = right if np.isnan(left) else left
            right = left if np.isnan(right) else right
            col[a:b] = np.linspace(left, right, b - a + 2)[1:-1]
            interpolated += b - a
        hi, lo = finite.max(), finite.min()
        clipped = float(np.mean((finite >= hi) | (finite <= lo)))
        stuck = float(np.mean(np.diff(finite) == 0)) if finite.size > 1 else 1.0
        if finite.std() < FLAT_STD_UV or (stuck > 0.5 and clipped <= MAX_CLIPPED_FRACTION):
            raise InputFormatError(
                f"channel {ch} is flat (standard deviation {finite.std():.3f} uV, {stuck:.0%} of steps zero)",
                where=_where(path, participant, ch),
                fix=f"the {ch} electrode had no contact (see HSI_{ch}): re-record with the headband fitted, or "
                    f"leave {ch} out with --channels")
        if clipped > MAX_CLIPPED_FRACTION:
            raise InputFormatError(
                f"channel {ch} is saturated: {clipped:.1%} of samples sit at its limits ({lo:.2f} / {hi:.2f} uV)",
                where=_where(path, participant, ch),
                fix=f"the {ch} amplifier railed (loose electrode or movement): re-record, cut the saturated "
                    f"part, or leave {ch} out with --channels")
    return Recording(participant, str(path), fmt, channels, float(expected_fs), float(fs_measured), start, grid,
                     gap_samples=gap_samples, interpolated=interpolated, events=events)


def discover_recordings(source: str) -> dict[str, list[str]]:
    """participant -> its CSV files, from ``DIR/<participant>/*.csv`` or ``DIR/<participant>.csv``."""
    root = Path(source)
    if not root.is_dir():
        raise MissingInputError(f"no recordings directory {source}", where=str(source),
                                fix="point --source at a folder with one sub-folder (or one CSV) per participant")
    found: dict[str, list[str]] = {}
    for entry in sorted(root.iterdir()):
        if entry.is_dir():
            files = sorted(str(p) for p in entry.glob("*.csv"))
            if files:
                found[entry.name] = files
        elif entry.suffix.lower() == ".csv":
            found.setdefault(entry.stem, []).append(str(entry))
    if not found:
        raise MissingInputError(f"no CSV recordings under {source}", where=str(source),
                                fix="put each participant's Mind Monitor / muse-lsl CSVs in DIR/<participant>/")
    return found


def _pick(columns: list[str], names: tuple[str, ...]) -> str | None:
    lower = {c.strip().lower(): c for c in columns}
    return next((lower[n] for n in names if n in lower), None)


def read_labels(path: str) -> dict[str, int]:
    """participant -> remission (1) / non-remission (0) from a CSV with Participant, Remission columns."""
    p = Path(path)
    if not p.exists():
        raise MissingInputError(f"no labels file at {path}", where=str(path),
                                fix="write a CSV with columns Participant,Remission (one row per participant)")
    try:
        frame = pd.read_csv(p, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputFormatError(f"cannot parse the labels CSV: {exc}", where=str(path),
                               fix="one header line Participant,Remission then one row per participant") from exc
    pcol = _pick(list(frame.columns), _PARTICIPANT_COLUMNS)
    rcol = _pick(list(frame.columns), _REMISSION_COLUMNS)
    if pcol is None or rcol is None:
        raise MissingInputError(f"labels need a participant and a remission column; found {list(frame.columns)}",
                                where=str(path), fix="name the columns Participant and Remission")
    labels: dict[str, int] = {}
    first_line: dict[str, int] = {}
    for i, (pid, raw) in enumerate(zip(frame[pcol].str.strip(), frame[rcol].str.strip().str.lower())):
        line = i + 2
        if not pid:
            raise InputFormatError("empty participant id", where=f"{path}, line {line}", fix="fill in or remove the row")
        if raw in _TRUE:
            value = 1
        elif raw in _FALSE:
            value = 0
        else:
            raise InputFormatError(f"remission value {raw!r} for participant {pid} is not 0/1",
                                   where=f"{path}, line {line}, participant {pid}",
                                   fix="use 1 (remission) or 0 (non-remission)")
        if pid in labels and labels[pid] != value:
            raise InputFormatError(f"participant {pid} has two different labels (lines {first_line[pid]} and {line})",
                                   where=f"{path}, participant {pid}", fix="keep one row per participant")
        labels[pid] = value
        first_line.setdefault(pid, line)
    if not labels:
        raise InputFormatError("the labels file has no rows", where=str(path), fix="add one row per participant")
    return labels
