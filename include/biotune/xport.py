"""SAS XPORT (v5) files: header parsing with truncation checks, small-table reads through
pyreadstat, and vectorised IBM -> IEEE decoding of fixed-width records.

The format is generic; biotune meets it as the NHANES releases from CDC, so the fixes in the
error messages point there. ``biotune.mood.nhanes`` builds the fast minute-file reader on it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from biotune.errors import InputFormatError, MissingInputError

CDC_URL = "https://wwwn.cdc.gov/Nchs/Nhanes/2013-2014/"
_LIB_HEADER = b"HEADER RECORD*******LIBRARY HEADER RECORD!!!!!!!"
_LIBV8_HEADER = b"HEADER RECORD*******LIBV8   HEADER RECORD!!!!!!!"
_MEMBER_HEADER = b"HEADER RECORD*******MEMBER  HEADER RECORD!!!!!!!"
_NAMESTR_HEADER = b"HEADER RECORD*******NAMESTR HEADER RECORD!!!!!!!"
_OBS_HEADER = b"HEADER RECORD*******OBS     HEADER RECORD!!!!!!!"


def _fix(path: Path | str) -> str:
    name = Path(path).name.upper().replace(".XPT", "")
    return (f"re-download {Path(path).name} from CDC ({CDC_URL}, Data File {name}.xpt) and "
            f"put it in {Path(path).parent}; do not open and re-save it in other software")


def _not_xport(path: Path | str, why: str) -> InputFormatError:
    return InputFormatError(f"{Path(path).name} is not a valid SAS XPORT (v5) file: {why}",
                            where=str(path), fix=_fix(path))



# ---------------------------------------------------------------------------------------
# XPORT layout
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class XptVariable:
    name: str
    kind: str  # "num" or "char"
    width: int
    offset: int  # byte offset inside an observation


@dataclass
class XptLayout:
    path: Path
    table_name: str
    variables: list[XptVariable]
    row_length: int
    data_offset: int
    n_rows: int
    by_name: dict[str, XptVariable] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_name = {v.name.upper(): v for v in self.variables}


def _pyreadstat_meta(path: Path):
    import pyreadstat

    try:
        return pyreadstat.read_xport(str(path), metadataonly=True)[1]
    except Exception as exc:  # ReadstatError, PyreadstatError, UnicodeDecodeError ...
        raise _not_xport(path, f"pyreadstat cannot read its header ({exc})") from exc


def _check_file(p: Path) -> int:
    """Size of the file at ``p``; a missing file, a directory, a symlink loop or an unreadable
    file each get their own typed error (never a raw OSError)."""
    from biotune import storage

    st = storage._stat(str(p))  # says "symlink loop" / "permission denied" rather than "missing"
    if st is None:
        raise MissingInputError(f"file {p.name} does not exist", where=str(p), fix=_fix(p))
    if p.is_dir():
        raise InputFormatError(f"{p} is a directory, not an XPORT file", where=str(p),
                               fix=f"give the path of the .XPT file inside it; {_fix(p)}")
    return int(st.st_size)


def xpt_layout(path: str | os.PathLike, check_with_pyreadstat: bool = True) -> XptLayout:
    """Parse and check the header of an XPORT v5 file; raise InputFormatError if it is not one."""
    p = Path(path)
    size = _check_file(p)
    try:
        with open(p, "rb") as fh:
            head = fh.read(min(size, 80 * 8 + 140 * 2000))
    except OSError as exc:
        from biotune.storage import os_error

        raise os_error(exc, str(p), "read") from exc
    if head.startswith(_LIBV8_HEADER):
        raise _not_xport(p, "it is SAS XPORT version 8, NHANES publishes version 5")
    if not head.startswith(_LIB_HEADER):
        raise _not_xport(p, "it does not start with the XPORT library header record"
                         + (" (the file is empty)" if size == 0 else ""))
    try:
        mem = head.index(_MEMBER_HEADER)
        namestr_len = int(head[mem + 74: mem + 78])
        ns = head.index(_NAMESTR_HEADER)
        nvars = int(head[ns + 54: ns + 58])
    except ValueError as exc:
        raise _not_xport(p, "its member or NAMESTR header record is missing or damaged") from exc
    block = ns + 80
    need = block + ((nvars * namestr_len + 79) // 80) * 80 + 80
    if len(head) < need:
        with open(p, "rb") as fh:
            head = fh.read(need)
        if len(head) < need:
            raise _not_xport(p, f"it is truncated ({size} bytes, the header alone needs {need})")
    variables = []
    for i in range(nvars):
        rec = head[block + i * namestr_len: block + (i + 1) * namestr_len]
        ntype = int.from_bytes(rec[0:2], "big")
        width = int.from_bytes(rec[4:6], "big")
        name = rec[8:16].decode("latin-1").strip()
        npos = int.from_bytes(rec[84:88], "big")
        if ntype not in (1, 2) or width == 0:
            raise _not_xport(p, f"variable #{i + 1} ({name or '?'}) has a damaged description "
                             f"(type {ntype}, width {width})")
        variables.append(XptVariable(name, "num" if ntype == 1 else "char", width, npos))
    obs = block + ((nvars * namestr_len + 79) // 80) * 80
    if head[obs: obs + len(_OBS_HEADER)] != _OBS_HEADER:
        raise _not_xport(p, "the observation header record is not where the header says")
    data_offset = obs + 80
    row_length = sum(v.width for v in variables)
    data_bytes = size - data_offset
    if data_bytes % 80 != 0:
        raise _not_xport(p, f"it is truncated: the data section ({data_bytes} bytes) is not a whole "
                         "number of 80-byte records")
    n_rows = data_bytes // row_length if row_length else 0
    if n_rows and data_bytes - n_rows * row_length < 80:
        # the last 80-byte record is blank-padded; a "row" made only of padding is not a row
        with open(p, "rb") as fh:
            while n_rows > 0 and data_bytes - (n_rows - 1) * row_length < 80 + row_length:
                fh.seek(data_offset + (n_rows - 1) * row_length)
                if fh.read(row_length).strip(b" ") == b"":
                    n_rows -= 1
                else:
                    break
    table_name = head[mem + 80 + 80 + 8: mem + 80 + 80 + 16].decode("latin-1").strip()
    layout = XptLayout(p, table_name, variables, row_length, data_offset, n_rows)
    if check_with_pyreadstat:
        meta = _pyreadstat_meta(p)
        if [c.upper() for c in meta.column_names] != [v.name.upper() for v in variables]:
            raise _not_xport(p, "its variable list does not match what pyreadstat reads")
    return layout


def require_columns(path: str | os.PathLike, available: Sequence[str], columns: Sequence[str]) -> None:
    have = {c.upper() for c in available}
    missing = [c for c in columns if c.upper() not in have]
    if missing:
        name = Path(path).name
        raise MissingInputError(
            f"{name} has no column(s) {', '.join(missing)}", where=str(path),
            fix=f"{name} must be the NHANES 2013-14 release with {', '.join(columns)}; "
            f"re-download it from CDC ({CDC_URL})")


# ---------------------------------------------------------------------------------------
# Small tables
# ---------------------------------------------------------------------------------------

def read_table(path: str | os.PathLike, columns: Sequence[str] | None = None, row_limit: int | None = None):
    """Read a small XPORT table (or its first ``row_limit`` rows) with pyreadstat into pandas.

    Character columns are stripped; numeric columns stay float64 as in the file.
    """
    import pyreadstat

    p = Path(path)
    layout = xpt_layout(p, check_with_pyreadstat=False)
    names = [v.name for v in layout.variables]
    usecols = None
    if columns is not None:
        require_columns(p, names, columns)
        upper = {n.upper(): n for n in names}
        usecols = [upper[c.upper()] for c in columns]
    try:
        df, _ = pyreadstat.read_xport(str(p), usecols=usecols, row_limit=row_limit or 0)
    except MemoryError as exc:
        raise InputFormatError(f"{p.name} is too large to read whole ({p.stat().st_size:,} bytes)", where=str(p),
                               fix="validate it in chunks (biotune.validation.validate_file streams XPORT files)"
                               ) from exc
    except Exception as exc:
        raise _not_xport(p, f"pyreadstat cannot read it ({exc})") from exc
    df.columns = [c.upper() for c in df.columns]
    for c in df.columns:
        if df[c].dtype == object:
            df[c] = df[c].map(lambda v: v.strip() if isinstance(v, str) else
                              (v.decode("latin-1").strip() if isinstance(v, bytes) else v))
    return df


def check_numeric(df, path: str | os.PathLike, columns: Sequence[str]) -> None:
    """Raise InputFormatError when a column that must hold numbers (e.g. SEQN) holds text.

    NHANES keys are numeric in the public release; text means the file was re-written by other
    software, and joining text ids to numeric ids silently matches nobody."""
    import pandas as pd

    name = Path(path).name
    for col in columns:
        if col not in df.columns:
            continue
        s = df[col]
        if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
            continue
        values = s.dropna()
        bad = values[pd.to_numeric(values, errors="coerce").isna()] if len(values) else values
        shown = ", ".join(repr(v) for v in bad.head(5).tolist())
        raise InputFormatError(
            f"{name}: column {col} holds text where NHANES has numbers"
            + (f" ({len(bad)} value(s) are not numbers at all, e.g. {shown})" if len(bad) else
               " (numbers stored as text)"),
            where=f"{path}, column {col}",
            fix=f"{col} must be a numeric column as in the CDC release; re-download {name} from CDC "
                f"({CDC_URL}) rather than a copy re-saved by other software")


def check_unique(df, path: str | os.PathLike, key: str = "SEQN") -> None:
    """Raise InputFormatError naming the duplicated ``key`` values of a per-person table."""
    dup = df[key][df[key].duplicated(keep=False)]
    if len(dup):
        vals = sorted({int(v) if v == v else v for v in dup})
        shown = ", ".join(str(v) for v in vals[:20]) + (" ..." if len(vals) > 20 else "")
        name = Path(path).name
        raise InputFormatError(
            f"{name} must have one row per {key} but {len(vals)} {key}(s) repeat: {shown}",
            where=str(path), fix=f"re-download {name} from CDC ({CDC_URL}); if you built it yourself, "
            f"keep one row per {key}")


# ---------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------

# value of an IBM double = fraction(56 bits) * _IBM_SCALE[first byte]; sign folded into the table
_IBM_SCALE = np.array([(-1.0 if b >= 0x80 else 1.0) * 16.0 ** ((b & 0x7F) - 64) * 2.0 ** -56
                       for b in range(256)], dtype=np.float64)


def ibm_to_ieee(raw: np.ndarray) -> np.ndarray:
    """8-byte IBM floats (big-endian uint64 or bytes) -> float64; SAS missing values -> NaN."""
    u = np.asarray(raw).view(">u8").astype(np.uint64)
    top = (u >> np.uint64(56)).astype(np.intp)
    u &= np.uint64(0x00FFFFFFFFFFFFFF)
    val = u.astype(np.float64)
    val *= _IBM_SCALE[top]
    zero = np.flatnonzero(val == 0)
    if len(zero):  # SAS missing: fraction 0 and first byte '.', 'A'-'Z' or '_'
        t = top[zero]
        miss = (t == 0x2E) | ((t >= 0x41) & (t <= 0x5A)) | (t == 0x5F)
        val[zero[miss]] = np.nan
    return val


def _decode(field_bytes: np.ndarray, var: XptVariable) -> np.ndarray:
    """One column of a chunk (structured field) -> float64 (character codes parsed as numbers)."""
    n = len(field_bytes)
    if var.kind == "num":
        if var.width == 8:
            return ibm_to_ieee(field_bytes)
        padded = np.zeros((n, 8), dtype=np.uint8)
        padded[:, : var.width] = field_bytes.view(np.uint8).reshape(n, var.width)
        return ibm_to_ieee(padded.view(">u8").reshape(n))
    if var.width == 1:
        b = field_bytes.view(np.uint8).astype(np.int16) - 48
        out = b.astype(np.float64)
        out[(b < 0) | (b > 9)] = np.nan
        return out
    import pandas as pd

    text = np.char.strip(field_bytes.view(f"S{var.width}")).astype(str)
    return pd.to_numeric(pd.Series(text), errors="coerce").to_numpy(np.float64)


# ---------------------------------------------------------------------------------------
# Streaming any table in chunks (validation of files too large for memory)
# ---------------------------------------------------------------------------------------

def numpy_readable(layout: XptLayout, columns: Sequence[str]) -> bool:
    """Can the fixed-width numpy path decode these columns (numbers of at most 8 bytes)?"""
    return all(layout.by_name[c.upper()].kind == "char" or layout.by_name[c.upper()].width <= 8
               for c in columns)


def iter_records(path: str | os.PathLike, layout: XptLayout, columns: Sequence[str], chunksize: int,
                 start_row: int = 0, stop_row: int | None = None) -> Iterator[np.ndarray]:
    """Yield structured arrays (one field per column, raw bytes) of rows [start_row, stop_row).

    The array is a view into one reused buffer: decode it before asking for the next chunk.
    A file that ends before the header's row count -> InputFormatError naming the row."""
    p = Path(path)
    stop = layout.n_rows if stop_row is None else min(stop_row, layout.n_rows)
    vars_ = [layout.by_name[c.upper()] for c in columns]
    dtype = np.dtype({"names": [v.name.upper() for v in vars_],
                      "formats": [f"V{v.width}" for v in vars_],
                      "offsets": [v.offset for v in vars_], "itemsize": layout.row_length})
    buf = bytearray(max(1, min(chunksize, max(stop - start_row, 1))) * layout.row_length)
    try:
        with open(p, "rb", buffering=0) as fh:
            row = start_row
            while row < stop:
                n = min(chunksize, stop - row)
                fh.seek(layout.data_offset + row * layout.row_length)
                view = memoryview(buf)[: n * layout.row_length]
                got = fh.readinto(view)
                if got != n * layout.row_length:
                    raise _not_xport(p, f"it is truncated: rows end early near row {row + got // layout.row_length:,}")
                yield np.frombuffer(buf, dtype=dtype, count=n)
                row += n
    except OSError as exc:
        from biotune.storage import os_error

        raise os_error(exc, str(p), "read") from exc


