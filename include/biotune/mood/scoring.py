"""Mood production batches: read, validate, featurize and score with the champions.

A batch is ``<lake>/landing/mood/<YYYY-MM-DD>/batch.parquet`` (format in
:mod:`biotune.synthetic.batches`): person_id, activity (list<float32>, 10,080 minutes, NaN
missing), state (list<int8>, PAXPREDM codes) and optional label columns. Predictions go to
``<lake>/predictions/mood/<YYYY-MM-DD>/<model>.parquet`` with person_id, proba, prediction,
confidence and model_version.

This module is the mood family's batch reading and features; scoring and monitoring are the
shared steps (:mod:`biotune.steps`, :mod:`biotune.monitoring`), which reach it through the
family contract (:mod:`biotune.mood.family`).
"""

from __future__ import annotations

import datetime as dt
import logging

import numpy as np
import pandas as pd

from biotune import storage
from biotune.errors import DataValidationError, InputFormatError, MissingInputError

log = logging.getLogger(__name__)

FAMILY = "mood"
MINUTES = 10_080
SUITE = "mood_batch"
REQUIRED_COLUMNS = ("person_id", "activity", "state")
LABEL_COLUMNS = ("depression", "benzodiazepine", "ssri")
ALLOWED_COLUMNS = (*REQUIRED_COLUMNS, *LABEL_COLUMNS)
BATCH_FILE = "batch.parquet"


def _day(date) -> str:
    if isinstance(date, dt.datetime):
        return date.date().isoformat()
    if isinstance(date, dt.date):
        return date.isoformat()
    return dt.date.fromisoformat(str(date)[:10]).isoformat()


def batch_uri(date) -> str:
    return storage.lake_path("landing", FAMILY, _day(date), BATCH_FILE)


def predictions_uri(date, model_name: str) -> str:
    from biotune import scoring

    return scoring.predictions_uri(FAMILY, date, model_name)


# ------------------------------------------------------------------------------------ reading

def _read_table(path: str):
    import pyarrow.parquet as pq

    with storage.local_copy(path) as local:
        try:
            return pq.read_table(local)
        except Exception as exc:  # truncated file, not parquet
            raise InputFormatError(f"cannot read the batch as parquet: {exc}", where=path,
                                   fix="land the batch again as a complete parquet file") from exc


