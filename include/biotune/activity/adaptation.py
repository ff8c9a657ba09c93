"""The activity_domain_adaptation DAG's own steps (the seed's decision tree), before the shared
fine-tune steps take over:

    diagnose --(any check fails)--> pipeline_mismatch: stop, report in the lake, nothing tuned
             --(passes)--> prepare -> base model -> shift check --(no shift)--> stop
                                                                 --(domain shift)--> fine-tune -> gate -> promote

Each function is one task; they hand each other small dicts (lake URIs, verdicts), never frames.
"""

from __future__ import annotations

import json
from pathlib import Path

from biotune import storage
from biotune.errors import DataValidationError

DAG_ID = "activity_domain_adaptation"


def run_dir(run_id: str) -> str:
    from biotune.steps import run_dir as shared

    return shared(DAG_ID, run_id)


def diagnose_step(params: dict, run_id: str) -> dict:
    """The pipeline diagnostic on the new device's data; the report (JSON + text) in the lake."""
    from biotune.activity.diagnose import diagnose, write_report
    from biotune.activity.family import ActivityFamily

    p = ActivityFamily.defaults(params)
    report = diagnose(p["data"], p["config"], p.get("pipeline"))
    uri = write_report(report, storage.join(run_dir(run_id), "diagnostic.json"))
    unreadable = []
    if "input_files" in report.failed():
        unreadable = sorted(f for f in storage.listdir(p["data"]) if Path(f).name in report.check("input_files").measured)
    details = [f"{c.name}: {c.detail or 'measured ' + json.dumps(c.measured, default=str)[:200]}; fix: {c.fix}"
               for c in report.checks if c.status == "fail"]
    return {"ok": report.ok, "status": report.status, "failed": report.failed(), "details": details, "report": uri,
            "data": p["data"], "unreadable": [storage.join(p["data"], f) for f in unreadable],
            "summary": report.to_text().splitlines()[0]}


def stop_on_mismatch(diag: dict, run_id: str) -> None:
    """Stop the run: unreadable files go to quarantine, the failed checks are the error."""
    moved = [storage.quarantine(f, reason="pipeline diagnostic: file cannot be read (see the report)", run_id=run_id)
             for f in diag.get("unreadable", []) if storage.exists(f)]
    raise DataValidationError(
        f"pipeline mismatch: {', '.join(diag['failed'])} failed; no fine-tuning on mis-processed data",
        where=diag["report"],
        fix="read each failed check's fix in the report, correct the pipeline config (or the data) and trigger "
            "the DAG again" + (f"; unreadable files were moved to {', '.join(moved)}" if moved else ""),
        failures=diag.get("details") or [f"{name}: failed" for name in diag["failed"]])


def _model_for_shift(spec_name: str, prepared: dict):
    """What predicts on the new device today: the champion if there is one, else the base model."""
    import tempfile

    from biotune import registry
    from biotune.activity.bundle import load_bundle

    champ = registry.champion(spec_name)
    if champ is not None:
        from biotune.scoring import load_champion

        model = load_champion(spec_name, champ.version)
        return (lambda x: model.predict(x)), f"champion v{champ.version}"
    with tempfile.TemporaryDirectory(prefix="activity_base_") as tmp:  # Keras holds the model in memory
        storage.download_dir(prepared["base"], tmp)
        bundle = load_bundle(tmp)
    return bundle.predict, f"base model ({prepared.get('origin')})"


def shift_step(dataset: dict, prepared: dict, run_id: str, spec=None) -> dict:
    """The shift check of the new-domain windows against the source windows; report in the lake."""
    import numpy as np

    from biotune.activity import dataset as ds
    from biotune.activity.shift import shift_check
    from biotune.family import get_family

    spec = spec or get_family("activity").specs()[0]
    prepared = prepared[spec.architecture.kind] if spec.architecture.kind in prepared else prepared
    predict, which = _model_for_shift(spec.name, prepared)
    source = ds.load_source(dataset)
    table = storage.read_parquet(dataset["uri"], columns=["split", ds.TASK])
    new_x = ds._read_npy(dataset["x"])
    diag = storage.read_json(dataset["diagnostic"])
    rng = np.random.default_rng(0)  # the shift check needs a sample, not every source window
    pick = np.sort(rng.choice(len(source), min(len(source), 3000), replace=False))
    tc = ds.training_config(dataset)
    report = shift_check(tc.scaler.transform(source.x[pick]), tc.scaler.transform(new_x), predict(source.x[pick]),
                         predict(new_x), diagnostic=diag, reference_y=source.y[pick],
                         current_y=table[ds.TASK].to_numpy(), classes=spec.classes or tc.classes,
                         psi_threshold=spec.drift.threshold, psi_critical=spec.drift.critical, method=spec.drift.method,
                         bins=spec.drift.bins, min_confidence=spec.retraining.min_confidence)
    out = {**report.to_dict(), "model": which}
    out["report"] = storage.write_json(storage.join(run_dir(run_id), "shift.json"), out)
    return out


__all__ = ["DAG_ID", "diagnose_step", "run_dir", "shift_step", "stop_on_mismatch"]
