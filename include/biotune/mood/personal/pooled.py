"""Pooled person-days for the population episode models (family ``mood_personal``).

Training data (``source``): a folder with one sub-folder per person holding ``export.zip``
(Apple Health) or ``sleep.csv`` (mood_ml / Fitbit) and ``labels.csv`` (person_id, kind, start,
end, severity), e.g. a consented research cohort or the generator's output. Every file is
imported with the personal importer (bad input quarantined with a typed error), the 36 daily
features computed per person (trailing window), and one row written per labelled person-day:
``person_id`` (a one-way hash: these rows leave the encrypted store), ``date``, ``split``,
the three next-day targets (depressive, manic, hypomanic: 1/0/NaN) and the features.

Split at the person level, deterministically: persons in hash order, validation and test each
take persons until every task has a positive there (and their share is reached), the rest
train. Daily batches (``landing/mood_personal/<date>/batch.parquet``): one row per person-day
to score, ``person_id`` + the 36 features (+ optional labels).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import re
from pathlib import Path

import numpy as np

from biotune import storage
from biotune.errors import InputFormatError, MissingInputError
from biotune.mood.personal.names import SLEEP_FEATURE_NAMES

TASKS = ("depressive", "manic", "hypomanic")
ID = "person_id"
ANONYMOUS = re.compile(r"^s-[0-9a-z]+$")     # anonymous_id and the demo rows' ids


def anonymous_id(person: str, salt: str = "pooled") -> str:
    return "s-" + hashlib.sha256(f"{salt}:{person}".encode()).hexdigest()[:16]


def person_folders(source: str) -> list[Path]:
    root = Path(source)
    if not root.is_dir():
        raise MissingInputError(f"no folder at {source}", where=source,
                                fix="point source at a folder of person folders (export.zip or sleep.csv + labels.csv)")
    found = sorted(p for p in root.iterdir() if p.is_dir() and (p / "labels.csv").exists()
                   and ((p / "export.zip").exists() or (p / "sleep.csv").exists()))
    if len(found) < 3:
        raise MissingInputError(f"{len(found)} person folder(s) with data and labels.csv in {source}", where=source,
                                fix="a population needs at least 3 persons: <person>/export.zip (or sleep.csv) and "
                                    "<person>/labels.csv")
    return found


def _labels(path: Path):
    from biotune.mood.personal.labels import KINDS, Label

    out = []
    with open(path, newline="") as fh:
        for i, row in enumerate(csv.DictReader(fh), start=2):
            try:
                kind = row["kind"].strip()
                start, end = dt.date.fromisoformat(row["start"].strip()), dt.date.fromisoformat(row["end"].strip())
            except (KeyError, ValueError, AttributeError) as exc:
                raise InputFormatError(f"label row is not kind,start,end ({exc})", where=f"{path}, line {i}",
                                       fix="columns person_id,kind,start,end,severity; dates YYYY-MM-DD") from exc
            if kind not in KINDS or end < start:
                raise InputFormatError(f"bad label {kind} {start}..{end}", where=f"{path}, line {i}",
                                       fix=f"kind in {KINDS}; end on or after start")
            out.append(Label(0, path.parent.name, kind, start, end, None, dt.datetime.now(dt.timezone.utc)))
    return out


def _assign_splits(persons: list[str], positives: dict[str, set[str]], val_fraction: float,
                   test_fraction: float) -> dict[str, str]:
    """Persons in hash order; for each task (rarest first) its positive persons are dealt to test, val
    and train in turn so every split sees both classes when the cohort allows; the other persons fill
    test and val to their shares, the rest train."""
    order = sorted(persons, key=lambda p: hashlib.sha256(p.encode()).hexdigest())
    n = len(order)
    want = {"test": max(1, int(round(test_fraction * n))), "val": max(1, int(round(val_fraction * n)))}
    out: dict[str, str] = {}
    for task in sorted(TASKS, key=lambda t: sum(t in positives[p] for p in order)):
        have = {s: any(task in positives[p] for p, sp in out.items() if sp == s) for s in ("test", "val", "train")}
        for p in (p for p in order if p not in out and task in positives[p]):
            split = next((s for s in ("test", "val", "train") if not have[s]), None)
            if split is None:
                break
            if split != "train" and sum(v == split for v in out.values()) >= want[split] + 1:
                continue
            out[p] = split
            have[split] = True
    for p in order:
        if p not in out:
            for split in ("test", "val"):
                if sum(v == split for v in out.values()) < want[split]:
                    out[p] = split
                    break
            else:
                out[p] = "train"
    return out


def build_dataset(source: str, run_dir: str, run_id: str, *, val_fraction: float = 0.2, test_fraction: float = 0.2,
                  progress=None) -> dict:
    """Import every person of ``source`` and write ``features.parquet`` under ``run_dir``."""
    import pandas as pd

    from biotune.mood.personal.daily import features_for
    from biotune.mood.personal.health import import_health
    from biotune.mood.personal.labels import day_targets
    from biotune.mood.personal.sleepcsv import import_sleep_csv

    folders = person_folders(source)
    series, labels = [], []
    for folder in folders:
        if progress:
            progress(f"importing {folder.name}")
        if (folder / "export.zip").exists():
            s, _, _ = import_health(folder / "export.zip")
        else:
            s, _, _ = import_sleep_csv(folder / "sleep.csv")
        series.append(s)
        labels.append(_labels(folder / "labels.csv"))
    frames = []
    for folder, feats, labs in zip(folders, features_for(series), labels):
        y = day_targets(labs, list(feats.index))
        f = feats[SLEEP_FEATURE_NAMES].copy()
        for t in TASKS:
            f[t] = y[t].to_numpy()
        f = f[feats["valid"].to_numpy() & y.notna().any(axis=1).to_numpy()]
        f.insert(0, "date", [d.isoformat() for d in f.index])
        f.insert(0, ID, anonymous_id(folder.name, run_id))
        frames.append(f.reset_index(drop=True))
    table = pd.concat(frames, ignore_index=True)
    pos = {p: {t for t in TASKS if (g[t] == 1).any()} for p, g in table.groupby(ID)}
    splits = _assign_splits(list(pos), pos, val_fraction, test_fraction)
    table.insert(2, "split", table[ID].map(splits))
    uri = storage.write_parquet(table, storage.join(run_dir, "features.parquet"))
    counts = table["split"].value_counts().to_dict()
    return {"uri": uri, "features": uri, "persons": len(folders), "rows": int(len(table)),
            "splits": {k: int(v) for k, v in counts.items()}}


def split_rows(spec, dataset: dict, which: str):
    table = storage.read_parquet(dataset["features"])
    mask = ((table["split"] == which) & table[spec.task].notna()).to_numpy()
    return (table.loc[mask, SLEEP_FEATURE_NAMES].reset_index(drop=True), table.loc[mask, spec.task].astype(int).to_numpy(),
            table.loc[mask, ID].to_numpy())


# ----------------------------------------------------------------------------- daily batches
def read_batch(path: str):
    """(frame with person_id + features + the three label columns, NaN where absent); typed errors."""
    import pandas as pd

    try:
        with storage.local_copy(path) as local:
            frame = pd.read_parquet(local)
    except (OSError, ValueError) as exc:
        raise InputFormatError(f"not a parquet batch: {exc}", where=path,
                               fix="land batch.parquet with person_id and the 36 mood_ml features") from exc
    except Exception as exc:  # pyarrow's own errors
        if "parquet" in type(exc).__module__ or "arrow" in type(exc).__module__:
            raise InputFormatError(f"not a parquet batch: {exc}", where=path, fix="land a parquet file") from exc
        raise
    missing = [c for c in (ID, *SLEEP_FEATURE_NAMES) if c not in frame.columns]
    if missing:
        raise InputFormatError(f"batch lacks columns {missing[:5]}{'...' if len(missing) > 5 else ''}", where=path,
                               fix="one row per person-day: person_id and the 36 mood_ml features")
    extra = [c for c in frame.columns if c not in (ID, "date", *SLEEP_FEATURE_NAMES, *TASKS)]
    if extra:
        raise InputFormatError(f"batch has unknown columns {extra[:5]}", where=path,
                               fix=f"allowed: person_id, date, the features, labels {TASKS}")
    for c in SLEEP_FEATURE_NAMES:
        if not np.issubdtype(frame[c].dtype, np.number):
            raise InputFormatError(f"feature {c} is not numeric ({frame[c].dtype})", where=path,
                                   fix="write the features as numbers (NaN when unknown)")
    for t in TASKS:
        if t not in frame.columns:
            frame[t] = np.nan
    known = frame[ID].notna()                  # a missing id stays missing: the batch suite fails it
    frame[ID] = frame[ID].astype(object)
    frame.loc[known, ID] = batch_person_ids(frame.loc[known, ID].astype(str), where=path)
    return frame.reset_index(drop=True)


def batch_person_ids(ids, where: str = "batch.parquet") -> list[str]:
    """The ids a batch row keeps: a pseudonym (``p-``, crypto.pseudonym) or an anonymous id (``s-``:
    anonymous_id, the demo rows; never a stored person) as it is; any other id is a person's own
    id and becomes its keyed pseudonym, the name of their personal store and of their registered
    models, so raw ids never reach predictions, logs or MLflow (needs the personal-data key)."""
    from biotune.mood.personal import crypto

    ids = [str(i).strip() for i in ids]
    raw = [i for i in ids if not (crypto.PSEUDONYM.match(i) or ANONYMOUS.match(i))]
    if not raw:
        return ids
    mapped = dict(zip(raw, crypto.pseudonyms(raw, where=f"{where}: {ID}")))
    return [mapped.get(i, i) for i in ids]


def demo_rows(rows: int, seed: int = 0, shifted: bool = False):
    """Person-day rows resampled from a small generated cohort (cached in the lake); ``shifted`` moves
    the circadian and long-sleep features by about one standard deviation. No noise is added: noise on
    a feature that is constant in the data (a z-score of a count that never varies) looked like drift."""
    import pandas as pd

    cache = storage.lake_path("tmp", "mood_personal", "demo_features.parquet")
    if storage.exists(cache):
        pool = storage.read_parquet(cache)
    else:
        import tempfile

        from biotune.mood.personal.synth_files import generate_persons

        with tempfile.TemporaryDirectory() as tmp:
            generate_persons(10, tmp, days=90, seed=99, filler=0.0)
            pool = pd.read_parquet(build_dataset(tmp, tmp, "demo")["features"])
        storage.write_parquet(pool, cache)
    rng = np.random.default_rng(seed)
    picked = pool.iloc[rng.integers(0, len(pool), rows)].reset_index(drop=True)
    out = picked[SLEEP_FEATURE_NAMES].copy()
    if shifted:
        for c in ("Circadian_phase_Zscore", "ST_long_Zscore"):
            out[c] = out[c] + 1.0 * pool[c].std()
        for c in ("ST_long_MN", "LongSleepWindow_length_MN"):
            out[c] = np.minimum(out[c] + 1.0 * pool[c].std(), 23.0)
    out.insert(0, ID, [f"s-demo{seed:04d}{i:05d}" for i in range(rows)])
    # the episodes people reported for half of the days (the rest arrive later): what monitoring's
    # error rate and a retrain learn from
    reported = rng.random(rows) < 0.5
    for task in TASKS:
        if task in picked.columns:
            out[task] = picked[task].astype("float64").where(reported)
    return out


def write_batch(frame, uri: str) -> str:
    return storage.write_parquet(frame, uri)

