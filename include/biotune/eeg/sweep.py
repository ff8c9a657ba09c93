"""The pretraining sweep: which masking gives the best downstream classifier?

One variant per (mask ratio, masking style): its backbone checkpoint is discovered or pretrained
(``pipeline.prepare_backbone``), a classifier is fine-tuned on it through the shared train step,
and the variant is logged as a child of one MLflow parent run per sweep. The variants are compared
on the validation participants (the spec's gate metric, ties broken by the Brier score); the test
participants stay untouched until the best one meets the gate against the champion, like any
fine-tuned model.

Each function is one task of the ``eeg_pretrain_sweep`` DAG (and runs the same from a test).
Light to import: the DAG file imports it at parse time for its form.
"""

from __future__ import annotations

import json
import logging
from typing import Callable

from biotune.errors import SpecError

log = logging.getLogger(__name__)

Progress = Callable[[str], None] | None

DAG_ID = "eeg_pretrain_sweep"
DEFAULT_RATIOS = (0.25, 0.5, 0.75)
DEFAULT_STYLES = ("mae",)
SWEEP_KEYS = ("mask_ratios", "mask_styles")


def sweep_params() -> dict[str, dict]:
    """The sweep DAG's form: the fine-tune's, with lists of mask ratios and styles instead of one each."""
    from biotune.eeg.family import EEGFamily

    form = {k: v for k, v in EEGFamily().dag_params().items() if k not in ("mask_ratio", "mask_style", "checkpoint")}
    return {
        "mask_ratios": dict(default=list(DEFAULT_RATIOS), type="array", items={"type": "number"}, minItems=1,
                            title="Mask ratios", description="one pretraining per ratio (and style), each in (0, 1)"),
        "mask_styles": dict(default=list(DEFAULT_STYLES), type="array", items={"type": "string", "enum": ["mae", "bert"]},
                            minItems=1, title="Masking styles", description="mae (mask embedding) and/or bert (80/10/10)"),
        **form,
    }


def check_conf(conf: dict | None, form: dict) -> None:
    """A run's conf may only hold the form's keys (a typo would otherwise be ignored silently)."""
    unknown = sorted(set(conf or {}) - set(form))
    if unknown:
        raise SpecError(f"unknown key(s) in the run's conf: {unknown}", where=f"{DAG_ID} conf",
                        fix=f"the DAG takes {sorted(form)}; check the spelling")


def label(mask_ratio: float, style: str) -> str:
    return f"m{int(round(float(mask_ratio) * 100))}_{style}"


def variants(params: dict) -> list[dict]:
    """The (mask ratio, style) pairs to compare, each with its label (``m50_mae``); duplicates once."""
    ratios = params.get("mask_ratios") or list(DEFAULT_RATIOS)
    styles = params.get("mask_styles") or list(DEFAULT_STYLES)
    if isinstance(ratios, (int, float, str)):
        ratios = [ratios]
    if isinstance(styles, str):
        styles = [styles]
    out, seen = [], set()
    for style in styles:
        if style not in ("mae", "bert"):
            raise SpecError(f"unknown masking style {style!r}", where="params.mask_styles", fix="use mae and/or bert")
        for ratio in ratios:
            try:
                r = float(ratio)
            except (TypeError, ValueError):
                raise SpecError(f"mask ratio {ratio!r} is not a number", where="params.mask_ratios",
                                fix="e.g. [0.25, 0.5, 0.75]") from None
            if not 0.0 < r < 1.0:
                raise SpecError(f"mask ratio {r:g} is not in (0, 1)", where="params.mask_ratios",
                                fix="a share of each window's tokens, e.g. 0.5")
            name = label(r, style)
            if name not in seen:
                seen.add(name)
                out.append({"mask_ratio": r, "mask_style": style, "label": name})
    return out


def model_name(params: dict | None = None) -> str:
    """The EEG model the sweep serves: the family's one population spec."""
    from biotune import steps

    names = steps.model_names("eeg")
    if len(names) > 1:
        raise SpecError(f"the eeg family has {len(names)} specs {names}; the sweep serves one", where="models/",
                        fix="keep one eeg population spec, or run the sweep from a folder of specs holding one")
    return names[0]


