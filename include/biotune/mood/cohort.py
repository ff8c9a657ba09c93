"""NHANES 2013-14 files -> the mood cohort: one row per participant, a week of minutes + labels.

``build_cohort(source_dir, out_path)`` reads PAXHD_H (start clock time), PAXMIN_H (minutes),
DPQ_H (PHQ-9), RXQ_RX_H + RXQ_DRUG (drugs) and, when present, DEMO_H (the sample), and
writes a parquet file with one row per included SEQN:

=============== ======================= ==================================================
column          type                    meaning
=============== ======================= ==================================================
SEQN            int64                   NHANES respondent sequence number
phq9_total      float64                 DPQ010-DPQ090 summed; NaN unless all nine are 0-3
depression      Int8 (nullable)         phq9_total >= 10; null when there is no total
benzodiazepine  Int8                    a drug in Multum category 69 (any RXDDCI column)
ssri            Int8                    a drug in Multum category 208
wear_days       int16                   days of the 7 with >= ``min_wear_minutes`` valid wear
activity        list<float32>[10080]    PAXMTSM per minute, 7 x 1440, column 0 = midnight;
                                        NaN = no minute recorded or MIMS not computable
state           list<int8>[10080]       PAXPREDM: 1 wake, 2 sleep, 3 non-wear, 4 unknown,
                                        0 = no minute recorded
=============== ======================= ==================================================

Clock placement: the minute with sample number PAXSSNMP lies ``round(PAXSSNMP / 4800)``
minutes after PAXHD_H.PAXFTIME on day 1, so grid column ``floor(PAXFTIME/60 s) + that``
counts minutes from midnight of day 1 (a 10-day grid holds the longest 194-hour recording).
The 7 consecutive calendar days (midnight to midnight) with the most valid wear minutes
(state 1, 2 or 4 with a computable PAXMTSM) are kept, earliest on ties.

Exclusions, first matching reason wins, counted in the report: ``no_actigraphy`` (no
PAXMIN_H rows, e.g. PAXSTS 2), ``no_start_time`` (minutes but no usable PAXHD_H.PAXFTIME),
``all_non_wear`` (not one valid wear minute), ``too_little_wear`` (fewer than
``min_valid_days`` valid days in the best week), ``no_phq9`` (no DPQ_H record at all; people
who answered with 7/9 are kept with a null depression label).

Exclusions that jump stop the build: when more than ``max_excluded_fraction`` (default 30%)
of the actigraphy participants (PAXSTS 1 in PAXHD_H, or everyone with minutes when PAXSTS is
absent) are excluded for a minute-related reason (``no_actigraphy`` despite PAXSTS 1,
``no_start_time``, ``all_non_wear``, ``too_little_wear``), CohortError names the counts and
nothing is written: a cut-short or damaged minute file must not become a smaller cohort that
trains and promotes. Groups smaller than ``MIN_GROUP_FOR_FRACTION`` are too small to judge.

The parquet and its ``.report.json`` carry the same ``build_id``; the old report is removed
before the new parquet replaces the old one, so a run killed between the two writes leaves a
parquet without a report (detectably incomplete), never a new parquet with an old report.

PAXMIN_H is read in bounded chunks by worker threads over contiguous row ranges; each
worker places rows straight into per-participant 10-day grids and reduces a participant to
its 7-day window as soon as the participant's rows end, so memory stays bounded (~0.4 GB of
output + ~100 MB per worker at 7,000 people). Rows of one SEQN must be contiguous for that;
if they are not, the build falls back to one worker that keeps every grid until the end.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from biotune import storage
from biotune.errors import CohortError, InputFormatError
from biotune.mood import nhanes

MINUTES_PER_DAY = 1440
WEEK_DAYS = 7
WEEK_MINUTES = WEEK_DAYS * MINUTES_PER_DAY  # 10080
GRID_DAYS = 10
GRID_MINUTES = GRID_DAYS * MINUTES_PER_DAY
SAMPLES_PER_MINUTE = 4800
WEAR_STATES = (1, 2, 4)
BENZODIAZEPINE_CATEGORY = 69
SSRI_CATEGORY = 208
DPQ_ITEMS = tuple(f"DPQ0{i}0" for i in range(1, 10))
CATEGORY_COLUMNS = tuple(f"RXDDCI{i}{lev}" for i in range(1, 5) for lev in "ABC")
EXCLUSION_REASONS = ("no_actigraphy", "no_start_time", "all_non_wear", "too_little_wear", "no_phq9")
MINUTE_EXCLUSIONS = ("no_actigraphy", "no_start_time", "all_non_wear", "too_little_wear")
MAX_EXCLUDED_FRACTION = 0.30
MIN_GROUP_FOR_FRACTION = 20
TASK_ROWS = 4_000_000
CHUNK_ROWS = 500_000

Progress = Callable[[str], None]  # one human-readable line per step


@dataclass
class CohortReport:
    source_dir: str
    out_path: str
    report_path: str
    n_candidates: int
    n_included: int
    excluded: dict[str, int]
    labels: dict[str, dict[str, int]]
    rows_read: int
    rows_unplaced: int
    seconds: float
    workers: int
    engine: str
    min_valid_days: int
    min_wear_minutes: int
    files: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    actigraphy: dict[str, int] = field(default_factory=dict)
    build_id: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------

def phq9_scores(dpq) -> "pd.DataFrame":  # noqa: F821
    """SEQN, phq9_total (NaN unless all nine items are 0-3), depression (Int8, null w/o total)."""
    import pandas as pd

    items = dpq[list(DPQ_ITEMS)].to_numpy(np.float64)
    answered = np.isin(items, (0.0, 1.0, 2.0, 3.0)).all(axis=1)
    total = np.where(answered, np.nansum(np.where(answered[:, None], items, 0.0), axis=1), np.nan)
    dep = pd.array(np.where(np.isnan(total), pd.NA, total >= 10), dtype="Int8")
    return pd.DataFrame({"SEQN": dpq["SEQN"].astype(np.int64).to_numpy(), "phq9_total": total,
                         "depression": dep})


def drug_flags(rx, drug, seqns: np.ndarray) -> "pd.DataFrame":  # noqa: F821
    """benzodiazepine / ssri (Int8) for ``seqns``: any RXQ_RX_H drug whose RXQ_DRUG row carries
    Multum category 69 / 208 in any RXDDCI column; people without drug rows get 0."""
    import pandas as pd

    cats = drug[[c for c in CATEGORY_COLUMNS if c in drug.columns]].to_numpy(np.float64)
    ids = drug["RXDDRGID"].astype(str).str.strip().str.lower().to_numpy()
    benzo_ids = set(ids[(cats == BENZODIAZEPINE_CATEGORY).any(axis=1)]) - {""}
    ssri_ids = set(ids[(cats == SSRI_CATEGORY).any(axis=1)]) - {""}
    r_ids = rx["RXDDRGID"].astype(str).str.strip().str.lower()
    r_seqn = rx["SEQN"].to_numpy()
    benzo_people = set(r_seqn[r_ids.isin(benzo_ids).to_numpy()].astype(np.int64).tolist())
    ssri_people = set(r_seqn[r_ids.isin(ssri_ids).to_numpy()].astype(np.int64).tolist())
    s = np.asarray(seqns, dtype=np.int64)
    return pd.DataFrame({
        "SEQN": s,
        "benzodiazepine": pd.array(np.isin(s, list(benzo_people)).astype(np.int8), dtype="Int8"),
        "ssri": pd.array(np.isin(s, list(ssri_people)).astype(np.int8), dtype="Int8"),
    })


def parse_clock(value) -> float:
    """PAXFTIME "HH:MM:SS" (or seconds as a number) -> seconds after midnight; NaN if unusable."""
    if value is None:
        return np.nan
    if isinstance(value, (int, float, np.integer, np.floating)):
        v = float(value)
        return v if 0 <= v < 86400 else np.nan
    text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    parts = text.strip().split(":")
    if len(parts) not in (2, 3):
        return np.nan
    try:
        h, m = int(parts[0]), int(parts[1])
        s = float(parts[2]) if len(parts) == 3 else 0.0
    except ValueError:
        return np.nan
    if not (0 <= h < 24 and 0 <= m < 60 and 0 <= s < 60):
        return np.nan
    return h * 3600 + m * 60 + s


# ---------------------------------------------------------------------------------------
# Minutes -> grids -> weeks
# ---------------------------------------------------------------------------------------

def best_week(grid_act: np.ndarray, grid_state: np.ndarray, min_wear_minutes: int):
    """(activity[10080], state[10080], wear_days, valid minutes in the whole recording)."""
    valid = np.isin(grid_state, WEAR_STATES) & np.isfinite(grid_act)
    per_day = valid.reshape(GRID_DAYS, MINUTES_PER_DAY).sum(axis=1)
    sums = np.convolve(per_day, np.ones(WEEK_DAYS, dtype=np.int64), mode="valid")
    d = int(np.argmax(sums))
    a, b = d * MINUTES_PER_DAY, (d + WEEK_DAYS) * MINUTES_PER_DAY
    wear_days = int((per_day[d: d + WEEK_DAYS] >= min_wear_minutes).sum())
    return grid_act[a:b].copy(), grid_state[a:b].copy(), wear_days, int(per_day.sum())


class _Unsorted(Exception):
    pass


def _new_grid():
    return np.full(GRID_MINUTES, np.nan, dtype=np.float32), np.zeros(GRID_MINUTES, dtype=np.int8)


def _aggregate_task(args) -> dict:
    """Worker: rows [start, stop) of PAXMIN_H -> finished weeks + edge grids (see module doc)."""
    (path, start, stop, chunksize, engine, hd_seqn, hd_start_min, min_wear, incremental) = args
    layout = nhanes.xpt_layout(path, check_with_pyreadstat=False)
    open_: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    finished: set[int] = set()
    done_seqn, done_act, done_state, done_days, done_valid = [], [], [], [], []
    unplaced: set[int] = set()
    rows = unplaced_rows = dropped = 0
    first_seqn = None

    def finish(sq: int) -> None:
        ga, gs = open_.pop(sq)
        act, st, days, valid = best_week(ga, gs, min_wear)
        done_seqn.append(sq)
        done_act.append(act)
        done_state.append(st)
        done_days.append(days)
        done_valid.append(valid)
        finished.add(sq)

    try:
        for ch in nhanes.iter_paxmin_chunks(path, nhanes.PAXMIN_COLUMNS, chunksize, start, stop,
                                            engine=engine, layout=layout):
            seqn, ssn, act, st = ch["SEQN"], ch["PAXSSNMP"], ch["PAXMTSM"], ch["PAXPREDM"]
            n = len(seqn)
            rows += n
            if first_seqn is None and n:
                first_seqn = int(seqn[0])
            pos = np.searchsorted(hd_seqn, seqn)
            pos_c = np.minimum(pos, len(hd_seqn) - 1) if len(hd_seqn) else np.zeros(n, np.int64)
            known = (hd_seqn[pos_c] == seqn) if len(hd_seqn) else np.zeros(n, bool)
            start_min = np.where(known, hd_start_min[pos_c] if len(hd_seqn) else -1, -1)
            known &= start_min >= 0
            if not known.all():
                unplaced.update(np.unique(seqn[~known]).tolist())
                unplaced_rows += int((~known).sum())
            minute = start_min + np.rint(ssn / SAMPLES_PER_MINUTE).astype(np.int64)
            cuts = np.flatnonzero(seqn[1:] != seqn[:-1]) + 1
            bounds = np.concatenate(([0], cuts, [n]))
            last_sq = None
            for s, e in zip(bounds[:-1], bounds[1:]):
                sq = int(seqn[s])
                last_sq = sq
                if not known[s]:
                    continue
                if sq in finished:
                    raise _Unsorted(sq)
                g = open_.get(sq)
                if g is None:
                    g = open_[sq] = _new_grid()
                m = minute[s:e]
                ok = (m >= 0) & (m < GRID_MINUTES)
                if not ok.all():
                    dropped += int((~ok).sum())
                    m = m[ok]
                    g[0][m] = act[s:e][ok]
                    g[1][m] = st[s:e][ok]
                else:
                    g[0][m] = act[s:e]
                    g[1][m] = st[s:e]
            if incremental:
                for sq in [q for q in open_ if q != last_sq and q != first_seqn]:
                    finish(sq)
    except _Unsorted as exc:
        return {"unsorted": True, "seqn": int(exc.args[0])}
    k = len(done_seqn)
    return {
        "unsorted": False, "rows": rows, "unplaced": sorted(unplaced), "unplaced_rows": unplaced_rows,
        "dropped": dropped,
        "seqn": np.asarray(done_seqn, dtype=np.int64),
        "act": np.stack(done_act) if k else np.empty((0, WEEK_MINUTES), np.float32),
        "state": np.stack(done_state) if k else np.empty((0, WEEK_MINUTES), np.int8),
        "wear_days": np.asarray(done_days, dtype=np.int16),
        "valid": np.asarray(done_valid, dtype=np.int64),
        "edges": open_,
    }


def _aggregate(path: Path, n_rows: int, hd_seqn, hd_start_min, min_wear: int, workers: int,
               engine: str, chunksize: int, incremental: bool, progress: Progress | None):
    n_tasks = max(1, -(-n_rows // TASK_ROWS), workers * 2 if workers > 1 else 1)
    ranges = nhanes.row_ranges(n_rows, n_tasks)
    tasks = [(str(path), a, b, chunksize, engine, hd_seqn, hd_start_min, min_wear, incremental)
             for a, b in ranges]
    index = {int(s): i for i, s in enumerate(hd_seqn)}
    n = len(hd_seqn)
    act = np.full((n, WEEK_MINUTES), np.nan, dtype=np.float32)
    state = np.zeros((n, WEEK_MINUTES), dtype=np.int8)
    wear_days = np.zeros(n, dtype=np.int16)
    valid = np.zeros(n, dtype=np.int64)
    seen = np.zeros(n, dtype=bool)
    edges: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    stats = {"rows": 0, "unplaced": set(), "unplaced_rows": 0, "dropped": 0}

    def consume(res) -> None:
        if res["unsorted"]:
            raise _Unsorted(res["seqn"])
        stats["rows"] += res["rows"]
        stats["unplaced"].update(res["unplaced"])
        stats["unplaced_rows"] += res["unplaced_rows"]
        stats["dropped"] += res["dropped"]
        for j, sq in enumerate(res["seqn"].tolist()):
            i = index[sq]
            if seen[i] or sq in edges:
                raise _Unsorted(sq)
            seen[i] = True
            act[i], state[i], wear_days[i], valid[i] = (res["act"][j], res["state"][j],
                                                        res["wear_days"][j], res["valid"][j])
        for sq, (ga, gs) in res["edges"].items():
            if seen[index[sq]]:
                raise _Unsorted(sq)
            if sq in edges:
                ea, es = edges[sq]
                fill = gs != 0
                es[fill] = gs[fill]
                ea[fill] = ga[fill]
            else:
                edges[sq] = (ga, gs)
        if progress is not None:
            progress(f"reading PAXMIN_H: {stats['rows']:,} of {n_rows:,} rows ({stats['rows'] / max(n_rows, 1):.0%})")

    if workers > 1 and len(tasks) > 1:
        # threads, not processes: the decoding is numpy on large blocks (it releases the GIL), and
        # child processes break inside Airflow tasks (a Celery worker is daemonic; spawn re-imports
        # the airflow CLI with the task's blanked database settings; fork can inherit a held lock)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers, thread_name_prefix="paxmin") as pool:
            for res in pool.map(_aggregate_task, tasks):
                consume(res)
    else:
        for t in tasks:
            consume(_aggregate_task(t))
    for sq, (ga, gs) in edges.items():
        i = index[sq]
        act[i], state[i], wear_days[i], valid[i] = best_week(ga, gs, min_wear)
        seen[i] = True
    return act, state, wear_days, valid, seen, stats


# ---------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------

def _atomic_write_bytes(path: Path, data: bytes) -> None:
    storage.write_bytes(str(path), data)


def check_exclusions(excluded_by: dict[str, int], actigraphy: int, max_fraction: float = MAX_EXCLUDED_FRACTION,
                     where: str = "", min_group: int = MIN_GROUP_FOR_FRACTION) -> None:
    """CohortError when more than ``max_fraction`` of ``actigraphy`` participants were excluded
    for a minute-related reason (``excluded_by``: reason -> count among them)."""
    lost = int(sum(excluded_by.values()))
    if actigraphy < min_group or lost <= max_fraction * actigraphy:
        return
    detail = ", ".join(f"{k} {v:,}" for k, v in excluded_by.items() if v)
    raise CohortError(
        f"{lost:,} of {actigraphy:,} actigraphy participants ({lost / actigraphy:.0%}) were excluded from the "
        f"cohort, more than the {max_fraction:.0%} allowed ({detail})", where=where,
        fix="check PAXMIN_H against PAXHD_H (biotune.mood.nhanes.check_consistency): a minute file cut short "
            "or damaged drops participants silently; if the exclusions are real, raise max_excluded_fraction",
        failures=[f"{k}: {v:,} of {actigraphy:,} actigraphy participants" for k, v in excluded_by.items()])


def build_cohort(source_dir: str | os.PathLike, out_path: str | os.PathLike, workers: int = 2,
                 min_valid_days: int = 4, min_wear_minutes: int = 600, require_phq9: bool = True,
                 progress: Progress | None = None, engine: str = "numpy",
                 chunksize: int = CHUNK_ROWS, max_excluded_fraction: float = MAX_EXCLUDED_FRACTION) -> CohortReport:
    """Build the cohort parquet (see module docstring) and ``<out>.report.json`` beside it.

    Raises CohortError (nothing written) when exclusions jump (see the module docstring)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    files = nhanes.find_nhanes_files(source_dir)
    notes: list[str] = []
    say = progress or (lambda message: None)

    # small tables ---------------------------------------------------------------------
    say("reading PAXHD_H, DPQ_H, RXQ_RX_H, RXQ_DRUG")
    hd_cols = ["SEQN", "PAXFTIME"]
    hd_layout = nhanes.xpt_layout(files["PAXHD_H"], check_with_pyreadstat=False)
    if "PAXSTS" in hd_layout.by_name:
        hd_cols.append("PAXSTS")
    hd = nhanes.read_table(files["PAXHD_H"], hd_cols)
    nhanes.check_numeric(hd, files["PAXHD_H"], ["SEQN", "PAXSTS"])
    nhanes.check_unique(hd, files["PAXHD_H"])
    dpq = nhanes.read_table(files["DPQ_H"], ["SEQN", *DPQ_ITEMS])
    nhanes.check_numeric(dpq, files["DPQ_H"], ["SEQN", *DPQ_ITEMS])
    nhanes.check_unique(dpq, files["DPQ_H"])
    rx = nhanes.read_table(files["RXQ_RX_H"], ["SEQN", "RXDDRGID"])
    nhanes.check_numeric(rx, files["RXQ_RX_H"], ["SEQN"])
    drug_layout = nhanes.xpt_layout(files["RXQ_DRUG"], check_with_pyreadstat=False)
    drug_cols = [c for c in CATEGORY_COLUMNS if c in drug_layout.by_name]
    if not drug_cols:
        nhanes.require_columns(files["RXQ_DRUG"], [v.name for v in drug_layout.variables], ["RXDDCI1C"])
    drug = nhanes.read_table(files["RXQ_DRUG"], ["RXDDRGID", *drug_cols])
    nhanes.check_numeric(drug, files["RXQ_DRUG"], drug_cols)
    demo_seqn = np.empty(0, dtype=np.int64)
    if "DEMO_H" in files:
        demo = nhanes.read_table(files["DEMO_H"], ["SEQN"])
        nhanes.check_numeric(demo, files["DEMO_H"], ["SEQN"])
        nhanes.check_unique(demo, files["DEMO_H"])
        demo_seqn = demo["SEQN"].dropna().astype(np.int64).to_numpy()

    hd = hd.dropna(subset=["SEQN"]).sort_values("SEQN")
    hd_seqn = hd["SEQN"].astype(np.int64).to_numpy()
    sts1 = hd["SEQN"][hd["PAXSTS"] == 1].astype(np.int64).to_numpy() if "PAXSTS" in hd.columns else None
    start_sec = np.array([parse_clock(v) for v in hd["PAXFTIME"]], dtype=np.float64)
    hd_start_min = np.where(np.isnan(start_sec), -1, np.floor(np.nan_to_num(start_sec, nan=0) / 60)).astype(np.int64)

    # minutes --------------------------------------------------------------------------
    layout = nhanes.xpt_layout(files["PAXMIN_H"])
    nhanes.require_columns(files["PAXMIN_H"], [v.name for v in layout.variables], nhanes.PAXMIN_COLUMNS)
    try:
        act, state, wear_days, valid, seen, stats = _aggregate(
            files["PAXMIN_H"], layout.n_rows, hd_seqn, hd_start_min, min_wear_minutes, workers, engine,
            chunksize, True, progress)
        used_workers = workers
    except _Unsorted as exc:
        notes.append(f"PAXMIN_H rows are not grouped by SEQN (first seen at SEQN {exc.args[0]}); "
                     "re-read with one worker keeping every participant's grid")
        act, state, wear_days, valid, seen, stats = _aggregate(
            files["PAXMIN_H"], layout.n_rows, hd_seqn, hd_start_min, min_wear_minutes, 1, engine,
            chunksize, False, progress)
        used_workers = 1
    if stats["dropped"]:
        notes.append(f"{stats['dropped']} PAXMIN_H rows fell outside the 10-day clock grid and were ignored")

    # exclusions -----------------------------------------------------------------------
    dpq_seqn = dpq["SEQN"].dropna().astype(np.int64).to_numpy()
    unplaced = np.asarray(sorted(stats["unplaced"]), dtype=np.int64)
    universe = np.unique(np.concatenate([demo_seqn, hd_seqn, dpq_seqn, unplaced]))
    pos = np.searchsorted(hd_seqn, universe)
    pos_c = np.minimum(pos, max(len(hd_seqn) - 1, 0))
    in_hd = (hd_seqn[pos_c] == universe) if len(hd_seqn) else np.zeros(len(universe), bool)
    has_minutes = np.zeros(len(universe), bool)
    has_minutes[in_hd] = seen[pos_c[in_hd]]
    is_unplaced = np.isin(universe, unplaced)
    u_valid = np.zeros(len(universe), np.int64)
    u_days = np.zeros(len(universe), np.int16)
    u_valid[in_hd] = valid[pos_c[in_hd]]
    u_days[in_hd] = wear_days[pos_c[in_hd]]
    has_dpq = np.isin(universe, dpq_seqn)

    reason = np.full(len(universe), "", dtype=object)
    rules = [
        ("no_actigraphy", ~has_minutes & ~is_unplaced),
        ("no_start_time", is_unplaced),
        ("all_non_wear", has_minutes & (u_valid == 0)),
        ("too_little_wear", has_minutes & (u_days < min_valid_days)),
        ("no_phq9", ~has_dpq if require_phq9 else np.zeros(len(universe), bool)),
    ]
    for name, mask in rules:
        reason[(reason == "") & mask] = name
    excluded = {name: int((reason == name).sum()) for name, _ in rules}
    # the actigraphy group: PAXSTS 1 (who should have minutes), else everyone who has some
    in_group = np.isin(universe, sts1) if sts1 is not None else (has_minutes | is_unplaced)
    by_reason = {name: int(((reason == name) & in_group).sum()) for name in MINUTE_EXCLUSIONS}
    actigraphy = {"participants": int(in_group.sum()), "excluded": int(sum(by_reason.values())), **by_reason}
    check_exclusions(by_reason, int(in_group.sum()), max_excluded_fraction, where=str(files["PAXMIN_H"]))
    keep = reason == ""
    kept_seqn = universe[keep]
    rows_idx = pos_c[keep]

    # labels ---------------------------------------------------------------------------
    phq = phq9_scores(dpq).drop_duplicates("SEQN").set_index("SEQN")
    drugs = drug_flags(rx, drug, kept_seqn).set_index("SEQN")
    frame = pd.DataFrame({"SEQN": kept_seqn})
    frame["phq9_total"] = phq["phq9_total"].reindex(kept_seqn).to_numpy(np.float64)
    frame["depression"] = phq["depression"].reindex(kept_seqn).astype("Int8").to_numpy()
    frame["benzodiazepine"] = drugs["benzodiazepine"].reindex(kept_seqn).to_numpy()
    frame["ssri"] = drugs["ssri"].reindex(kept_seqn).to_numpy()
    frame["wear_days"] = wear_days[rows_idx].astype(np.int16)

    # parquet --------------------------------------------------------------------------
    say(f"writing cohort parquet ({stats['rows']:,} minute rows read)")
    out = Path(out_path)
    build_id = f"{time.time_ns():x}-{os.getpid()}"
    n_keep = len(kept_seqn)
    a_vals = act[rows_idx].reshape(-1)
    s_vals = state[rows_idx].reshape(-1)
    del act, state
    offsets = pa.array(np.arange(n_keep + 1, dtype=np.int32) * WEEK_MINUTES)
    table = pa.table({
        "SEQN": pa.array(frame["SEQN"].to_numpy(np.int64)),
        "phq9_total": pa.array(frame["phq9_total"].to_numpy(np.float64)),
        "depression": pa.array(frame["depression"], type=pa.int8(), from_pandas=True),
        "benzodiazepine": pa.array(frame["benzodiazepine"], type=pa.int8(), from_pandas=True),
        "ssri": pa.array(frame["ssri"], type=pa.int8(), from_pandas=True),
        "wear_days": pa.array(frame["wear_days"].to_numpy(np.int16)),
        "activity": pa.ListArray.from_arrays(offsets, pa.array(a_vals, type=pa.float32())),
        "state": pa.ListArray.from_arrays(offsets, pa.array(s_vals, type=pa.int8())),
    })
    meta = {"biotune.cohort": json.dumps({"minutes": WEEK_MINUTES, "start": "midnight",
                                          "min_valid_days": min_valid_days,
                                          "min_wear_minutes": min_wear_minutes, "build_id": build_id})}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
    report_path = Path(str(out) + ".report.json")
    with storage.atomic_local_path(str(out), suffix=".parquet") as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=512)
        try:  # an old report must never sit beside the new parquet (see the module docstring)
            report_path.unlink(missing_ok=True)
        except OSError as exc:
            raise storage.os_error(exc, str(report_path)) from exc

    def counts(col: str) -> dict[str, int]:
        v = frame[col]
        return {"1": int((v == 1).sum()), "0": int((v == 0).sum()), "missing": int(v.isna().sum())}

    report = CohortReport(
        source_dir=str(source_dir), out_path=str(out), report_path=str(out) + ".report.json",
        n_candidates=int(len(universe)), n_included=int(n_keep), excluded=excluded,
        labels={c: counts(c) for c in ("depression", "benzodiazepine", "ssri")},
        rows_read=int(stats["rows"]), rows_unplaced=int(stats["unplaced_rows"]),
        seconds=round(time.perf_counter() - t0, 3), workers=used_workers, engine=engine,
        min_valid_days=min_valid_days, min_wear_minutes=min_wear_minutes,
        files={k: str(v) for k, v in files.items()}, notes=notes, actigraphy=actigraphy, build_id=build_id)
    _atomic_write_bytes(Path(report.report_path), json.dumps(report.to_dict(), indent=2).encode())
    say("cohort done")
    return report


