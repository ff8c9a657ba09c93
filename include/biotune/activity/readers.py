"""Session CSV reader: one wrist-IMU session file -> model-unit samples at the model's rate.

A session CSV has a timestamp column, the six sensor columns and optionally a label column with
class names; the :class:`~biotune.activity.config.PipelineConfig` says which column is which, the
units, the declared input rate and the target rate. The reader checks the file strictly and
raises a typed error naming the file, the column, the line (1-based, header = line 1) and the fix
for: missing / unexpected / renamed columns, non-numeric sensor values, NaN bursts longer than
``max_nan_run`` samples (shorter ones are interpolated), missing / non-monotonic / duplicated
timestamps, gaps longer than one window (or, with ``on_gap="split"``, splits the session there),
and labels outside the model's label map.

Resampling: when the declared (or, if not declared, measured) input rate equals the target rate
the rows are used as they are (as a deployed pipeline would); otherwise the samples are box-
averaged over the rate ratio (anti-aliasing when downsampling) and linearly interpolated onto a
uniform grid at ``target_hz`` from the timestamps; labels take the nearest earlier sample's.

CSV parsing is pyarrow's multi-threaded reader; everything after it is vectorised numpy.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from biotune import storage
from biotune.activity import CLASSES, SENSOR_COLS
from biotune.activity.config import TIMESTAMP_UNITS, PipelineConfig
from biotune.errors import BiotuneError, InputFormatError, MissingInputError

RATE_TOLERANCE = 0.02  # declared and target rate closer than 2%: no resampling


@dataclass
class Segment:
    """A continuous stretch of one session, resampled, in model units (m/s^2, deg/s)."""

    file: str
    session: str
    person: str
    values: np.ndarray  # (n, 6) float32, model channel order
    labels: np.ndarray | None  # (n,) int16 class index, or None when unlabelled
    hz: float  # rate of ``values``
    start_s: float  # epoch seconds of the first sample
    measured_hz: float  # the file's rate, from its timestamps
    rows: int  # CSV rows this segment came from
    first_line: int = 2
    meta: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.values.shape[0])


def _line(row: int) -> int:
    return int(row) + 2  # data row 0 is line 2 (line 1 is the header)


def session_ids(path: str) -> tuple[str, str]:
    """(session, person) from a file name ``<person>_<session>.csv`` (person = the stem when no '_')."""
    stem = Path(str(path)).stem
    return stem, stem.split("_", 1)[0]


# --------------------------------------------------------------------------------------------
# columns


def _check_columns(names: list[str], pipe: PipelineConfig, where: str) -> tuple[list[str], str | None]:
    sensor = [pipe.column_for(ch)[0] for ch in SENSOR_COLS]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise InputFormatError(f"duplicated column name(s) {dup}", where=f"{where}: line 1 (header)",
                               fix="give every column its own name")
    if pipe.timestamp_col not in names:
        raise MissingInputError(f"timestamp column {pipe.timestamp_col!r} is missing (columns: {names})",
                                where=f"{where}: line 1 (header), column {pipe.timestamp_col!r}",
                                fix=f"name the time column {pipe.timestamp_col!r} or set timestamp_col in pipeline.json")
    label_col = pipe.label_col if pipe.label_col and pipe.label_col in names else None
    known = set(sensor) | {pipe.timestamp_col} | set(pipe.ignore_columns) | ({label_col} if label_col else set())
    extra = [n for n in names if n not in known]
    missing = [(ch, c) for ch, c in zip(SENSOR_COLS, sensor) if c not in names]
    if missing:
        ch, col = missing[0]
        guess = difflib.get_close_matches(col, extra, n=1, cutoff=0.3)
        hint = f"; the file has unexpected column(s) {extra}" if extra else ""
        fix = (f"rename column {guess[0]!r} to {col!r}, or map it in pipeline.json: \"columns\": {{\"{ch}\": "
               f"\"{guess[0]}\", ...}}" if guess else
               f"add the {ch} channel as column {col!r} (the model needs all of {list(SENSOR_COLS)})")
        raise MissingInputError(
            f"sensor column {col!r} (model channel {ch}) is missing" + hint
            + (f" -- {len(missing)} of 6 channels missing: {[c for _, c in missing]}" if len(missing) > 1 else ""),
            where=f"{where}: line 1 (header), column {col!r}", fix=fix)
    if extra:
        raise InputFormatError(
            f"unexpected column(s) {extra}: the pipeline reads {[pipe.timestamp_col, *sensor]}"
            + (f" + {pipe.label_col!r}" if pipe.label_col else ""),
            where=f"{where}: line 1 (header), column {extra[0]!r}",
            fix="drop the column(s), map them in pipeline.json 'columns' if they are sensor channels, or list "
                "them in 'ignore_columns'")
    return sensor, label_col


def _numeric(table, col: str, where: str, dtype=np.float64) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = table.column(col)
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type) or pa.types.is_null(arr.type):
        target = pa.float32() if dtype == np.float32 else pa.float64()
        return (arr if arr.type == target else pc.cast(arr, target)).to_numpy(zero_copy_only=False)
    import pandas as pd

    raw = arr.to_pandas()
    num = pd.to_numeric(raw, errors="coerce")
    bad = np.nonzero(num.isna().to_numpy() & raw.notna().to_numpy())[0]
    row = int(bad[0]) if len(bad) else 0
    raise InputFormatError(f"column {col!r} holds a non-number: {raw.iloc[row]!r}",
                           where=f"{where}: line {_line(row)}, column {col!r}",
                           fix="write plain numbers (decimal point '.', no units in the cells)")


# --------------------------------------------------------------------------------------------
# timestamps


def _timestamps(table, pipe: PipelineConfig, where: str) -> np.ndarray:
    """Epoch seconds (float64), checked: present, increasing, no duplicates."""
    import pyarrow as pa

    col = pipe.timestamp_col
    arr = table.column(col)
    if pipe.timestamp_unit == "iso" or pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type) \
            or pa.types.is_timestamp(arr.type):
        import pandas as pd

        raw = arr.to_pandas()
        ts = pd.to_datetime(raw, utc=True, errors="coerce", format="ISO8601" if not pa.types.is_timestamp(arr.type) else None)
        bad = np.nonzero(ts.isna().to_numpy())[0]
        if len(bad):
            raise InputFormatError(f"timestamp {raw.iloc[bad[0]]!r} cannot be read",
                                   where=f"{where}: line {_line(bad[0])}, column {col!r}",
                                   fix="write ISO-8601 times (2024-03-01T12:00:00.020Z) or epoch numbers with "
                                       "timestamp_unit set in pipeline.json")
        t = ts.astype("int64").to_numpy() / 1e9
    else:
        t = _numeric(table, col, where) * TIMESTAMP_UNITS[pipe.timestamp_unit]
        bad = np.nonzero(~np.isfinite(t))[0]
        if len(bad):
            raise InputFormatError("timestamp is missing", where=f"{where}: line {_line(bad[0])}, column {col!r}",
                                   fix="every row needs a timestamp; drop the row or fill the time in")
    if len(t) < 2:
        raise InputFormatError(f"session has {len(t)} row(s)", where=where, fix="a session needs at least one window")
    d = np.diff(t)
    back = np.nonzero(d < 0)[0]
    if len(back):
        i = int(back[0]) + 1
        raise InputFormatError(
            f"timestamps go backwards: {t[i]:.3f} s after {t[i - 1]:.3f} s ({(t[i - 1] - t[i]) * 1000:.0f} ms earlier)"
            + (f"; {len(back)} such places" if len(back) > 1 else ""),
            where=f"{where}: line {_line(i)}, column {col!r}",
            fix="sort the rows by timestamp (two exports appended out of order?) or split the file there")
    dup = np.nonzero(d == 0)[0]
    if len(dup):
        i = int(dup[0]) + 1
        raise InputFormatError(
            f"duplicated timestamp {t[i]:.3f} s (same as line {_line(i - 1)})"
            + (f"; {len(dup)} duplicates in the file" if len(dup) > 1 else ""),
            where=f"{where}: line {_line(i)}, column {col!r}",
            fix="drop the repeated rows (an export written twice?) or check the timestamp unit/precision")
    return t


def measured_rate(t: np.ndarray) -> float:
    """Sampling rate from timestamps: 1 / median interval (robust to jitter and gaps)."""
    d = np.diff(t)
    return float(1.0 / np.median(d)) if len(d) else float("nan")


# --------------------------------------------------------------------------------------------
# NaN bursts


def _fill_nans(x: np.ndarray, cols: Sequence[str], max_run: int, where: str) -> np.ndarray:
    """Interpolate NaN runs of at most ``max_run`` samples per column; longer runs are an error."""
    bad = ~np.isfinite(x)
    if not bad.any():
        return x
    for j in np.nonzero(bad.any(axis=0))[0]:
        b = bad[:, j].astype(np.int8)
        edges = np.diff(np.concatenate([[0], b, [0]]))
        starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
        runs = ends - starts
        longest = int(np.argmax(runs))
        if runs[longest] > max_run or runs.sum() == len(b):
            s, e = int(starts[longest]), int(ends[longest])
            raise InputFormatError(
                f"column {cols[j]!r} has {runs[longest]} missing values in a row (lines {_line(s)}-{_line(e - 1)}); "
                f"at most {max_run} are interpolated" + (f"; {len(runs)} gaps of NaN in the column" if len(runs) > 1 else ""),
                where=f"{where}: line {_line(s)}, column {cols[j]!r}",
                fix="cut the session at the dropout (two files), or raise max_nan_run in pipeline.json if "
                    "interpolating it is acceptable")
        ok = ~bad[:, j]
        idx = np.arange(len(b))
        x[bad[:, j], j] = np.interp(idx[bad[:, j]], idx[ok], x[ok, j])
    return x


# --------------------------------------------------------------------------------------------
# labels


def _labels(table, col: str, label_map: dict[str, int], where: str) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = table.column(col)
    if not pa.types.is_dictionary(arr.type):
        arr = pc.dictionary_encode(pc.cast(arr, pa.string()))
    if isinstance(arr, pa.ChunkedArray):  # one dictionary for all chunks, then one array
        arr = arr.unify_dictionaries().combine_chunks() if arr.num_chunks else pa.array([], arr.type)
    names = arr.dictionary.to_pylist()
    codes = arr.indices.to_numpy(zero_copy_only=False)
    if arr.null_count:
        row = int(np.nonzero(arr.is_null().to_numpy(zero_copy_only=False))[0][0])
        raise InputFormatError("label is empty", where=f"{where}: line {_line(row)}, column {col!r}",
                               fix=f"give every row a class name ({', '.join(label_map)}), or drop the label column "
                                   "for an unlabelled session")
    lut = np.array([label_map.get(str(n).strip(), -1) for n in names], dtype=np.int16)
    out = lut[codes]
    if (out < 0).any():
        row = int(np.nonzero(out < 0)[0][0])
        unknown = sorted({str(names[c]) for c in np.unique(codes[out < 0])})
        close = difflib.get_close_matches(unknown[0], list(label_map), n=1)
        raise InputFormatError(
            f"label(s) {unknown} are not in the model's label map ({len(label_map)} classes)",
            where=f"{where}: line {_line(row)}, column {col!r}",
            fix=(f"did you mean {close[0]!r}? " if close else "")
            + f"use one of {', '.join(label_map)}; relabel or drop those rows")
    return out


# --------------------------------------------------------------------------------------------
# resampling


def _box(x: np.ndarray, k: int) -> np.ndarray:
    """Centred moving average of length ``k`` along axis 0 (edges shrink the window).

    An even ``k`` has no centre sample, so two adjacent length-k boxes are averaged (weights
    1/2k at both ends): still centred, so the filter adds no delay."""
    if k <= 1:
        return x
    if k == 2 and len(x) >= 3:  # the common 100 -> 50 Hz case: weights 1/4, 1/2, 1/4 by slicing
        out = np.empty_like(x)
        np.add(x[:-2], x[2:], out=out[1:-1])
        out[1:-1] *= 0.25
        out[1:-1] += 0.5 * x[1:-1]
        out[0] = 0.75 * x[0] + 0.25 * x[1]  # the edges as the general formula leaves them
        out[-1] = 0.5 * (x[-2] + x[-1])
        return out
    n, h = x.shape[0], k // 2
    c = np.empty((n + 1, x.shape[1]), dtype=np.float64)
    c[0] = 0
    np.cumsum(x, axis=0, dtype=np.float64, out=c[1:])
    out = np.empty(c[1:].shape, dtype=np.float64)
    if n >= k:  # interior rows: full boxes, by slicing (no index arrays)
        np.subtract(c[k:], c[: n - k + 1], out=out[h: n - k + h + 1])
        out[h: n - k + h + 1] /= k
    edge = np.r_[np.arange(min(h, n)), np.arange(max(h, n - k + h + 1), n)]
    lo = np.clip(edge - h, 0, n)
    hi = np.clip(edge - h + k, 0, n)
    out[edge] = (c[hi] - c[lo]) / (hi - lo)[:, None]
    if k % 2 == 0:
        out[:-1] += out[1:]
        out[:-1] *= 0.5
    return out.astype(x.dtype)


def resample(t: np.ndarray, x: np.ndarray, labels: np.ndarray | None, in_hz: float, target_hz: float):
    """Onto a uniform grid at ``target_hz`` from ``t[0]``: box-filter then linear interpolation."""
    k = int(round(in_hz / target_hz))
    if k >= 2:
        x = _box(x, k)
    grid = t[0] + np.arange(int(np.floor((t[-1] - t[0]) * target_hz + 1e-9)) + 1) / target_hz
    out = np.empty((len(grid), x.shape[1]), dtype=np.float32)
    for j in range(x.shape[1]):
        out[:, j] = np.interp(grid, t, x[:, j])
    lab = None
    if labels is not None:
        idx = np.searchsorted(t, grid, side="right") - 1
        lab = labels[np.clip(idx, 0, len(t) - 1)]
    return grid, out, lab


# --------------------------------------------------------------------------------------------
# the reader


def read_session(path: str, pipe: PipelineConfig, label_map: dict[str, int] | None = None) -> list[Segment]:
    """Read one session CSV -> its segments (one, unless ``on_gap="split"`` cut it at gaps)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    path = str(path)
    where = path
    label_map = label_map if label_map is not None else {c: i for i, c in enumerate(CLASSES)}
    with storage.local_copy(path) as local:
        try:
            head = pacsv.open_csv(local, read_options=pacsv.ReadOptions(block_size=1 << 16))
            names = head.schema.names
            head.close()
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputFormatError(f"not a readable CSV file: {exc}", where=where,
                                   fix="export the session as comma-separated text with a header line") from exc
        sensor, label_col = _check_columns(names, pipe, where)
        types = {c: pa.float32() for c in sensor}  # IMU values need no more than float32 (the model's dtype)
        if label_col:
            types[label_col] = pa.dictionary(pa.int32(), pa.string())
        try:
            table = pacsv.read_csv(local, read_options=pacsv.ReadOptions(block_size=4 << 20),
                                   convert_options=pacsv.ConvertOptions(
                column_types=types, include_columns=[pipe.timestamp_col, *sensor] + ([label_col] if label_col else []),
                strings_can_be_null=True))
        except pa.ArrowInvalid as exc:
            # a typed column refused a cell: re-read untyped to name the column and line
            table = pacsv.read_csv(local)
            for c in sensor:
                _numeric(table, c, where)
            raise InputFormatError(f"CSV cannot be parsed: {exc}", where=where,
                                   fix="check the file is complete and has one value per column on every line") from exc
    t = _timestamps(table, pipe, where)
    x = np.empty((len(t), 6), dtype=np.float32)
    factors = pipe.unit_factors()
    for j, ch in enumerate(SENSOR_COLS):
        col, sign = pipe.column_for(ch)
        np.multiply(_numeric(table, col, where, np.float32), np.float32(sign * factors[j]), out=x[:, j])
    x = _fill_nans(x, [pipe.column_for(ch)[0] for ch in SENSOR_COLS], pipe.max_nan_run, where)
    labels = _labels(table, label_col, label_map, where) if label_col else None
    measured = measured_rate(t)
    in_hz = pipe.input_hz or measured
    session, person = session_ids(path)

    # gaps longer than a window: error, or cut into segments
    max_gap = pipe.window_size / pipe.target_hz
    gaps = np.nonzero(np.diff(t) > max_gap)[0]
    if len(gaps) and pipe.on_gap == "error":
        i = int(gaps[0]) + 1
        raise InputFormatError(
            f"{t[i] - t[i - 1]:.1f} s gap between lines {_line(i - 1)} and {_line(i)}, longer than one window "
            f"({max_gap:.1f} s)" + (f"; {len(gaps)} such gaps" if len(gaps) > 1 else ""),
            where=f"{where}: line {_line(i)}, column {pipe.timestamp_col!r}",
            fix="split the file at the gap into two sessions, or set \"on_gap\": \"split\" in pipeline.json")
    bounds = [0, *(gaps + 1).tolist(), len(t)]
    segments = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        ts, xs, ls = t[a:b], x[a:b], None if labels is None else labels[a:b]
        if abs(in_hz - pipe.target_hz) <= RATE_TOLERANCE * pipe.target_hz:
            vals, lab = xs.astype(np.float32), ls  # same rate: rows as they are
        else:
            if len(ts) < 2:
                continue
            _, vals, lab = resample(ts, xs, ls, in_hz, pipe.target_hz)
        segments.append(Segment(file=path, session=session if len(bounds) == 2 else f"{session}#{len(segments)}",
                                person=person, values=vals, labels=lab, hz=pipe.target_hz, start_s=float(ts[0]),
                                measured_hz=measured, rows=int(b - a), first_line=_line(a)))
    return segments


