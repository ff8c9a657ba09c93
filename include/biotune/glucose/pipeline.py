"""The glucose family's data steps: a reviewed chat JSONL -> a checked, split, prepared dataset.

``prepare_dataset`` checks the JSONL the lab brings (:mod:`biotune.glucose.check`); a file with
any error is moved to quarantine with the check report beside it and the run fails with a
DataValidationError listing each problem by line. A passing file becomes, under the run's folder:

- ``dataset/examples.parquet``: one row per example: ``example_id``, ``group`` (the patient: a
  hash of the prompt's "Patient Profile" block, so one person's days share a split),
  ``split`` (train/val/test by group, deterministic), ``line``, the prompt features
  (:data:`FEATURES`, parsed from the user message; NaN where it states none), ``frequent_lows``,
  ``prompt`` (the last user message), ``messages`` (the chat before the answer, JSON) and
  ``reference`` (the reviewed answer);
- ``dataset/{train,validation,test}.jsonl``: the same examples as chat JSONL, for a provider;
- ``dataset/check_report.json``: the checker's report.

Daily batches (``landing/glucose/<date>/prompts.jsonl``): one request per line, ``{"id": ...,
"messages": [system?, user]}`` and optionally ``"reference"`` (a reviewed answer, the label).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from biotune import storage
from biotune.errors import DataValidationError, InputFormatError, MissingInputError
from biotune.glucose import answers, check, tokens
from biotune.glucose.dataset import FEATURES, assign_splits
from biotune.glucose.prompt import SYSTEM_PROMPT, parse_user_message, states_frequent_lows

SPLIT_FILES = {"train": "train.jsonl", "val": "validation.jsonl", "test": "test.jsonl"}
BATCH_FILE = "prompts.jsonl"
_PROFILE = re.compile(r"Patient Profile:\s*\n((?:- .*\n?)+)")


def default_source() -> str:
    return storage.lake_path("landing", "glucose", "training", "examples.jsonl")


def resolve_source(source: str) -> str:
    """The JSONL to train on: ``source`` itself, or the one ``*.jsonl`` in a folder (``examples.jsonl``
    first), so a landing folder works as well as a file."""
    fix = "point the DAG's source param at the reviewed chat JSONL (or land it at landing/glucose/training/examples.jsonl)"
    if not storage.exists(source):
        raise MissingInputError(f"no training file at {source}", where=source, fix=fix)
    if storage.is_s3(source) or Path(source).is_file():
        return source
    names = [n for n in storage.listdir(source) if n.endswith(".jsonl")]
    if "examples.jsonl" in names:
        return storage.join(source, "examples.jsonl")
    if len(names) == 1:
        return storage.join(source, names[0])
    raise MissingInputError(f"{source} is a folder with {len(names)} .jsonl files ({names[:5]})", where=source,
                            fix="name the training file examples.jsonl, or point source at the file")


def group_key(user_text: str) -> str:
    """The patient an example belongs to: its profile block (age, gender, type, ratios), hashed."""
    m = _PROFILE.search(user_text or "")
    basis = m.group(1).strip() if m else (user_text or "")
    return hashlib.sha256(basis.encode("utf-8")).hexdigest()[:16]


def features_of(user_text: str) -> dict[str, float]:
    nums = parse_user_message(user_text or "")
    return {k: (np.nan if nums.get(k) is None else float(nums[k])) for k in FEATURES}


def _last(messages: list[dict], role: str) -> tuple[int, str]:
    for i in range(len(messages) - 1, -1, -1):
        if isinstance(messages[i], dict) and messages[i].get("role") == role:
            return i, messages[i].get("content") or ""
    return -1, ""


def file_digest(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_or_quarantine(source: str, local: str, run_id: str, report_uri: str, model: str,
                        max_tokens: int | None) -> check.CheckReport:
    """Check the file; on any error move it to quarantine with the report beside it, and raise
    DataValidationError listing every problem (line: code: message)."""
    from biotune.errors import BiotuneError

    report = check.check_file(local, model=model, max_tokens=max_tokens)
    report.path = source
    storage.write_json(report_uri, report.as_dict())
    if report.ok:
        return report
    try:
        report.raise_for_errors()
    except DataValidationError as exc:
        failures, fix = exc.failures, exc.fix
        reason = exc.what + "\n" + "\n".join(failures)
        try:
            moved = storage.quarantine(source, reason=reason, run_id=run_id)
        except BiotuneError as qexc:  # never hide the check's findings behind a failed move
            raise DataValidationError(f"{exc.what}; it could NOT be moved to quarantine ({qexc.what})",
                                      where=source, fix=f"{fix}; do not use {source} until it is corrected",
                                      failures=failures) from None
        dest = moved.rsplit("/", 1)[0] if storage.is_s3(moved) else str(Path(moved).parent)
        storage.write_json(storage.join(dest, "check_report.json"), report.as_dict())
        raise DataValidationError(exc.what, where=source, fix=f"{fix} (the file was moved to {moved}, "
                                  "check_report.json beside it)", failures=failures) from None
    return report


def prepare_dataset(source: str, run_dir: str, run_id: str, *, val_fraction: float = 0.2,
                    test_fraction: float = 0.2, seed: int = 0, model: str = tokens.DEFAULT_MODEL,
                    max_tokens: int | None = None, progress: Callable[[str], None] | None = None) -> dict:
    """Check, split and write the dataset (see the module doc); returns URIs and counts for XCom."""
    source = resolve_source(source)
    out_dir = storage.join(run_dir, "dataset")
    with storage.local_copy(source) as local:
        report = check_or_quarantine(source, local, run_id, storage.join(out_dir, "check_report.json"),
                                     model, max_tokens)
        digest = file_digest(local)
        rows = []
        with open(local, encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, 1):
                ex = json.loads(line)
                messages = ex["messages"]
                a, reference = _last(messages, "assistant")
                _, prompt = _last(messages[:a], "user")
                rows.append({"example_id": f"ex{line_no:06d}", "group": group_key(prompt), "line": line_no,
                             **features_of(prompt), "frequent_lows": states_frequent_lows(prompt),
                             "prompt": prompt, "messages": json.dumps(messages[:a], ensure_ascii=False),
                             "reference": reference})
    if progress:
        progress(f"checked {source}: {report.n_examples} examples, {len(report.warnings)} warning(s)")
    splits = assign_splits([r["group"] for r in rows], val_fraction, test_fraction, seed)
    table = pd.DataFrame(rows)
    table.insert(2, "split", table["group"].map(splits))
    empty = [s for s in ("train", "val", "test") if not (table["split"] == s).any()]
    if empty:
        raise InputFormatError(f"the {', '.join(empty)} split(s) are empty: {table['group'].nunique()} patients "
                               f"in {len(table)} examples", where=source,
                               fix="supply examples from more patients (the split is by patient)")
    uri = storage.write_parquet(table, storage.join(out_dir, "examples.parquet"))
    files = {}
    for split, name in SPLIT_FILES.items():
        part = table[table["split"] == split]
        text = "".join(json.dumps({"messages": json.loads(m) + [{"role": "assistant", "content": r}]},
                                  ensure_ascii=False) + "\n" for m, r in zip(part["messages"], part["reference"]))
        files[split] = storage.write_text(storage.join(out_dir, name), text)
    counts = {s: int((table["split"] == s).sum()) for s in SPLIT_FILES}
    if progress:
        progress(f"split by patient: {counts} ({table['group'].nunique()} patients)")
    return {"uri": uri, "examples": int(len(table)), "patients": int(table["group"].nunique()),
            "counts": counts, "files": files, "source": source, "digest": digest,
            "check_report": storage.join(out_dir, "check_report.json"),
            "tokens_mean": report.token_stats.get("mean"), "tokens_max": report.token_stats.get("max")}


def load_examples(dataset: dict, which: str | None = None) -> pd.DataFrame:
    table = storage.read_parquet(dataset["uri"])
    return table if which is None else table[table["split"] == which].reset_index(drop=True)


def model_input(frame: pd.DataFrame) -> pd.DataFrame:
    """What the models (and their pyfuncs) take: the prompt and the chat before the answer."""
    return pd.DataFrame({"prompt": frame["prompt"].astype(str).to_numpy(),
                         "messages": frame["messages"].astype(str).to_numpy()})


def chats(x: pd.DataFrame, references=None) -> list[dict]:
    """Chat examples (``{"messages": [...]}``) from a model input frame (+ the answers to learn)."""
    out = []
    for i, (prompt, messages) in enumerate(zip(x["prompt"], x.get("messages", [None] * len(x)))):
        msgs = json.loads(messages) if isinstance(messages, str) and messages else [
            {"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": str(prompt)}]
        if references is not None:
            msgs = msgs + [{"role": "assistant", "content": str(references[i])}]
        out.append({"messages": msgs})
    return out


# --- daily batches ------------------------------------------------------------------------------------

def read_batch_file(path: str) -> pd.DataFrame:
    """A day's prompts -> frame ``id, prompt, messages, reference`` + features; typed errors by line."""
    with storage.local_copy(path) as local:
        raw = Path(local).read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    rows = []
    for line_no, line in enumerate(raw.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            ex = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputFormatError(f"line {line_no} is not a JSON object ({exc})", where=f"{path}, line {line_no}",
                                   fix='write one {"id": ..., "messages": [...]} per line (UTF-8 JSONL)') from None
        if not isinstance(ex, dict) or not isinstance(ex.get("messages"), list):
            raise InputFormatError(f"line {line_no} has no messages list", where=f"{path}, line {line_no}",
                                   fix='each line needs "messages": [{"role": "user", "content": ...}]')
        msgs = [m for m in ex["messages"] if isinstance(m, dict)]
        _, prompt = _last(msgs, "user")
        rows.append({"id": str(ex.get("id", "")), "prompt": prompt,
                     "messages": json.dumps([m for m in msgs if m.get("role") != "assistant"], ensure_ascii=False),
                     "reference": ex.get("reference"), "n_messages": len(ex["messages"]),
                     "has_user": int(bool(prompt)), "prompt_chars": len(prompt), **features_of(prompt)})
    if not rows:
        raise InputFormatError(f"{path} holds no prompts", where=path, fix="land a batch with at least one request")
    return pd.DataFrame(rows)


def batch_validation_frame(path: str) -> pd.DataFrame:
    frame = read_batch_file(path)
    return frame[["id", "n_messages", "has_user", "prompt_chars", *FEATURES]]


def output_categories(outputs) -> np.ndarray:
    """Each answer as ``well_formed`` or ``malformed``: prediction drift follows the format rate."""
    return np.asarray(["well_formed" if answers.format_ok(o) else "malformed" for o in outputs], dtype=object)