def load_cohort_arrays(path: str | os.PathLike):
    """(frame without the matrices, activity float32[n, 10080], state int8[n, 10080])."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute  # noqa: F401  (pa.compute)
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise storage.os_error(exc, str(path), "read") from exc
        raise InputFormatError(f"{Path(path).name} is not a readable parquet file: {exc}", where=str(path),
                               fix="rebuild it with biotune.mood.cohort.build_cohort") from exc
    for col in ("activity", "state"):
        if col not in table.column_names:
            raise InputFormatError(f"{Path(path).name} has no '{col}' column; it is not a biotune cohort",
                                   where=str(path), fix="rebuild it with biotune.mood.cohort.build_cohort")
    n = table.num_rows

    def matrix(col: str, dtype) -> np.ndarray:
        arr = table.column(col).combine_chunks()
        if n == 0:
            return np.empty((0, WEEK_MINUTES), dtype=dtype)
        lengths = pa.compute.list_value_length(arr).to_numpy(zero_copy_only=False)
        if not (lengths == WEEK_MINUTES).all():
            raise InputFormatError(f"{Path(path).name}: every '{col}' list must hold {WEEK_MINUTES} minutes",
                                   where=str(path), fix="rebuild it with biotune.mood.cohort.build_cohort")
        return arr.flatten().to_numpy(zero_copy_only=False).astype(dtype, copy=False).reshape(n, WEEK_MINUTES)

    activity = matrix("activity", np.float32)
    state = matrix("state", np.int8)
    mapper = {pa.int8(): pd.Int8Dtype()}.get
    frame = table.drop_columns(["activity", "state"]).to_pandas(types_mapper=mapper)
    frame["SEQN"] = frame["SEQN"].astype(np.int64)
    frame["wear_days"] = frame["wear_days"].astype(np.int16)
    return frame, activity, state


def read_report(path: str | os.PathLike) -> dict:
    """The ``.report.json`` of a cohort parquet, checked to belong to it (same ``build_id``).

    A report from another build (a run killed between the two writes) -> InputFormatError."""
    import pyarrow.parquet as pq

    report_path = str(path) + ".report.json"
    report = storage.read_json(report_path)
    meta = json.loads((pq.read_schema(path).metadata or {}).get(b"biotune.cohort", b"{}"))
    if meta.get("build_id") != report.get("build_id"):
        raise InputFormatError(f"{Path(report_path).name} belongs to another build of {Path(path).name} "
                               f"(build {report.get('build_id')!r}, parquet {meta.get('build_id')!r})",
                               where=report_path, fix="rebuild the cohort (the previous run was interrupted)")
    return report