_ONE_CHAR = np.array([bytes([b]).decode("latin-1").strip(" \x00") for b in range(256)], dtype=object)


def decode_text(field_bytes: np.ndarray, var: XptVariable) -> np.ndarray:
    """A character column of a chunk -> stripped ``str`` values (latin-1), as the file holds them."""
    n = len(field_bytes)
    if var.width == 1:  # code columns (PAXPREDM...): one table lookup
        return _ONE_CHAR[field_bytes.view(np.uint8).reshape(n)]
    raw = field_bytes.view(f"S{var.width}").reshape(n)
    uniq, inverse = np.unique(raw, return_inverse=True)  # few distinct values in practice: decode those
    text = np.array([u.decode("latin-1").strip(" \x00") for u in uniq.tolist()], dtype=object)
    return text[inverse.reshape(n)]


def decode_number(field_bytes: np.ndarray, var: XptVariable) -> np.ndarray:
    """A numeric column of a chunk -> float64 (SAS missing -> NaN)."""
    return _decode(field_bytes, var)


def iter_frames(path: str | os.PathLike, columns: Sequence[str] | None = None, chunk_rows: int = 250_000,
                layout: XptLayout | None = None):
    """Yield the table as pandas frames of at most ``chunk_rows`` rows, the whole file.

    Numeric columns are float64, character columns the stripped text (so a suite sees what
    the file holds, e.g. PAXPREDM "1", or "X" for a damaged code). At least one frame is
    yielded (empty, with the columns, for a file without rows)."""
    import pandas as pd

    p = Path(path)
    layout = layout or xpt_layout(p)
    names = [v.name for v in layout.variables]
    if columns is None:
        columns = names
    require_columns(p, names, columns)
    vars_ = [layout.by_name[c.upper()] for c in columns]
    empty = True
    if numpy_readable(layout, columns):
        for rec in iter_records(p, layout, columns, chunk_rows):
            empty = False
            yield pd.DataFrame({v.name.upper(): (decode_text(rec[v.name.upper()], v) if v.kind == "char"
                                                 else decode_number(rec[v.name.upper()], v)) for v in vars_})
    else:  # unusual widths: pyreadstat, chunk by chunk
        import pyreadstat

        upper = {v.name.upper(): v.name for v in layout.variables}
        usecols = [upper[c.upper()] for c in columns]
        for row in range(0, layout.n_rows, chunk_rows):
            try:
                df, _ = pyreadstat.read_xport(str(p), usecols=usecols, row_offset=row, row_limit=chunk_rows)
            except Exception as exc:
                raise _not_xport(p, f"pyreadstat cannot read rows from {row:,} ({exc})") from exc
            df.columns = [c.upper() for c in df.columns]
            empty = False
            yield df
    if empty:
        yield pd.DataFrame({v.name.upper(): pd.Series([], dtype=object if v.kind == "char" else np.float64)
                            for v in vars_})