def prepare(params: dict, dag_run_id: str, progress: Progress = None) -> dict:
    """The prepared dataset, under this sweep run's folder in the lake."""
    from biotune import steps
    from biotune.family import get_family

    fam = get_family("eeg")
    return {**fam.prepare(params, steps.run_dir(DAG_ID, dag_run_id), dag_run_id, progress), "family": fam.name}


# ====================================================================== MLflow parent and children
def _experiment(model: str) -> str:
    from biotune import registry

    return registry.experiment_id(f"biotune/{model}-sweep")


def _find_run(client, experiment: str, query: str):
    runs = client.search_runs([experiment], filter_string=query, max_results=1)
    return runs[0] if runs else None


def open_parent(model: str, dataset: dict, planned: list[dict], dag_run_id: str) -> str:
    """The sweep's parent MLflow run (one per Airflow run: a retried task finds it again)."""
    from biotune import registry

    client = registry.configure()
    exp = _experiment(model)
    with registry.registry_call(f"open the sweep run of {model}"):
        found = _find_run(client, exp, f"tags.dag_run_id = '{dag_run_id}' and tags.biotune_sweep = 'parent'")
        if found is not None:
            return found.info.run_id
        run = client.create_run(exp, run_name=f"{model} sweep {dag_run_id}",
                                tags={"dag_run_id": dag_run_id, "biotune_sweep": "parent", "biotune.model": model,
                                      "biotune.family": "eeg"})
        client.log_batch(run.info.run_id, params=_params({
            "model": model, "variants": ",".join(v["label"] for v in planned),
            "dataset": dataset.get("dataset_name"), "participants": dataset.get("n_participants"),
            "windows": dataset.get("n_windows")}))
        return run.info.run_id


def _params(values: dict):
    from mlflow.entities import Param

    return [Param(k, str(v)) for k, v in values.items() if v is not None]


def _metrics(values: dict, step: int = 0):
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, step) for k, v in values.items() if v is not None and v == v]


def _log_child(model: str, parent_run_id: str, dag_run_id: str, variant: dict, candidate: dict,
               participant: dict) -> str:
    """A variant's child run under the parent: its settings, checkpoint and validation metrics."""
    from biotune import registry

    client = registry.configure()
    exp = _experiment(model)
    p = candidate.get("params", {})
    with registry.registry_call(f"log sweep variant {variant['label']}"):
        found = _find_run(client, exp, f"tags.biotune_parent = '{parent_run_id}' and "
                                       f"tags.biotune_variant = '{variant['label']}'")
        run_id = found.info.run_id if found is not None else client.create_run(
            exp, run_name=f"{model} {variant['label']}",
            tags={"mlflow.parentRunId": parent_run_id, "biotune_parent": parent_run_id,  # the first nests it in the UI
                  "biotune_variant": variant["label"], "dag_run_id": dag_run_id,
                  "biotune_sweep": "child"}).info.run_id
        if found is None:  # params are write-once: settings that do not change on a retry
            client.log_batch(run_id, params=_params({
                "mask_ratio": variant["mask_ratio"], "mask_style": variant["mask_style"], "d_model": p.get("d_model"),
                "n_layers": p.get("n_layers"), "checkpoint": p.get("checkpoint"), "epochs": p.get("epochs"),
                "pretrain_epochs": p.get("pretrain_epochs")}))
        client.set_tag(run_id, "biotune.eeg.checkpoint_origin", str(p.get("checkpoint_origin")))
        if p.get("pretraining_run_id"):
            client.set_tag(run_id, "biotune.eeg.pretraining_run_id", str(p["pretraining_run_id"]))
        client.log_batch(run_id, metrics=_metrics({**candidate.get("val_metrics", {}),
                                                   **{f"val_participant_{k}": v for k, v in participant.items()},
                                                   "pretrain_final_loss": p.get("pretrain_final_loss")}))
        for key, values in (candidate.get("history") or {}).items():
            client.log_batch(run_id, metrics=[m for step, v in enumerate(values) for m in _metrics({key: v}, step)])
        client.set_terminated(run_id)
    return run_id


