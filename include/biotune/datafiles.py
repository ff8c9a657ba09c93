"""What a landed file is, and reading it for validation: whole, first rows, or in chunks.

The bytes decide the format (``sniff``): an XPORT file given to the parquet reader, a parquet
file cut short, a CSV that does not parse, each raise InputFormatError saying which reader
fits, instead of a parser's traceback. ``iter_file`` streams any size in bounded memory
(XPORT through the fixed-width numpy reader of :mod:`biotune.xport`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from biotune import storage
from biotune.errors import BiotuneError, InputFormatError

READERS = ("parquet", "csv", "jsonl", "xpt")
DEFAULT_CHUNK_ROWS = 1_000_000  # ~130 MB per chunk of the minute file; fewer GX calls (measured)

_XPT_MAGIC = b"HEADER RECORD*******LIB"
_DESCRIPTION = {"xpt": "SAS XPORT", "parquet": "Parquet", "zip": "ZIP archive", "gzip": "gzip-compressed"}


def sniff(local: str) -> str | None:
    """The format a file's bytes say it is: xpt, parquet, zip, gzip, or None (text or unknown)."""
    try:
        with open(local, "rb") as fh:
            head = fh.read(80)
            fh.seek(0, 2)
            size = fh.tell()
            tail = b""
            if size >= 4:
                fh.seek(size - 4)
                tail = fh.read(4)
    except OSError as exc:
        raise storage.os_error(exc, local, "read") from exc
    if head.startswith(_XPT_MAGIC):
        return "xpt"
    if head.startswith(b"PAR1") and tail == b"PAR1":
        return "parquet"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    return None


def _check_reader(path: str, local: str, reader: str) -> None:
    if reader not in READERS:
        raise InputFormatError(f"unknown reader {reader!r}", where=path, fix=f"use one of {', '.join(READERS)}")
    kind = sniff(local)
    name = Path(path).name
    if kind in ("xpt", "parquet") and kind != reader:
        raise InputFormatError(f"{name} is a {_DESCRIPTION[kind]} file, but it was to be read as {reader}",
                               where=path, fix=f"read it with reader '{kind}' (CLI: --reader {kind})")
    if reader in ("xpt", "parquet") and kind != reader:
        found = _DESCRIPTION.get(kind, "text or an unknown format") if kind else "text or an unknown format"
        if reader == "parquet" and Path(local).stat().st_size >= 4 and kind is None:
            with open(local, "rb") as fh:
                starts = fh.read(4) == b"PAR1"
            if starts:
                found = "a Parquet file cut short (no footer)"
        raise InputFormatError(f"{name} is not a {_DESCRIPTION[reader]} file (it looks like {found})", where=path,
                               fix=f"land the complete {_DESCRIPTION[reader]} file, or pick the reader that "
                                   f"matches it ({', '.join(READERS)})")


def _read_error(path: str, reader: str, exc: Exception) -> InputFormatError:
    return InputFormatError(f"cannot read {Path(path).name} as {reader}: {type(exc).__name__}: {exc}", where=path,
                            fix="check the file is complete and in the expected format, then land it again")


def read_frame(path: str, reader: str, row_limit: int | None = None):
    """Read a landed file (or its first ``row_limit`` rows) into a frame for its suite.

    Readers: ``xpt`` (SAS XPORT through pyreadstat), ``csv``, ``jsonl``, ``parquet``. A file
    whose bytes say another format than ``reader`` (an XPORT file read as parquet), or that
    cannot be parsed, raises InputFormatError saying which reader to use.
    """
    import pandas as pd

    with storage.local_copy(path) as local:
        _check_reader(path, local, reader)
        try:
            if reader == "xpt":
                from biotune.xport import read_table

                return read_table(local, row_limit=row_limit)
            if reader == "csv":
                return pd.read_csv(local, nrows=row_limit)
            if reader == "jsonl":
                return pd.read_json(local, lines=True, nrows=row_limit)
            frame = pd.read_parquet(local)
            return frame.head(row_limit) if row_limit else frame
        except BiotuneError:
            raise
        except MemoryError as exc:
            raise InputFormatError(f"{Path(path).name} does not fit in memory", where=path,
                                   fix="validate it with validate_file, which streams it in chunks") from exc
        except Exception as exc:  # parsers raise many types (ArrowInvalid, ParserError, UnicodeDecodeError...)
            raise _read_error(path, reader, exc) from exc


def iter_file(path: str, local: str, reader: str, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator:
    """Frames of at most ``chunk_rows`` rows covering the whole file; read errors -> InputFormatError."""
    import pandas as pd

    _check_reader(path, local, reader)
    try:
        if reader == "xpt":
            from biotune.xport import iter_frames

            yield from iter_frames(local, chunk_rows=chunk_rows)
        elif reader == "parquet":
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(local)
            empty = True
            for batch in pf.iter_batches(batch_size=chunk_rows):
                empty = False
                yield batch.to_pandas()
            if empty:
                yield pf.schema_arrow.empty_table().to_pandas()
        elif reader == "csv":
            yield from pd.read_csv(local, chunksize=chunk_rows)
        else:
            yield from pd.read_json(local, lines=True, chunksize=chunk_rows)
    except BiotuneError:
        raise
    except Exception as exc:
        raise _read_error(path, reader, exc) from exc


