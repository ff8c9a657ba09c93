"""Apple Health export.zip -> per-person minute series and sleep episodes, in bounded memory.

Real exports are 1-5 GB of XML, so nothing here holds the file or its records:

1. The zip is checked before anything is read: every member name (zip slip: absolute paths,
   drive letters, ``..``), declared sizes and compression ratios (decompression bombs), and the
   presence of ``apple_health_export/export.xml``.
2. export.xml is streamed through expat in 1 MB blocks. The export's own internal DTD is
   accepted (the Health app writes one) but any entity declaration is refused at once, before
   it can expand (billion laughs / quadratic blow-up / external entities).
3. Only the records biotune needs (sleep analysis, steps, heart rate) are kept, in blocks of
   ``chunk_records``: dates are parsed vectorized, each record's own UTC offset kept, bad
   values raise a typed error naming the line, and the compact rows (~50 bytes) are appended
   to spill files on disk by 28-day bucket of their UTC start.
4. ``minutes.build_series`` then reads one bucket (plus its neighbours' spill-over) at a time
   and writes the per-minute series on the person's local clock (see minutes.py).

Peak memory is one parse block plus one bucket plus the output arrays (~20 bytes per minute
of the recorded span), independent of the file size.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator
from xml.parsers import expat

import numpy as np

from biotune.errors import InputFormatError, MissingInputError
from biotune.mood.personal import healthxml as hx

KIND_SLEEP, KIND_STEPS, KIND_HR = 0, 1, 2
KINDS = {hx.SLEEP_TYPE: KIND_SLEEP, hx.STEPS_TYPE: KIND_STEPS, hx.HR_TYPE: KIND_HR}
EXPECTED_UNITS = {KIND_STEPS: ("count",), KIND_HR: ("count/min",)}
BUCKET_SECONDS = 28 * 86400
READ_BLOCK = 1 << 20
MAX_RECORD_SECONDS = 48 * 3600
ROW = np.dtype([("kind", "u1"), ("src", "u2"), ("start", "i8"), ("end", "i8"), ("off", "i2"), ("value", "f8"),
                ("h", "i8"), ("line", "i8")])


class XMLBombError(InputFormatError):
    """export.xml declares entities (the shape of an XML bomb) or its zip is a decompression bomb."""


class ZipSlipError(InputFormatError):
    """A zip member name would escape the extraction directory."""


@dataclass
class Limits:
    max_xml_bytes: int = 20 * 1024 ** 3       # the largest real exports are ~5 GB
    max_ratio: float = 100.0                  # XML deflates ~10-30x; deflate bombs reach ~1000x
    chunk_records: int = 10_000             # records buffered before a flush (~1.5 KB each as attribute lists)
    max_record_seconds: int = MAX_RECORD_SECONDS


@dataclass
class ParseStats:
    where: str
    xml_bytes: int = 0
    records_seen: int = 0
    records_kept: dict[str, int] = field(default_factory=lambda: {"sleep": 0, "steps": 0, "heart_rate": 0})
    too_long: int = 0
    sources: list[str] = field(default_factory=list)
    offsets_min: list[int] = field(default_factory=list)
    utc_min: int | None = None
    utc_max: int | None = None
    local_min: int | None = None
    local_max: int | None = None
    seconds: float = 0.0
    buckets: list[int] = field(default_factory=list)


# ----------------------------------------------------------------------------- zip checks
def _unsafe_name(name: str) -> bool:
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or "\\" in name:
        return True
    return ".." in PurePosixPath(name).parts


@contextlib.contextmanager
def open_export_xml(path: str | os.PathLike, limits: Limits = Limits()) -> Iterator[tuple[object, str, int]]:
    """(binary stream of export.xml, where, size in bytes) from an export.zip or a bare export.xml."""
    path = str(path)
    if not Path(path).exists():
        raise MissingInputError(f"no file at {path}", where=path, fix="check the path to the export.zip")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as fh:
            head = fh.read(64)
            if path.endswith(".xml") or head.lstrip().startswith(b"<?xml"):
                fh.seek(0)
                yield fh, path, os.path.getsize(path)
                return
        raise InputFormatError(
            "not a zip file (or a truncated one: the zip directory at its end is missing)", where=path,
            fix="export again from the Health app (Profile > Export All Health Data) and copy the whole export.zip")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InputFormatError(f"the zip cannot be opened: {exc}", where=path,
                               fix="export again from the Health app and copy the whole export.zip") from exc
    with zf:
        infos = zf.infolist()
        for info in infos:
            if _unsafe_name(info.filename):
                raise ZipSlipError(f"zip member {info.filename!r} points outside the export folder (zip slip)",
                                   where=f"{path}:{info.filename}",
                                   fix="this is not a Health app export; do not extract it. Export again from the "
                                       "Health app")
        total = sum(i.file_size for i in infos)
        for info in infos:
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > 1 << 20 and ratio > limits.max_ratio:
                raise XMLBombError(
                    f"zip member {info.filename} expands {ratio:.0f}x ({info.compress_size:,} -> "
                    f"{info.file_size:,} bytes): a decompression bomb", where=f"{path}:{info.filename}",
                    fix=f"Health exports compress about 10-30x; if this file is genuine raise Limits.max_ratio "
                        f"(now {limits.max_ratio:g})")
        if total > limits.max_xml_bytes:
            raise XMLBombError(f"the zip expands to {total:,} bytes, above the limit of {limits.max_xml_bytes:,}",
                               where=path, fix="raise Limits.max_xml_bytes if this export is genuine")
        names = {i.filename: i for i in infos}
        info = names.get(hx.EXPORT_XML)
        if info is None:
            cands = [i for i in infos if PurePosixPath(i.filename).name.lower() == "export.xml"
                     and len(PurePosixPath(i.filename).parts) <= 2]
            info = cands[0] if cands else None
        if info is None:
            raise MissingInputError(f"the zip has no {hx.EXPORT_XML} ({len(infos)} members: "
                                    f"{', '.join(sorted(names)[:4])}{'...' if len(names) > 4 else ''})",
                                    where=path, fix="export again from the Health app: the zip it writes holds "
                                                    "apple_health_export/export.xml")
        try:
            stream = zf.open(info)
        except (zipfile.BadZipFile, NotImplementedError, OSError) as exc:
            raise InputFormatError(f"{info.filename} cannot be read from the zip: {exc}", where=path,
                                   fix="export again from the Health app") from exc
        with stream:
            yield stream, f"{path}:{info.filename}", info.file_size


# ----------------------------------------------------------------------------- dates and values
def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * (m + np.where(m > 2, -3, 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _fix_dates(texts: list, lines: np.ndarray, where: str, what: str, assume_offset: int | None) -> list:
    """Slow path: find the first date that is not 25 ASCII characters, or add the assumed offset."""
    out = []
    for t, ln in zip(texts, lines.tolist()):
        if isinstance(t, str) and len(t) == 25 and t.isascii():
            out.append(t)
            continue
        if isinstance(t, str) and len(t) == 19 and t.isascii():
            if assume_offset is None:
                raise InputFormatError(
                    f"{what} {t!r} has no UTC offset", where=f"{where}, line {ln}",
                    fix="Health exports write every date with its offset (e.g. '2024-03-01 23:12:00 -0700'): export "
                        "again from the Health app, or give the zone you know with --assume-offset +HHMM")
            sign = "+" if assume_offset >= 0 else "-"
            out.append(f"{t} {sign}{abs(assume_offset) // 60:02d}{abs(assume_offset) % 60:02d}")
            continue
        raise InputFormatError(f"{what} {t!r} is not 'YYYY-MM-DD HH:MM:SS +HHMM'", where=f"{where}, line {ln}",
                               fix="the record is damaged: export again from the Health app")
    return out


def parse_dates(texts: list, lines: np.ndarray, where: str, what: str,
                assume_offset: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """'YYYY-MM-DD HH:MM:SS +HHMM' -> (UTC seconds int64, offset minutes int16), vectorized."""
    n = len(texts)
    try:
        joined = "".join(texts).encode("ascii")
    except (TypeError, UnicodeEncodeError):
        joined = b""
    if len(joined) != 25 * n:
        texts = _fix_dates(texts, lines, where, what, assume_offset)
        joined = "".join(texts).encode("ascii")
    raw = np.frombuffer(joined, dtype="S25")
    b = raw.view(np.uint8).reshape(n, 25).astype(np.int64)
    dig = b - 48
    seps = {4: 45, 7: 45, 10: 32, 13: 58, 16: 58, 19: 32}
    digit_cols = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 21, 22, 23, 24]
    ok = np.ones(n, bool)
    for col, ch in seps.items():
        ok &= b[:, col] == ch
    ok &= (b[:, 20] == 43) | (b[:, 20] == 45)
    ok &= ((dig[:, digit_cols] >= 0) & (dig[:, digit_cols] <= 9)).all(axis=1)
    year = dig[:, 0] * 1000 + dig[:, 1] * 100 + dig[:, 2] * 10 + dig[:, 3]
    month, day = dig[:, 5] * 10 + dig[:, 6], dig[:, 8] * 10 + dig[:, 9]
    hh, mm, ss = dig[:, 11] * 10 + dig[:, 12], dig[:, 14] * 10 + dig[:, 15], dig[:, 17] * 10 + dig[:, 18]
    oh, om = dig[:, 21] * 10 + dig[:, 22], dig[:, 23] * 10 + dig[:, 24]
    ok &= (month >= 1) & (month <= 12) & (day >= 1) & (day <= 31) & (hh < 24) & (mm < 60) & (ss < 61)
    ok &= (oh <= 14) & (om < 60)
    if not ok.all():
        _fix_dates(texts, lines, where, what, assume_offset)   # names a wrong-length date exactly
        i = int(np.flatnonzero(~ok)[0])
        raise InputFormatError(f"{what} {texts[i]!r} is not a valid 'YYYY-MM-DD HH:MM:SS +HHMM' date",
                               where=f"{where}, line {int(lines[i])}",
                               fix="the record is damaged: export again from the Health app")
    off = np.where(b[:, 20] == 45, -1, 1) * (oh * 60 + om)
    days = _days_from_civil(year, month, day)
    utc = days * 86400 + hh * 3600 + mm * 60 + ss - off * 60
    return utc, off.astype(np.int16)


def _numbers(values: list, lines: np.ndarray, where: str, label: str) -> np.ndarray:
    try:
        out = np.array(values, dtype=np.float64)
    except (ValueError, TypeError):
        for v, ln in zip(values, lines):
            try:
                float(v)
            except (ValueError, TypeError):
                raise InputFormatError(f"{label} value {v!r} is not a number", where=f"{where}, line {int(ln)}",
                                       fix="the record is damaged: export again from the Health app") from None
        raise
    bad = ~np.isfinite(out) | (out < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputFormatError(f"{label} value {values[i]!r} is negative or not finite",
                               where=f"{where}, line {int(lines[i])}", fix="export again from the Health app")
    return out


# ----------------------------------------------------------------------------- the parser
class _Parser:
    """expat over export.xml; collects the wanted records in blocks and hands them to ``sink``."""

    def __init__(self, where: str, limits: Limits, sink: Callable[[np.ndarray], None],
                 assume_offset: int | None) -> None:
        self.where, self.limits, self.sink, self.assume_offset = where, limits, sink, assume_offset
        self.stats = ParseStats(where=where)
        self.sources: dict[str, int] = {}
        self.buf: list[tuple] = []
        self.seen_root = False
        p = expat.ParserCreate(encoding=None)
        p.buffer_text = True
        # attributes as a flat [name, value, ...] list: expat builds no dict per element, which is
        # most of the per-element cost on the millions of records biotune skips
        p.ordered_attributes = True
        p.specified_attributes = True
        p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        p.StartElementHandler = self._make_start()
        p.EntityDeclHandler = self._entity
        p.UnparsedEntityDeclHandler = self._unparsed_entity
        p.ExternalEntityRefHandler = self._external
        self.p = p
        self.n_records = 0

    def _entity(self, name, is_parameter, value, base, system_id, public_id, notation_name):
        kind = "parameter entity" if is_parameter else "entity"
        raise XMLBombError(
            f"export.xml declares the {kind} {name!r}: entity declarations are refused (XML bomb / external "
            "entity protection); the Health app never writes them",
            where=f"{self.where}, line {self.p.CurrentLineNumber}",
            fix="this file was not written by the Health app or was altered: export again from the Health app")

    def _unparsed_entity(self, name, base, system_id, public_id, notation_name):
        self._entity(name, False, None, base, system_id, public_id, notation_name)

    def _external(self, context, base, system_id, public_id):
        raise XMLBombError(f"export.xml references the external entity {system_id!r}",
                           where=f"{self.where}, line {self.p.CurrentLineNumber}",
                           fix="export again from the Health app")

    def _make_start(self):
        """The element handler as a closure over locals (attribute lookups cost on every element)."""
        get = KINDS.get
        buf = self.buf
        append = buf.append
        chunk = self.limits.chunk_records
        count = [0]
        self._count = count

        def start(name, attrs):
            if name != "Record":
                if name == "HealthData":
                    self.seen_root = True
                return
            count[0] += 1
            # the Health app writes type first; anything else is looked up by name
            kind = get(attrs[1]) if attrs and attrs[0] == "type" else get(dict(zip(attrs[::2], attrs[1::2])).get("type"))
            if kind is None:
                return
            append((kind, attrs, self.p.CurrentLineNumber))
            if len(buf) >= chunk:
                self.flush()
        return start

    def flush(self) -> None:
        if not self.buf:
            return
        buf = list(self.buf)
        self.buf.clear()
        kind = np.array([b[0] for b in buf], np.uint8)
        line = np.array([b[2] for b in buf], np.int64)
        # byte-identical records have identical attribute lists
        h = np.array([hash(tuple(b[1])) for b in buf], np.int64)
        ds = [dict(zip(b[1][::2], b[1][1::2])) for b in buf]
        rows = self._rows(kind, [d.get("sourceName", "") for d in ds], [d.get("startDate") for d in ds],
                          [d.get("endDate") for d in ds], [d.get("value") for d in ds], [d.get("unit") for d in ds],
                          h, line)
        if len(rows):
            self.sink(rows)

    def _rows(self, kind, src, start, end, value, unit, h, line) -> np.ndarray:
        where = self.where
        s_utc, s_off = parse_dates(list(start), line, where, "startDate", self.assume_offset)
        e_utc, _ = parse_dates(list(end), line, where, "endDate", self.assume_offset)
        bad = e_utc < s_utc
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputFormatError(f"record ends before it starts ({start[i]} -> {end[i]})",
                                   where=f"{where}, line {int(line[i])}",
                                   fix="the source app wrote a broken record: delete it in the Health app "
                                       "(Browse > the data type > Show All Data) and export again")
        vals = np.empty(len(kind), np.float64)
        sl = np.flatnonzero(kind == KIND_SLEEP)
        for i in sl.tolist():
            code = hx.SLEEP_VALUES.get(value[i])
            if code is None:
                raise InputFormatError(
                    f"unknown sleep analysis value {value[i]!r}", where=f"{where}, line {int(line[i])}",
                    fix=f"known values: {', '.join(sorted(hx.SLEEP_VALUES))}; a newer iOS may have added one: "
                        "update biotune (healthxml.SLEEP_VALUES)")
            vals[i] = code
        for k, label in ((KIND_STEPS, "step count"), (KIND_HR, "heart rate")):
            idx = np.flatnonzero(kind == k)
            if not len(idx):
                continue
            units = {unit[i] for i in idx.tolist()}
            wrong = units - set(EXPECTED_UNITS[k])
            if wrong:
                i = next(i for i in idx.tolist() if unit[i] in wrong)
                raise InputFormatError(f"{label} record in unit {unit[i]!r}", where=f"{where}, line {int(line[i])}",
                                       fix=f"Health exports write {label} in {EXPECTED_UNITS[k][0]!r}; convert the "
                                           "file or export again from the Health app")
            vals[idx] = _numbers([value[i] for i in idx.tolist()], line[idx], where, label)
        too_long = (e_utc - s_utc) > self.limits.max_record_seconds
        self.stats.too_long += int(too_long.sum())
        src_ids = np.fromiter((self.sources.setdefault(s, len(self.sources)) for s in src), np.int64, len(src))
        if len(self.sources) > 65_000:
            raise InputFormatError("more than 65,000 distinct sourceName values", where=where,
                                   fix="this is not a personal Health export")
        rows = np.empty(len(kind), ROW)
        rows["kind"], rows["src"], rows["start"], rows["end"] = kind, src_ids, s_utc, e_utc
        rows["off"], rows["value"], rows["h"], rows["line"] = s_off, vals, h, line
        rows = rows[~too_long]
        st = self.stats
        for k, name in ((KIND_SLEEP, "sleep"), (KIND_STEPS, "steps"), (KIND_HR, "heart_rate")):
            st.records_kept[name] += int((rows["kind"] == k).sum())
        if len(rows):
            lo, hi = int(rows["start"].min()), int(rows["end"].max())
            st.utc_min = lo if st.utc_min is None else min(st.utc_min, lo)
            st.utc_max = hi if st.utc_max is None else max(st.utc_max, hi)
            loc_lo = int((rows["start"] + rows["off"].astype(np.int64) * 60).min())
            loc_hi = int((rows["end"] + rows["off"].astype(np.int64) * 60).max())
            st.local_min = loc_lo if st.local_min is None else min(st.local_min, loc_lo)
            st.local_max = loc_hi if st.local_max is None else max(st.local_max, loc_hi)
            st.offsets_min = sorted(set(st.offsets_min) | set(np.unique(rows["off"]).tolist()))
        return rows

    def feed(self, stream) -> None:
        t0 = time.perf_counter()
        p = self.p
        try:
            while True:
                block = stream.read(READ_BLOCK)
                if not block:
                    break
                self.stats.xml_bytes += len(block)
                p.Parse(block, False)
            p.Parse(b"", True)
        except expat.ExpatError as exc:
            raise InputFormatError(f"export.xml is not well-formed XML: {expat.ErrorString(exc.code)}",
                                   where=f"{self.where}, line {exc.lineno}, column {exc.offset}",
                                   fix="the file is truncated or damaged: export again from the Health app") from exc
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise InputFormatError(f"export.xml is truncated or corrupt inside the zip ({exc})",
                                   where=f"{self.where}, after byte {self.stats.xml_bytes:,}",
                                   fix="copy the whole export.zip again (the transfer was cut) or export again") from exc
        if not self.seen_root:
            raise InputFormatError("no <HealthData> element: this is not an Apple Health export.xml", where=self.where,
                                   fix="pass the export.zip written by the Health app")
        self.flush()
        self.stats.records_seen = self._count[0]
        self.stats.sources = list(self.sources)
        self.stats.seconds = time.perf_counter() - t0


class Spill:
    """Compact record rows appended to per-bucket files under a temporary directory."""

    def __init__(self, directory: str) -> None:
        self.dir = Path(directory)
        self.buckets: set[int] = set()

    def __call__(self, rows: np.ndarray) -> None:
        b = rows["start"] // BUCKET_SECONDS
        order = np.argsort(b, kind="stable")
        rows, b = rows[order], b[order]
        cuts = np.flatnonzero(np.diff(b)) + 1
        for part in np.split(rows, cuts):
            k = int(part["start"][0] // BUCKET_SECONDS)
            with open(self.dir / f"{k}.bin", "ab") as fh:
                fh.write(part.tobytes())
            self.buckets.add(k)

    def load(self, k: int) -> np.ndarray:
        path = self.dir / f"{k}.bin"
        if not path.exists():
            return np.empty(0, ROW)
        return np.fromfile(path, dtype=ROW)


def parse_export(path: str | os.PathLike, spill_dir: str, limits: Limits = Limits(),
                 assume_offset: int | None = None) -> tuple[ParseStats, Spill]:
    """Stream export.xml into spill files; returns the statistics and the spill."""
    spill = Spill(spill_dir)
    with open_export_xml(path, limits) as (stream, where, _size):
        parser = _Parser(where, limits, spill, assume_offset)
        parser.feed(stream)
    stats = parser.stats
    stats.buckets = sorted(spill.buckets)
    return stats, spill


def parse_offset(text: str | None) -> int | None:
    """'+0100' / '-07:00' -> minutes; None stays None."""
    if text is None or text == "":
        return None
    m = re.fullmatch(r"([+-])(\d\d):?(\d\d)", text.strip())
    if not m:
        raise InputFormatError(f"offset {text!r} is not +HHMM", where="--assume-offset", fix="write e.g. -0700")
    sign = -1 if m.group(1) == "-" else 1
    return sign * (int(m.group(2)) * 60 + int(m.group(3)))


@contextlib.contextmanager
def spill_directory(base: str | None = None) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="biotune-health-", dir=base) as tmp:
        yield tmp


# ----------------------------------------------------------------------------- entry point
def quarantine_input(exc, path: str, run_id: str = ""):
    """Move the bad input to the lake's quarantine (the shared helper); the same error type, saying
    where it went."""
    if not Path(path).exists():
        return exc
    from biotune.validation import quarantine_input as shared

    return shared(str(path), exc, run_id)


def import_health(path: str | os.PathLike, limits: Limits = Limits(), assume_offset: int | None = None,
                  work_dir: str | None = None, quarantine: bool = True):
    """export.zip (or export.xml) -> (MinuteSeries, episodes frame, report dict).

    Bad input raises a typed error naming the file and line; with ``quarantine`` the input is
    moved to ``<lake>/quarantine/`` first.
    """
    from biotune.errors import BiotuneError
    from biotune.mood.personal.minutes import build_series

    t0 = time.perf_counter()
    try:
        with spill_directory(work_dir) as tmp:
            stats, spill = parse_export(path, tmp, limits, assume_offset)
            series, report, episodes = build_series(stats, spill)
    except BiotuneError as exc:
        if quarantine and Path(str(path)).exists():
            raise quarantine_input(exc, str(path)) from exc
        raise
    report.update({
        "input": Path(str(path)).name, "xml_bytes": stats.xml_bytes, "records_seen": stats.records_seen,
        "records_kept": stats.records_kept, "records_longer_than_48h_skipped": stats.too_long,
        "sources": stats.sources, "utc_offsets_min": stats.offsets_min, "parse_seconds": round(stats.seconds, 3),
        "seconds": round(time.perf_counter() - t0, 3),
        "mb_per_s": round(stats.xml_bytes / 1e6 / max(stats.seconds, 1e-9), 1)})
    return series, episodes, report
