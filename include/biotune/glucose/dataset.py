"""CGM records -> chat JSONL examples with reviewed answers, split by patient.

Input: a folder as :mod:`biotune.glucose.synth` writes it (``patients.csv`` plus
``<patient_id>/cgm.csv`` and an optional ``<patient_id>/meals.csv``). ``patients.csv`` needs a
``patient_id`` column; ``age``, ``gender``, ``diabetes_type``, ``insulin_carb_ratio``,
``correction_factor``, ``target_low``, ``target_high`` and ``uses_insulin`` are used when present.

One example per patient and window (a calendar day by default, the seed's 24-hour analysis)
with at least 20 h of readings: ``{"messages": [system, user, assistant]}``. The split is by
patient, never by example, so no person's days are on both sides: patients are ordered by a
hash of (seed, patient id) and the first ``val_fraction`` (at least one) go to validation.
That assignment is deterministic and does not depend on file order.

Outputs (local or s3://): ``train.jsonl``, ``validation.jsonl`` (and ``test.jsonl`` when
``test_fraction`` > 0) and ``examples.parquet``, one row per example: ``example_id``,
``patient_id``, ``window_start``, ``split``, ``line`` (1-based line in its JSONL), the prompt
features used for drift (:data:`FEATURES`), the three pattern flags, ``user`` and ``reference``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import pandas as pd

from biotune import storage
from biotune.errors import MissingInputError
from biotune.glucose import answers, patterns
from biotune.glucose.prompt import SYSTEM_PROMPT, Profile, render_user_message

FEATURES = ("average", "time_in_range", "cv", "highs_pct", "lows_pct", "low_episodes", "overnight_rise", "n_spikes")
SPLIT_FILES = {"train": "train.jsonl", "val": "validation.jsonl", "test": "test.jsonl"}


def _stable_int(*parts) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "big")


def assign_splits(patient_ids, val_fraction: float = 0.2, test_fraction: float = 0.0, seed: int = 0) -> dict[str, str]:
    """patient id -> ``train`` / ``val`` / ``test``; deterministic for a given set of ids and seed."""
    ids = sorted(set(map(str, patient_ids)), key=lambda pid: (_stable_int(seed, pid), pid))
    n = len(ids)
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 and n > 1 else 0
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 and n > 2 else 0
    out = {pid: "val" for pid in ids[:n_val]}
    out.update({pid: "test" for pid in ids[n_val:n_val + n_test]})
    out.update({pid: "train" for pid in ids[n_val + n_test:]})
    return out


def _profile(row: dict) -> tuple[Profile, bool]:
    def get(key, default="Unknown"):
        value = row.get(key)
        value = "" if value is None else str(value).strip()
        return value if value else default

    uses = str(get("uses_insulin", "true")).strip().lower() in ("1", "true", "yes")
    return Profile(age=get("age"), gender=get("gender"), diabetes_type=get("diabetes_type"),
                   target_low=get("target_low", 70), target_high=get("target_high", 180),
                   insulin_carb_ratio=get("insulin_carb_ratio"), correction_factor=get("correction_factor")), uses


def read_patients(source_dir) -> pd.DataFrame:
    path = Path(source_dir) / "patients.csv"
    if not path.exists():
        raise MissingInputError(f"no patients.csv in {source_dir}", where=str(path),
                                fix="put a patients.csv (patient_id, age, gender, diabetes_type, ...) beside the "
                                    "per-patient folders, or generate one with `biotune glucose synth`")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)  # "1:10", not "1:10.0"; blank = Unknown
    if "patient_id" not in table.columns:
        raise MissingInputError(f"{path} has no patient_id column (columns: {list(table.columns)})", where=str(path),
                                fix="add a patient_id column naming each patient's folder")
    return table


def build_examples(source_dir, seed: int = 0, min_hours: float = 20.0,
                   progress: Callable[[str], None] | None = None) -> list[dict]:
    """Every (patient, day) example as a dict: ids, messages, features, flags."""
    source = Path(source_dir)
    out = []
    for row in read_patients(source).to_dict("records"):
        pid = str(row["patient_id"])
        pdir = source / pid
        cgm = patterns.read_cgm(pdir / "cgm.csv")
        meals = patterns.read_meals(pdir / "meals.csv") if (pdir / "meals.csv").exists() else None
        profile, uses_insulin = _profile(row)
        for start, end in patterns.daily_windows(cgm, min_hours=min_hours):
            p = patterns.compute_patterns(cgm, meals, start, end)
            example_id = f"{pid}-{start:%Y%m%d}"
            recs = answers.review(p, uses_insulin, profile.correction_factor, seed=_stable_int(seed, example_id))
            user = render_user_message(profile, p)
            reference = answers.format_answer(recs)
            features = {k: getattr(p, k) for k in FEATURES if k != "n_spikes"}
            features["n_spikes"] = len(p.spikes)
            out.append({"example_id": example_id, "patient_id": pid, "window_start": start.isoformat(),
                        "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                                     {"role": "user", "content": user},
                                     {"role": "assistant", "content": reference}],
                        **{k: (None if v is None else float(v)) for k, v in features.items()},
                        **p.flags(), "user": user, "reference": reference})
        if progress:
            progress(f"{pid}: {sum(1 for e in out if e['patient_id'] == pid)} examples")
    return out


def write_jsonl(rows, uri: str) -> str:
    """``{"messages": ...}`` per line, UTF-8, ``\\n`` line ends, atomically."""
    with storage.atomic_local_path(uri, suffix=".jsonl") as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            for row in rows:
                fh.write(json.dumps({"messages": row["messages"]}, ensure_ascii=False) + "\n")
    return uri


def build_dataset(source_dir, out_dir: str, val_fraction: float = 0.2, test_fraction: float = 0.0,
                  seed: int = 0, progress: Callable[[str], None] | None = None) -> dict:
    """Write the split JSONL files and ``examples.parquet``; returns URIs and counts (JSON-able)."""
    rows = build_examples(source_dir, seed=seed, progress=progress)
    if not rows:
        raise MissingInputError(f"no patient in {source_dir} has a day with 20 h of CGM readings",
                                where=str(source_dir), fix="check the cgm.csv files cover whole days")
    splits = assign_splits([r["patient_id"] for r in rows], val_fraction, test_fraction, seed)
    result = {"n_examples": len(rows), "n_patients": len(splits), "files": {}, "counts": {}}
    frames = []
    for split, name in SPLIT_FILES.items():
        part = [r for r in rows if splits[r["patient_id"]] == split]
        if not part:
            continue
        uri = write_jsonl(part, storage.join(out_dir, name))
        result["files"][split] = uri
        result["counts"][split] = len(part)
        frame = pd.DataFrame([{k: v for k, v in r.items() if k != "messages"} for r in part])
        frame.insert(3, "split", split)
        frame.insert(4, "line", range(1, len(part) + 1))
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    result["examples"] = storage.write_parquet(table, storage.join(out_dir, "examples.parquet"))
    result["flags"] = {k: int(table[k].sum()) for k in ("dawn_phenomenon", "post_meal_spikes", "frequent_lows")}
    return result
