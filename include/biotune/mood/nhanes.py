"""Readers of the NHANES 2013-14 SAS XPORT (v5) files used by the mood family.

- ``find_nhanes_files(source_dir)``: locate PAXHD_H, PAXMIN_H, DPQ_H, RXQ_RX_H, RXQ_DRUG
  (required) and DEMO_H, PAXDAY_H (optional), case-insensitively (.XPT / .xpt).
- ``read_table(path, columns=None)``: a small per-person or per-drug table, read with
  pyreadstat; character values stripped.
- ``xpt_layout(path)``: the header of an XPORT v5 file (variables, types, widths, byte
  offsets, row length, row count), checked for truncation and cross-checked with pyreadstat.
- ``iter_paxmin_chunks`` / ``read_paxmin``: the minute file (~80M rows, ~9 GB) read in
  bounded chunks, only the needed columns, reduced to compact dtypes as it goes, in parallel
  over row ranges.

Why PAXMIN_H rows are decoded with numpy and not pyreadstat (measured on this machine, 1M
rows x 16 columns): pyreadstat reads XPORT rows at ~0.76M rows/s even with ``usecols`` and
its ``row_offset`` rescans the file from the start (offset 900k costs 0.86 s for 100k rows),
so ``read_file_in_chunks`` is quadratic; ``pandas.read_sas`` does 1.3M rows/s. An XPORT v5
observation is a fixed-width record (8-byte IBM floats, blank-padded characters), so after
pyreadstat has validated the header the needed fields are sliced out of each chunk with a
structured numpy dtype and converted IBM -> IEEE vectorised. ``engine="pyreadstat"`` keeps the
pure pyreadstat path (used automatically for anything that is not a plain v5 layout, and in
tests to check that both engines agree).

Errors: a truncated or non-XPORT file -> ``InputFormatError`` (what file, that it is not a
valid SAS XPORT file, re-download it from CDC); a missing file -> ``MissingInputError``
listing the expected names; a missing column -> ``MissingInputError`` naming file and column;
duplicate SEQN rows in a per-person table -> ``InputFormatError`` naming the SEQNs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from biotune.errors import InputFormatError, MissingInputError
from biotune.xport import (  # noqa: F401  (re-exported: the NHANES readers are built on them)
    CDC_URL, XptLayout, XptVariable, _decode, _not_xport, check_unique, ibm_to_ieee, read_table,
    require_columns, xpt_layout,
)

REQUIRED_TABLES = ("PAXHD_H", "PAXMIN_H", "DPQ_H", "RXQ_RX_H", "RXQ_DRUG")
OPTIONAL_TABLES = ("DEMO_H", "PAXDAY_H")
PER_PERSON_TABLES = ("PAXHD_H", "DPQ_H", "DEMO_H")

PAXMIN_COLUMNS = ("SEQN", "PAXSSNMP", "PAXMTSM", "PAXPREDM")
DEFAULT_CHUNK_ROWS = 1_000_000

# ---------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------

def match_tables(names: Sequence[str], where: str, required: Sequence[str] = REQUIRED_TABLES,
                 optional: Sequence[str] = OPTIONAL_TABLES) -> dict[str, str]:
    """``{table: file name}`` among ``names`` (matched case-insensitively); MissingInputError
    naming every missing required file. Shared by local folders and lake prefixes."""
    by_name = {n.upper(): n for n in names}
    found = {t: by_name[f"{t}.XPT"] for t in (*required, *optional) if f"{t}.XPT" in by_name}
    missing = [t for t in required if t not in found]
    if missing:
        raise MissingInputError(
            "missing NHANES file(s): " + ", ".join(f"{t}.XPT" for t in missing)
            + "; expected " + ", ".join(f"{t}.XPT" for t in required)
            + (" (optional: " + ", ".join(f"{t}.XPT" for t in optional) + ")" if optional else ""),
            where=where, fix=f"download the missing files from CDC ({CDC_URL}) into {where}")
    return found


def find_nhanes_files(source_dir: str | os.PathLike, required: Sequence[str] = REQUIRED_TABLES,
                      optional: Sequence[str] = OPTIONAL_TABLES) -> dict[str, Path]:
    """``{table: path}`` for the NHANES files in ``source_dir`` (names matched case-insensitively)."""
    src = Path(source_dir)
    if not src.is_dir():
        raise MissingInputError(f"NHANES source directory {src} does not exist", where=str(src),
                                fix="point source_dir at the folder holding the NHANES .XPT files: "
                                + ", ".join(f"{t}.XPT" for t in required))
    names = [p.name for p in src.iterdir() if p.is_file()]
    return {t: src / name for t, name in match_tables(names, str(src), required, optional).items()}


def compact_paxmin(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """float64 columns -> compact dtypes: SEQN int64, PAXSSNMP int64, PAXMTSM float32 (negative
    = not computable -> NaN), PAXPREDM int8 (0 = no value), other columns float32."""
    out = {}
    for name, v in cols.items():
        if name == "SEQN":
            out[name] = np.where(np.isnan(v), -1, v).astype(np.int64)
        elif name == "PAXSSNMP":
            out[name] = np.where(np.isnan(v), -1, v).astype(np.int64)
        elif name == "PAXMTSM":
            a = v.astype(np.float32)
            a[~(a >= 0)] = np.nan
            out[name] = a
        elif name in ("PAXPREDM", "PAXDAYM", "PAXDAYWM", "PAXTRANM", "PAXQFM"):
            out[name] = np.where(np.isnan(v), 0, v).astype(np.int8)
        else:
            out[name] = v.astype(np.float32)
    return out


def _numpy_engine_ok(layout: XptLayout, columns: Sequence[str]) -> bool:
    return all(layout.by_name[c.upper()].kind == "char" or layout.by_name[c.upper()].width <= 8
               for c in columns)


def iter_paxmin_chunks(path: str | os.PathLike, columns: Sequence[str] = PAXMIN_COLUMNS,
                       chunksize: int = DEFAULT_CHUNK_ROWS, start_row: int = 0,
                       stop_row: int | None = None, engine: str = "numpy",
                       layout: XptLayout | None = None, compact: bool = True) -> Iterator[dict[str, np.ndarray]]:
    """Yield ``{column: array}`` chunks of rows [start_row, stop_row) of an XPORT file.

    Memory is bounded by ``chunksize`` rows (one reused read buffer). ``compact=True`` applies
    ``compact_paxmin``; otherwise float64 arrays are yielded.
    """
    p = Path(path)
    layout = layout or xpt_layout(p)
    require_columns(p, [v.name for v in layout.variables], columns)
    stop = layout.n_rows if stop_row is None else min(stop_row, layout.n_rows)
    if engine == "numpy" and not _numpy_engine_ok(layout, columns):
        engine = "pyreadstat"
    if engine == "pyreadstat":
        yield from _iter_pyreadstat(p, layout, columns, chunksize, start_row, stop, compact)
        return
    vars_ = [layout.by_name[c.upper()] for c in columns]
    dtype = np.dtype({"names": [v.name.upper() for v in vars_],
                      "formats": [f"V{v.width}" for v in vars_],
                      "offsets": [v.offset for v in vars_], "itemsize": layout.row_length})
    buf = bytearray(min(chunksize, max(stop - start_row, 1)) * layout.row_length)
    with open(p, "rb", buffering=0) as fh:
        row = start_row
        while row < stop:
            n = min(chunksize, stop - row)
            fh.seek(layout.data_offset + row * layout.row_length)
            view = memoryview(buf)[: n * layout.row_length]
            got = fh.readinto(view)
            if got != n * layout.row_length:
                raise _not_xport(p, f"it is truncated: rows end early near row {row}")
            rec = np.frombuffer(buf, dtype=dtype, count=n)
            cols = {v.name.upper(): _decode(rec[v.name.upper()], v) for v in vars_}
            yield compact_paxmin(cols) if compact else cols
            row += n


def _iter_pyreadstat(p: Path, layout: XptLayout, columns, chunksize, start, stop, compact):
    import pyreadstat

    upper = {v.name.upper(): v.name for v in layout.variables}
    usecols = [upper[c.upper()] for c in columns]
    if stop <= start:
        return
    try:
        for row in range(start, stop, chunksize):
            # row_offset/row_limit per chunk (read_file_in_chunks ignores ``limit`` for XPORT,
            # whose header has no row count)
            df, _ = pyreadstat.read_xport(str(p), usecols=usecols, row_offset=row,
                                          row_limit=min(chunksize, stop - row))
            cols = {}
            for name in usecols:
                s = df[name]
                if s.dtype == object:
                    import pandas as pd

                    s = pd.to_numeric(s.map(lambda v: v.strip() if isinstance(v, str) else v),
                                      errors="coerce")
                cols[name.upper()] = s.to_numpy(np.float64)
            yield compact_paxmin(cols) if compact else cols
    except InputFormatError:
        raise
    except Exception as exc:
        raise _not_xport(p, f"pyreadstat cannot read it ({exc})") from exc


def row_ranges(n_rows: int, parts: int, align: int = 1) -> list[tuple[int, int]]:
    """Split [0, n_rows) into ``parts`` contiguous ranges."""
    parts = max(1, min(parts, max(n_rows, 1)))
    edges = np.linspace(0, n_rows, parts + 1).astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def _read_range(args) -> dict[str, np.ndarray]:
    path, columns, chunksize, start, stop, engine = args
    chunks = list(iter_paxmin_chunks(path, columns, chunksize, start, stop, engine=engine))
    if not chunks:
        return {c.upper(): np.empty(0) for c in columns}
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def read_paxmin(path: str | os.PathLike, columns: Sequence[str] = PAXMIN_COLUMNS, workers: int = 2,
                chunksize: int = DEFAULT_CHUNK_ROWS, engine: str = "numpy"):
    """Read the needed PAXMIN_H columns into a compact pandas frame, in parallel over row ranges.

    For the full 80M-row file prefer ``biotune.mood.cohort.build_cohort``, which aggregates the
    chunks straight into per-participant matrices instead of materialising the rows.
    """
    import pandas as pd

    p = Path(path)
    layout = xpt_layout(p)
    require_columns(p, [v.name for v in layout.variables], columns)
    ranges = row_ranges(layout.n_rows, max(1, workers) * 4)
    tasks = [(str(p), list(columns), chunksize, a, b, engine) for a, b in ranges]
    if workers <= 1 or len(tasks) <= 1:
        parts = [_read_range(t) for t in tasks]
    else:
        from concurrent.futures import ThreadPoolExecutor  # why threads: see cohort._aggregate

        with ThreadPoolExecutor(workers, thread_name_prefix="paxmin") as pool:
            parts = list(pool.map(_read_range, tasks))
    if not parts:
        return pd.DataFrame({c.upper(): [] for c in columns})
    return pd.DataFrame({k: np.concatenate([q[k] for q in parts]) for k in parts[0]})
