"""Generated data in the family's real formats, for the demo, the contract test and the DAG test.

- training: synthetic CGM records (:mod:`biotune.glucose.synth`) -> reviewed chat JSONL, one
  file with every example (the DAG checks and splits it, as it would a lab's file);
- a daily batch: ``prompts.jsonl`` with one request per line, ``{"id", "messages": [system,
  user]}`` plus the reviewed answer as ``reference`` (the label) for some rows. ``shifted``: the
  production population has drifted: the three patterns are planted in 90% of the patients
  instead of 50% (more lows, spikes and dawn rises; lower time in range).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from biotune import storage


def write_training_jsonl(directory, patients: int = 24, days: int = 3, seed: int = 0) -> str:
    """CGM records for ``patients`` under ``directory/cgm`` and their reviewed examples in
    ``directory/examples.jsonl``; returns the JSONL path."""
    from biotune.glucose import dataset, synth

    root = Path(directory)
    synth.write_patients(root / "cgm", n_patients=patients, days=days, seed=seed)
    rows = dataset.build_examples(root / "cgm", seed=seed)
    return dataset.write_jsonl(rows, str(root / "examples.jsonl"))


def write_batch(uri: str, date, rows: int, seed: int = 0, shifted: bool = False, labelled: float = 0.3) -> str:
    """``rows`` prompts for ``date`` (one generated patient-day each) at ``uri``."""
    from biotune.dates import as_date
    from biotune.glucose import dataset, synth

    day = as_date(date)
    with tempfile.TemporaryDirectory() as tmp:
        # the batch's patients are new people (ids after the training ones), seen on the batch day
        synth.write_patients(tmp, n_patients=rows, days=1, seed=seed + day.toordinal(), start=day,
                             pattern_rate=0.9 if shifted else 0.5, first_id=5000)
        examples = dataset.build_examples(tmp, seed=seed, min_hours=18.0)
    lines = []
    for i, ex in enumerate(examples):
        rec = {"id": f"{day:%Y%m%d}-{i:05d}", "messages": ex["messages"][:2]}
        if i < labelled * len(examples):
            rec["reference"] = ex["reference"]
        lines.append(json.dumps(rec, ensure_ascii=False))
    return storage.write_text(uri, "\n".join(lines) + "\n")


__all__ = ["write_training_jsonl", "write_batch"]
