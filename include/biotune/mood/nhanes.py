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
    CDC_URL, XptLayout, XptVariable, _decode, _not_xport, check_numeric, check_unique, ibm_to_ieee,
    iter_records, numpy_readable, read_table, require_columns, xpt_layout,
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
        from biotune import storage

        storage._stat(str(src))  # a symlink loop or an unreadable folder says so, not "does not exist"
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
    return numpy_readable(layout, columns)


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
    for rec in iter_records(p, layout, columns, chunksize, start_row, stop):
        cols = {v.name.upper(): _decode(rec[v.name.upper()], v) for v in vars_}
        yield compact_paxmin(cols) if compact else cols


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


# ---------------------------------------------------------------------------------------
# Cross-file consistency: PAXMIN_H against PAXHD_H and PAXDAY_H
# ---------------------------------------------------------------------------------------

CONSISTENCY_CHECKS = "nhanes_consistency"
_MINUTE_SAMPLES = 4800  # 80 Hz x 60 s: PAXSSNDP differences / 4800 = minutes in a day


def _examples(values, k: int = 5) -> str:
    vals = [int(v) for v in list(values)[:k]]
    return ", ".join(str(v) for v in vals) + (" ..." if len(values) > k else "")


def paxmin_counts(path: str | os.PathLike, chunksize: int = DEFAULT_CHUNK_ROWS) -> dict:
    """Rows per SEQN and per (SEQN, day) over the WHOLE minute file, in bounded memory.

    Reads only SEQN and PAXDAYM (when present) with the fast fixed-width reader. Returns
    ``{"rows", "seqn", "seqn_rows", "day_seqn", "day", "day_rows", "missing_seqn_rows",
    "last_seqn", "has_days"}`` (arrays sorted by SEQN, then day)."""
    p = Path(path)
    layout = xpt_layout(p)
    names = [v.name for v in layout.variables]
    require_columns(p, names, ["SEQN"])
    has_days = "PAXDAYM" in {n.upper() for n in names}
    cols = ["SEQN", "PAXDAYM"] if has_days else ["SEQN"]
    keys, counts = [], []
    rows = missing = 0
    last = None
    for ch in iter_paxmin_chunks(p, cols, chunksize, layout=layout, compact=False):
        seqn = ch["SEQN"]
        rows += len(seqn)
        ok = np.isfinite(seqn)
        missing += int((~ok).sum())
        if len(seqn) and ok.any():
            last = int(seqn[ok][-1])
        day = ch["PAXDAYM"] if has_days else np.zeros(len(seqn))
        day = np.where(np.isfinite(day), day, -1)
        key = seqn[ok].astype(np.int64) * 16 + np.clip(day[ok], -1, 14).astype(np.int64) + 1
        k, c = np.unique(key, return_counts=True)  # compacts each chunk to a few hundred keys
        keys.append(k)
        counts.append(c)
    key = np.concatenate(keys) if keys else np.empty(0, np.int64)
    cnt = np.concatenate(counts) if counts else np.empty(0, np.int64)
    uk, inv = np.unique(key, return_inverse=True)
    day_rows = np.bincount(inv, weights=cnt, minlength=len(uk)).astype(np.int64)
    day_seqn, day = uk // 16, uk % 16 - 1
    seqn, sinv = np.unique(day_seqn, return_inverse=True)
    seqn_rows = np.bincount(sinv, weights=day_rows, minlength=len(seqn)).astype(np.int64)
    return {"rows": rows, "seqn": seqn, "seqn_rows": seqn_rows, "day_seqn": day_seqn, "day": day,
            "day_rows": day_rows, "missing_seqn_rows": missing, "last_seqn": last, "has_days": has_days}