def _minutes_matrix(table, col: str, dtype, path: str) -> np.ndarray:
    """A [n, 10080] array from a list column (every row must hold exactly 10,080 values)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = table.column(col).combine_chunks()
    if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type)):
        raise DataValidationError(f"column {col!r} is {arr.type}, not a list of minute values", where=path,
                                  fix=f"write {col} as list<{np.dtype(dtype).name}> with {MINUTES} values per row")
    n = len(arr)
    if n == 0:
        return np.zeros((0, MINUTES), dtype=dtype)
    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
    lengths = np.where(pd.isna(lengths), 0, lengths).astype(np.int64)
    bad = np.flatnonzero(lengths != MINUTES)
    if bad.size:
        raise DataValidationError(
            f"column {col!r}: {bad.size} of {n} rows do not hold {MINUTES} minutes "
            f"(e.g. row {int(bad[0])} holds {int(lengths[bad[0]])})", where=path,
            fix=f"each row's {col} must be one week of minutes from midnight ({MINUTES} values, NaN for missing)")
    values = arr.flatten().to_numpy(zero_copy_only=False)
    return np.asarray(values).astype(dtype, copy=False).reshape(n, MINUTES)


def check_columns(columns, path: str) -> None:
    """Missing required or unexpected columns -> DataValidationError naming them."""
    columns = list(columns)
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    extra = [c for c in columns if c not in ALLOWED_COLUMNS]
    problems = []
    if missing:
        problems.append(f"missing columns {missing}")
    if extra:
        problems.append(f"unexpected columns {extra}")
    if problems:
        raise DataValidationError(
            "the batch does not have the mood batch columns: " + "; ".join(problems), where=path,
            fix=f"a mood batch has {list(REQUIRED_COLUMNS)} and optionally {list(LABEL_COLUMNS)}; "
                "rename or drop the other columns and land it again",
            failures=problems)


def read_batch(path: str) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(frame of person_id + label columns, activity float32 [n, 10080] NaN missing, state int8 [n, 10080]).

    Raises DataValidationError for an empty batch, missing/extra columns, rows that are not a
    week, PAXPREDM codes outside 1-4 or duplicated person ids; MissingInputError when no file.
    """
    if not storage.exists(path):
        raise MissingInputError(f"no batch at {path}", where=path,
                                fix="land the day's batch there (landing/mood/<YYYY-MM-DD>/batch.parquet)")
    table = _read_table(path)
    check_columns(table.column_names, path)
    if table.num_rows == 0:
        raise DataValidationError("the batch is empty (0 rows)", where=path,
                                  fix="land a batch with at least one person, or none at all for that day")
    activity = _minutes_matrix(table, "activity", np.float32, path)
    state_raw = _minutes_matrix(table, "state", np.float32, path)
    if np.isnan(state_raw).any():
        state_raw = np.where(np.isnan(state_raw), 4, state_raw)  # a missing code means "unknown"
    codes = np.unique(state_raw)
    bad = [c for c in codes.tolist() if c not in (1.0, 2.0, 3.0, 4.0)]
    if bad:
        raise DataValidationError(f"column 'state' holds codes outside 1-4: {bad[:5]}", where=path,
                                  fix="state holds PAXPREDM codes: 1 wake, 2 sleep, 3 non-wear, 4 unknown")
    state = state_raw.astype(np.int8)
    frame = table.drop_columns(["activity", "state"]).to_pandas()
    frame["person_id"] = frame["person_id"].astype(str)
    dup = frame["person_id"].duplicated()
    if dup.any():
        raise DataValidationError(f"{int(dup.sum())} duplicated person_id values (e.g. "
                                  f"{frame.loc[dup, 'person_id'].iloc[0]})", where=path,
                                  fix="one row per person per batch")
    for col in LABEL_COLUMNS:
        if col in frame.columns:
            values = pd.to_numeric(frame[col], errors="coerce")
            lost = values.isna() & frame[col].notna()
            if lost.any():
                raise DataValidationError(
                    f"label column {col!r} holds values that are not 0/1 (e.g. {frame.loc[lost, col].iloc[0]!r} "
                    f"in row {int(lost.idxmax())})", where=path,
                    fix=f"write {col} as 0, 1 or empty (null) for unlabelled persons")
            frame[col] = values.astype("Float64")
    return frame.reset_index(drop=True), activity, state


def validation_frame(path: str) -> pd.DataFrame:
    """One row per person summarising the batch, for the ``mood_batch`` suite.

    Tolerant: whatever columns the file has are kept (scalar ones as-is, list ones summarised),
    optional label columns are added empty, so the suite can report every problem at once.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    table = _read_table(path)
    out: dict[str, object] = {}
    n = table.num_rows
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        if name in ("activity", "state") and (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)
                                              or pa.types.is_fixed_size_list(col.type)):
            lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False).astype(float)
            offsets = np.concatenate([[0], np.nancumsum(np.nan_to_num(lengths))]).astype(np.int64)
            values = np.asarray(col.flatten().to_numpy(zero_copy_only=False), dtype=np.float64)
            idx = np.repeat(np.arange(n), np.diff(offsets))
            finite = np.isfinite(values)
            cnt = np.bincount(idx, weights=finite, minlength=n)
            out[f"{name}_minutes"] = lengths
            if name == "activity":
                safe = np.where(finite, values, 0.0)
                mins = np.full(n, np.nan)
                maxs = np.full(n, np.nan)
                present = ~np.isnan(values)  # inf counts: the suite must see it to refuse it
                if present.any():
                    np.fmin.at(mins, idx[present], values[present])
                    np.fmax.at(maxs, idx[present], values[present])
                out["activity_valid_fraction"] = cnt / np.maximum(lengths, 1)
                out["activity_mean"] = np.where(cnt > 0, np.bincount(idx, weights=safe, minlength=n) / np.maximum(cnt, 1),
                                                np.nan)
                out["activity_min"] = mins
                out["activity_max"] = maxs
            else:
                known = np.isin(values, (1.0, 2.0, 3.0, 4.0))
                worn = np.isin(values, (1.0, 2.0))
                out["state_bad_codes"] = np.bincount(idx, weights=finite & ~known, minlength=n)
                out["state_worn_fraction"] = np.bincount(idx, weights=worn, minlength=n) / np.maximum(lengths, 1)
        else:
            out[name] = col.to_pandas() if n else pd.Series([], dtype=object)
    frame = pd.DataFrame({k: (v.to_numpy() if isinstance(v, pd.Series) else v) for k, v in out.items()},
                         index=pd.RangeIndex(n))
    for col in LABEL_COLUMNS:  # present labels reach the suite as they are: text must fail, not become NaN
        if col not in frame.columns:
            frame[col] = pd.Series([np.nan] * n, dtype="float64")
    return frame


def validate_batch(date, run_id: str = "") -> dict:
    """Run the ``mood_batch`` suite on the day's batch (the shared step); on failure quarantine it and raise."""
    from biotune import scoring

    return scoring.validate_batch(FAMILY, date, run_id=run_id)