# ====================================================================== the variants
def variant_run_id(dag_run_id: str, variant: dict) -> str:
    """Where a variant's trained files go (the shared train step keys them by run)."""
    return f"{dag_run_id}__{variant['label']}"


def run_variant(model: str, dataset: dict, variant: dict, dag_run_id: str, params: dict, parent_run_id: str,
                progress: Progress = None) -> dict:
    """Discover or pretrain the variant's checkpoint, fine-tune on it, log it under the parent run."""
    from biotune import steps, storage
    from biotune.eeg import pipeline
    from biotune.specs import get_spec

    spec = get_spec(model)
    vparams = {**{k: v for k, v in params.items() if k not in SWEEP_KEYS},
               "mask_ratio": variant["mask_ratio"], "mask_style": variant["mask_style"]}
    backbone = pipeline.prepare_backbone(spec, dataset, vparams, progress, run_label=dag_run_id)
    candidate = steps.train(model, dataset, {"mamba2": {model: backbone}}, variant_run_id(dag_run_id, variant),
                            vparams, progress=progress)
    lineage = storage.read_json(storage.join(candidate["artifact"], pipeline.LINEAGE_FILE))
    participant = lineage.get("val_participant", {})
    child = _log_child(model, parent_run_id, dag_run_id, variant, candidate, participant)
    return {**candidate, "variant": variant, "sweep_child_run_id": child,
            "val_participant": {k: v for k, v in participant.items() if v == v}}


def _score(spec, candidate: dict) -> tuple[float, float]:
    """(gate metric on validation, oriented so higher is better; minus the Brier score): the order of variants."""
    vm = candidate.get("val_metrics", {})
    value = vm.get(f"val_{spec.gate.metric}", vm.get("val_auc"))
    value = float("-inf") if value is None or value != value else float(value) * (1 if spec.gate.higher_is_better else -1)
    brier = vm.get("val_brier")
    return value, -(brier if brier is not None and brier == brier else 1.0)


def compare(candidates: list[dict], parent_run_id: str, dag_run_id: str = "") -> dict:
    """The best variant on validation; the comparison table goes to the parent run. Returns the
    best candidate, ready for the shared evaluate step."""
    from biotune import registry
    from biotune.specs import get_spec

    candidates = [c for c in candidates if c]
    if not candidates:
        raise SpecError("no sweep variant finished", where=DAG_ID, fix="see the failed pretrain_and_finetune tasks")
    spec = get_spec(candidates[0]["model"])
    ranked = sorted(candidates, key=lambda c: _score(spec, c), reverse=True)
    best = ranked[0]
    table = [{"variant": c["variant"]["label"], "mask_ratio": c["variant"]["mask_ratio"],
              "mask_style": c["variant"]["mask_style"], "checkpoint": c["params"].get("checkpoint"),
              "pretrain_final_loss": c["params"].get("pretrain_final_loss"), **c.get("val_metrics", {}),
              **{f"val_participant_{k}": v for k, v in c.get("val_participant", {}).items()},
              "child_run_id": c.get("sweep_child_run_id")} for c in ranked]
    client = registry.configure()
    with registry.registry_call("log the sweep comparison"):
        flat = {f"{row['variant']}.{k}": v for row in table for k, v in row.items()
                if k.startswith("val_") and isinstance(v, (int, float))}
        client.log_batch(parent_run_id, metrics=_metrics(flat))
        client.set_tag(parent_run_id, "best_variant", best["variant"]["label"])
        client.set_tag(parent_run_id, "selected_by", f"val_{spec.gate.metric}, then val_brier")
        client.log_text(parent_run_id, json.dumps(table, indent=2, default=str), "sweep/comparison.json")
        client.set_terminated(parent_run_id)
    for row in table:
        log.info("sweep %s: %s", row["variant"], {k: v for k, v in row.items() if k.startswith("val_")})
    log.info("sweep best: %s (by val_%s)", best["variant"]["label"], spec.gate.metric)
    params = {**best["params"], "sweep_variant": best["variant"]["label"], "sweep_parent_run_id": parent_run_id}
    return {k: v for k, v in best.items() if k not in ("variant", "val_participant")} | {"params": params}