def consistency_lines(files: dict[str, Path], counts: dict | None = None) -> tuple[list[tuple[bool, str]], dict]:
    """The cross-file checks as (passed, text) lines plus the counts behind them.

    - PAXHD_H: every SEQN with PAXSTS 1 ("has minute data") has minutes in PAXMIN_H, and no
      SEQN has minutes that PAXHD_H does not list with PAXSTS 1 (without PAXSTS: every SEQN
      with minutes is in PAXHD_H);
    - PAXDAY_H (when present): each participant's days in PAXMIN_H are the days PAXDAY_H lists,
      and, where PAXDAY_H carries PAXSSNDP, every day but the last holds the minutes between
      its first sample and the next day's (a file cut inside a participant fails here).
    """
    import pandas as pd

    mins = files["PAXMIN_H"]
    c = counts or paxmin_counts(mins)
    lines: list[tuple[bool, str]] = []
    details: dict = {"paxmin_rows": c["rows"], "paxmin_participants": int(len(c["seqn"]))}
    tail = f"PAXMIN_H's last SEQN is {c['last_seqn']} after {c['rows']:,} rows"
    if c["missing_seqn_rows"]:
        lines.append((False, f"PAXMIN_H: {c['missing_seqn_rows']:,} rows have no SEQN"))

    hd_path = files["PAXHD_H"]
    layout = xpt_layout(hd_path, check_with_pyreadstat=False)
    have = {v.name.upper() for v in layout.variables}
    hd = read_table(hd_path, ["SEQN"] + (["PAXSTS"] if "PAXSTS" in have else []))
    check_numeric(hd, hd_path, ["SEQN", "PAXSTS"])
    hd = hd.dropna(subset=["SEQN"])
    listed = np.unique(hd["SEQN"].astype(np.int64).to_numpy())
    if "PAXSTS" in hd.columns:
        expected = np.unique(hd.loc[hd["PAXSTS"] == 1, "SEQN"].astype(np.int64).to_numpy())
        rule = "PAXHD_H lists with PAXSTS 1 (has minute data)"
    else:
        expected = None
        rule = "PAXHD_H lists"
    with_minutes = c["seqn"]
    details.update(paxhd_participants=int(len(listed)))
    if expected is not None:
        absent = np.setdiff1d(expected, with_minutes)
        details.update(paxsts_1=int(len(expected)), paxsts_1_without_minutes=int(len(absent)))
        ok = len(absent) == 0
        lines.append((ok, f"PAXMIN_H holds minutes for {len(expected) - len(absent):,} of the {len(expected):,} "
                          f"participants PAXHD_H marks PAXSTS 1 (has minute data)"
                          + ("" if ok else f": {len(absent):,} have none (e.g. SEQN {_examples(absent)}); "
                                           f"{tail}: the minute file looks cut short")))
        extra = np.setdiff1d(with_minutes, expected)
    else:
        extra = np.setdiff1d(with_minutes, listed)
    details.update(minutes_not_in_paxhd=int(len(extra)))
    lines.append((len(extra) == 0, f"every SEQN with minutes in PAXMIN_H is one {rule}" if len(extra) == 0 else
                  f"PAXMIN_H holds minutes for {len(extra):,} SEQN(s) that {rule} does not list "
                  f"(e.g. SEQN {_examples(extra)}): the files are from different releases or edited"))

    if "PAXDAY_H" in files and c["has_days"]:
        day_path = files["PAXDAY_H"]
        dlay = xpt_layout(day_path, check_with_pyreadstat=False)
        dcols = {v.name.upper() for v in dlay.variables}
        require_columns(day_path, list(dcols), ["SEQN", "PAXDAYD"])
        want = ["SEQN", "PAXDAYD"] + (["PAXSSNDP"] if "PAXSSNDP" in dcols else [])
        day = read_table(day_path, want)
        check_numeric(day, day_path, ["SEQN"])
        day["PAXDAYD"] = pd.to_numeric(day["PAXDAYD"], errors="coerce")
        day = day.dropna(subset=["SEQN", "PAXDAYD"])
        day["SEQN"] = day["SEQN"].astype(np.int64)
        listed_days = day.groupby("SEQN")["PAXDAYD"].nunique()
        got = pd.Series(c["day"][c["day"] >= 1], index=c["day_seqn"][c["day"] >= 1]).groupby(level=0).nunique()
        both = pd.concat([listed_days.rename("paxday"), got.rename("paxmin")], axis=1).fillna(0).astype(np.int64)
        short = both[both["paxmin"] < both["paxday"]]
        more = both[both["paxmin"] > both["paxday"]]
        details.update(paxday_participants=int(len(listed_days)), fewer_days=int(len(short)), more_days=int(len(more)))
        ok = short.empty and more.empty
        text = (f"days per participant agree between PAXMIN_H and PAXDAY_H ({len(listed_days):,} participants, "
                f"{int(listed_days.sum()):,} days)")
        if not ok:
            bits = []
            if len(short):
                e = short.head(3)
                bits.append(f"{len(short):,} participant(s) have fewer days in PAXMIN_H than PAXDAY_H lists (e.g. "
                            + ", ".join(f"SEQN {s}: {r.paxmin} of {r.paxday} days" for s, r in e.iterrows()) + ")")
            if len(more):
                e = more.head(3)
                bits.append(f"{len(more):,} participant(s) have more days in PAXMIN_H than PAXDAY_H lists (e.g. "
                            + ", ".join(f"SEQN {s}: {r.paxmin} days, PAXDAY_H {r.paxday}" for s, r in e.iterrows())
                            + ")")
            text = "; ".join(bits) + f"; {tail}"
        lines.append((ok, text))
        if "PAXSSNDP" in day.columns:
            d = day.dropna(subset=["PAXSSNDP"]).sort_values(["SEQN", "PAXDAYD"])
            nxt = d.groupby("SEQN")["PAXSSNDP"].shift(-1)
            full = d.assign(expected=(nxt - d["PAXSSNDP"]) / _MINUTE_SAMPLES).dropna(subset=["expected"])
            have_rows = pd.Series(c["day_rows"], index=pd.MultiIndex.from_arrays([c["day_seqn"], c["day"]]))
            idx = pd.MultiIndex.from_arrays([full["SEQN"].to_numpy(), full["PAXDAYD"].astype(np.int64).to_numpy()])
            actual = have_rows.reindex(idx).fillna(0).to_numpy()
            gap = np.abs(actual - np.rint(full["expected"].to_numpy())) > 1
            bad = full[gap]
            details.update(days_checked=int(len(full)), days_with_wrong_minutes=int(len(bad)))
            ok = not gap.any()
            text = f"minutes per day agree with PAXDAY_H's day starts (PAXSSNDP) on {len(full):,} complete days"
            if not ok:
                e = [(int(r.SEQN), int(r.PAXDAYD), int(a), int(round(r.expected)))
                     for r, a in zip(bad.head(3).itertuples(), actual[gap][:3])]
                text = (f"{len(bad):,} day(s) hold another number of minutes in PAXMIN_H than PAXDAY_H's day starts "
                        "imply (e.g. " + ", ".join(f"SEQN {s} day {dd}: {a} of {x}" for s, dd, a, x in e)
                        + f"); {tail}")
            lines.append((ok, text))
    elif "PAXDAY_H" in files:
        lines.append((True, "PAXMIN_H has no PAXDAYM column: days per participant not compared with PAXDAY_H"))
    return lines, details