def list_sessions(folder: str) -> list[str]:
    """Session CSVs directly under ``folder`` (sorted)."""
    names = [n for n in storage.listdir(folder) if n.lower().endswith(".csv")]
    if not names:
        raise MissingInputError(f"no session CSV files in {folder}", where=folder,
                                fix="put one <person>_<session>.csv per session in the folder")
    return [storage.join(folder, n) for n in names]


@dataclass
class ReadResult:
    segments: list[Segment]
    errors: dict[str, BiotuneError]  # file -> the typed error (only with errors="collect")


def read_sessions(folder_or_files: str | Sequence[str], pipe: PipelineConfig,
                  label_map: dict[str, int] | None = None, errors: str = "raise") -> ReadResult:
    """Every session CSV of a folder (or the given files). ``errors="collect"`` keeps going and
    returns each bad file's typed error instead of raising the first one."""
    files = list_sessions(folder_or_files) if isinstance(folder_or_files, str) else list(folder_or_files)
    segments: list[Segment] = []
    bad: dict[str, BiotuneError] = {}
    for f in files:
        try:
            segments.extend(read_session(f, pipe, label_map))
        except BiotuneError as exc:
            if errors == "raise":
                raise
            bad[f] = exc
    return ReadResult(segments=segments, errors=bad)

