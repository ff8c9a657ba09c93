"""Synthetic mood production batches: one parquet per day in the lake's landing area.

Format (``landing/mood/<YYYY-MM-DD>/batch.parquet``), one row per person:

| column | type | |
|---|---|---|
| person_id | string | unique within the batch |
| activity | list<float32> | 10,080 minute values (one week from midnight), MIMS, NaN = missing |
| state | list<int8> | 10,080 PAXPREDM codes: 1 wake, 2 sleep, 3 non-wear, 4 unknown |
| depression, benzodiazepine, ssri | int8, nullable (optional) | labels of the labelled samples |

Each person's week comes from the NHANES generator's minute simulator
(:func:`biotune.synthetic.nhanes._simulate_minutes`, same latent profiles and planted signal as
the training data): the record is cut to the seven whole days that start at the first
midnight. From ``shift_from`` on, the population moves: later and more irregular sleep, shorter
nights, less daytime activity and more restless nights (scaled by ``shift_strength``), so several
of the 36 mood_ml features drift (PSI well above 0.25) and the models trained before the shift
lose accuracy and confidence.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from biotune.synthetic.nhanes import MINUTES_PER_DAY, _simulate_minutes, latent_profiles

WEEK = 7 * MINUTES_PER_DAY
LABEL_COLUMNS = ("depression", "benzodiazepine", "ssri")
BATCH_FILE = "batch.parquet"


def _as_date(value) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def shift_profiles(profiles: pd.DataFrame, strength: float, seed: int = 0) -> pd.DataFrame:
    """The production shift applied to latent profiles (``strength`` 0 = none, 1 = the demo's)."""
    s = float(strength)
    if s == 0:
        return profiles
    rng = np.random.default_rng([seed, 99])
    out = profiles.copy()
    n = len(out)
    out["onset"] = out["onset"] + s * (150 + rng.normal(0, 30, n))  # ~2.5 h later to bed
    out["jitter"] = out["jitter"] + s * 60.0                         # much less regular
    out["duration"] = out["duration"] - s * 70.0                     # shorter nights
    out["level"] = out["level"] * max(1.0 - 0.35 * s, 0.2)          # less active by day
    out["night_move"] = out["night_move"] * (1 + 0.8 * s)
    return out


def simulate_week(p, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(activity float32 [10080] with NaN missing, state int8 [10080]) for one latent profile, or None
    when the device recorded nothing or the record does not cover a whole week."""
    m = _simulate_minutes(p, seed)
    if m is None:
        return None
    clock = int(p.start_min) + np.arange(len(m["_state"]))
    first = ((int(clock[0]) + MINUTES_PER_DAY - 1) // MINUTES_PER_DAY) * MINUTES_PER_DAY
    a = first - int(clock[0])
    if a + WEEK > len(clock):
        return None
    activity = m["PAXMTSM"][a:a + WEEK].astype(np.float32)
    activity[activity < 0] = np.nan  # -0.01 = MIMS not computable
    state = m["_state"][a:a + WEEK].astype(np.int8)
    return activity, state


def day_batch(day, persons: int, seed: int = 0, shifted: bool = False, shift_strength: float = 1.0,
              label_fraction: float = 0.5) -> pd.DataFrame:
    """One day's batch as a frame (activity/state as numpy arrays per row)."""
    d = _as_date(day)
    day_seed = int(seed) * 100_003 + d.toordinal()
    # draw extra profiles: people who wore nothing never reach a batch
    profiles = latent_profiles(int(persons * 1.15) + 5, seed=day_seed)
    if shifted:
        profiles = shift_profiles(profiles, shift_strength, seed=day_seed)
    rng = np.random.default_rng([day_seed, 7])
    rows = []
    for p in profiles.itertuples():
        if len(rows) >= persons:
            break
        week = simulate_week(p, day_seed)
        if week is None:
            continue
        labelled = rng.random() < label_fraction and bool(p.adult)
        rows.append({
            "person_id": f"{d:%Y%m%d}-{len(rows):05d}",
            "activity": week[0], "state": week[1],
            "depression": int(p.depressed) if labelled else None,
            "benzodiazepine": int(p.benzo) if labelled else None,
            "ssri": int(p.ssri) if labelled else None,
        })
    frame = pd.DataFrame(rows, columns=["person_id", "activity", "state", *LABEL_COLUMNS])
    for col in LABEL_COLUMNS:
        frame[col] = frame[col].astype("Int8")
    return frame


def batch_table(frame: pd.DataFrame):
    """A pyarrow table in the batch format (list<float32> / list<int8> minute columns)."""
    import pyarrow as pa

    n = len(frame)
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * WEEK)

    def _list(col: str, dtype) -> "pa.Array":
        values = np.concatenate([np.asarray(v, dtype=dtype) for v in frame[col]]) if n else np.array([], dtype=dtype)
        return pa.ListArray.from_arrays(offsets, pa.array(values, from_pandas=True))

    arrays = {}
    for col, dtype in (("person_id", None), ("activity", np.float32), ("state", np.int8)):
        if col not in frame.columns:
            continue  # writing a malformed batch on purpose (tests)
        arrays[col] = (pa.array(frame[col].astype(str).tolist(), type=pa.string()) if dtype is None
                       else _list(col, dtype))
    for col in frame.columns:
        if col in arrays:
            continue
        arrays[col] = pa.array(frame[col], from_pandas=True)
    return pa.table(arrays)


def write_batch(frame: pd.DataFrame, path: str) -> str:
    """Write a batch frame in the batch format (atomically, local or S3)."""
    import pyarrow.parquet as pq

    from biotune import storage

    with storage.atomic_local_path(str(path), suffix=".parquet") as tmp:
        pq.write_table(batch_table(frame), tmp)
    return str(path)


def write_mood_batches(lake_landing_dir: str | os.PathLike, dates: Iterable, persons_per_day: int = 80,
                       seed: int = 0, shift_from: dt.date | str | None = None, shift_strength: float = 1.0,
                       label_fraction: float = 0.5) -> dict[str, str]:
    """Write ``<lake_landing_dir>/mood/<YYYY-MM-DD>/batch.parquet`` for every date.

    ``lake_landing_dir`` is the lake's ``landing`` folder (or any folder / s3:// prefix).
    Dates on or after ``shift_from`` are shifted by ``shift_strength``. About
    ``label_fraction`` of the adults carry labels. Returns ``{date: path}``.
    """
    from biotune import storage

    base = str(lake_landing_dir)
    start = _as_date(shift_from) if shift_from is not None else None
    out: dict[str, str] = {}
    for day in dates:
        d = _as_date(day)
        shifted = start is not None and d >= start
        frame = day_batch(d, persons_per_day, seed=seed, shifted=shifted, shift_strength=shift_strength,
                          label_fraction=label_fraction)
        path = storage.join(base, "mood", d.isoformat(), BATCH_FILE)
        if not storage.is_s3(path):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        out[d.isoformat()] = write_batch(frame, path)
    return out


def date_range(start, days: int) -> list[dt.date]:
    d0 = _as_date(start)
    return [d0 + dt.timedelta(days=i) for i in range(int(days))]