def check_consistency(source_dir: str | os.PathLike, run_id: str = "", report_dir: str | None = None,
                      chunksize: int = DEFAULT_CHUNK_ROWS):
    """Cross-check PAXMIN_H (read whole) against PAXHD_H and PAXDAY_H; ConsistencyError when they
    disagree, naming the counts (how many participants, which SEQNs, where the minute file ends).

    Nothing is quarantined: which file is wrong cannot be told from the disagreement alone (a
    cut-short PAXMIN_H is the usual cause, and the message says so). Returns the outcome
    (reports under ``report_dir``)."""
    from biotune import storage, validation
    from biotune.errors import ConsistencyError

    files = find_nhanes_files(source_dir)
    lines, details = consistency_lines(files, paxmin_counts(files["PAXMIN_H"], chunksize))
    report_dir = report_dir or storage.lake_path("reports", "validation", validation._safe(run_id or "manual"))
    outcome = validation.report_checks(CONSISTENCY_CHECKS, lines, where=str(source_dir), report_dir=report_dir,
                                       rows=int(details.get("paxmin_rows", 0)), details=details)
    if not outcome.success:
        raise ConsistencyError(
            f"the NHANES files in {source_dir} do not agree with each other ({len(outcome.failures)} of "
            f"{outcome.evaluated} cross-file checks failed)", where=f"{files['PAXMIN_H']} vs PAXHD_H/PAXDAY_H",
            fix=f"re-download PAXMIN_H.XPT (and PAXHD_H/PAXDAY_H if they are from another release) from CDC "
                f"({CDC_URL}); a copy cut short on a record boundary passes every per-file check",
            failures=outcome.failures)
    return outcome