# ----------------------------------------------------------------------------- features, scoring

def batch_features(activity: np.ndarray, state: np.ndarray) -> pd.DataFrame:
    """The 36 mood_ml features (columns SLEEP_FEATURE_NAMES), one row per person.

    ``state`` drives the sleep indexes (PAXPREDM: 2 sleep, 1 wake, 3/4 missing), as in training;
    ``activity`` is accepted for symmetry with the PAT input and to check the shapes agree.
    """
    from biotune.mood.features import SLEEP_FEATURE_NAMES, mood_ml_features, sleep_from_paxpredm

    state = np.asarray(state)
    if state.ndim != 2 or state.shape[1] != MINUTES:
        raise InputFormatError(f"state must be [n, {MINUTES}], got {state.shape}", where="batch_features",
                               fix="pass the batch's state matrix from read_batch")
    if activity is not None and np.asarray(activity).shape != state.shape:
        raise InputFormatError(f"activity {np.asarray(activity).shape} and state {state.shape} differ",
                               where="batch_features", fix="pass both matrices from the same batch")
    if len(state) == 0:
        return pd.DataFrame(columns=SLEEP_FEATURE_NAMES, dtype=np.float64)
    return mood_ml_features(sleep_from_paxpredm(state))[SLEEP_FEATURE_NAMES]


def model_input(kind: str, activity: np.ndarray, features: pd.DataFrame):
    """What a champion of this kind takes: PAT the raw activity week, XGBoost the 36 features."""
    if kind == "xgboost":
        from biotune.mood.features import SLEEP_FEATURE_NAMES

        return features[SLEEP_FEATURE_NAMES].astype(np.float64).reset_index(drop=True)
    if kind == "pat":
        return np.asarray(activity, dtype=np.float32)
    raise InputFormatError(f"no mood scorer for architecture {kind!r}", where="biotune.mood.scoring",
                           fix="mood models are 'pat' or 'xgboost'")


def reference_features(reference: pd.DataFrame) -> pd.DataFrame:
    """The drift reference's feature columns (the logged artifact also holds the label): a PAT
    model's activity-week summary (:mod:`biotune.mood.activity_week`) when it logged one, else
    the 36 mood_ml features (XGBoost, and PAT champions logged before PAT had its own)."""
    from biotune.mood.activity_week import ACTIVITY_WEEK_FEATURE_NAMES
    from biotune.mood.features import SLEEP_FEATURE_NAMES

    if all(c in reference.columns for c in ACTIVITY_WEEK_FEATURE_NAMES):
        return reference[ACTIVITY_WEEK_FEATURE_NAMES]
    missing = [c for c in SLEEP_FEATURE_NAMES if c not in reference.columns]
    if missing:
        from biotune.errors import DriftError

        raise DriftError(f"the reference lacks {len(missing)} of the 36 features (e.g. {missing[:3]})",
                         where="reference/features.parquet",
                         fix="re-run the fine-tuning DAG so the model logs its training features")
    return reference[SLEEP_FEATURE_NAMES]
