"""The EEG steps behind the family contract: run settings, the backbone checkpoint (discovered or
pretrained once per run), supervised fine-tuning on the prepared splits, and the model's MLflow
record with its lineage.

Settings come from the spec (``architecture.params``: the Mamba-2 backbone; ``training``: the
fine-tune; ``training.params``: masking and pretraining), overridden by the DAG's params.

Lineage travels with the trained files: ``lineage.json`` beside ``model.pt`` names the primary
dataset (its MLflow name ``EEG_{window}s_{channels}_{N}windows_primary`` and digest), the
checkpoint (name, config, the MLflow run that pretrained it) and the validation participants'
metrics. ``log_model`` (called by the shared publish step inside the model's MLflow run) logs all
of it: the primary dataset as a run input, the checkpoint's config as an artifact and the
pretraining run as a tag, and the participant-level metrics of validation and test
(a participant's probability is the mean of its windows').
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from biotune import storage
from biotune.errors import MissingInputError, SpecError

log = logging.getLogger(__name__)

Progress = Callable[[str], None] | None

LINEAGE_FILE = "lineage.json"
CHECKPOINT_RUN_FILE = "mlflow.json"      # beside a checkpoint's config.json: the run that pretrained it
PRETRAIN_EXPERIMENT = "biotune/eeg-pretraining"
PRETRAIN_MODES = ("auto", "always", "never")
BACKBONE_KEYS = ("d_model", "n_layers", "d_state", "headdim", "expand", "chunk_size", "d_conv", "ngroups")
ARCHITECTURE_KEYS = (*BACKBONE_KEYS, "pool")   # pool: the head's input (biotune.eeg.finetune.POOLING)
DATASET_KEYS = ("primary", "windows", "arrays", "dataset_name", "digest", "n_windows", "n_participants", "fs",
                "window_seconds", "sub_window_seconds", "channels")
TRAINING_KEYS = ("mask_ratio", "mask_style", "pretrain_epochs", "pretrain_batch_size", "pretrain_learning_rate",
                 "dropout", "weight_decay", "window_seconds", "sub_window_seconds")


@dataclass
class RunConfig:
    """Everything one model's backbone and fine-tune need, resolved from its spec and the run's params."""

    d_model: int = 64
    n_layers: int = 2
    backbone: dict = field(default_factory=dict)    # the other Mamba-2 settings (d_state, headdim, ...)
    pool: str = "mean_energy"
    mask_ratio: float = 0.5
    style: str = "mae"
    pretrain_epochs: int = 10
    pretrain_batch_size: int = 32
    pretrain_lr: float = 1e-3
    pretrain: str = "auto"                          # auto: discover, else pretrain; always; never
    checkpoint: str | None = None                   # an explicit checkpoint directory
    checkpoints_root: str | None = None
    epochs: int = 40
    batch_size: int = 32
    lr: float = 5e-3
    weight_decay: float = 0.01
    dropout: float = 0.1
    freeze_backbone: bool = True
    seed: int = 0

    def pretrain_config(self) -> dict:
        return {"d_model": self.d_model, "n_layers": self.n_layers, "mask_ratio": self.mask_ratio,
                "style": self.style, **self.backbone}


def _given(params: dict, key: str):
    value = (params or {}).get(key)
    return None if value in (None, "") else value


def run_config(spec, params: dict | None = None) -> RunConfig:
    """The spec's settings with the run's params on top; unknown spec keys are refused (a typo would
    otherwise silently train something else)."""
    params = params or {}
    arch, tr = dict(spec.architecture.params), dict(spec.training.params)
    where = str(spec.source or spec.name)
    unknown = [f"architecture.params.{k}" for k in arch if k not in ARCHITECTURE_KEYS]
    unknown += [f"training.params.{k}" for k in tr if k not in TRAINING_KEYS]
    if unknown:
        raise SpecError(f"{spec.name}: unknown setting(s) {unknown}", where=where,
                        fix=f"architecture.params takes {list(ARCHITECTURE_KEYS)}; training.params takes "
                            f"{list(TRAINING_KEYS)}")
    pick = lambda key, default: _given(params, key) if _given(params, key) is not None else default  # noqa: E731
    freeze = _given(params, "freeze_backbone")
    cfg = RunConfig(
        d_model=int(pick("d_model", arch.get("d_model", 64))), n_layers=int(pick("n_layers", arch.get("n_layers", 2))),
        backbone={k: int(arch[k]) for k in BACKBONE_KEYS[2:] if k in arch}, pool=str(arch.get("pool", "mean_energy")),
        mask_ratio=float(pick("mask_ratio", tr.get("mask_ratio", 0.5))),
        style=str(pick("mask_style", tr.get("mask_style", "mae"))),
        pretrain_epochs=int(pick("pretrain_epochs", tr.get("pretrain_epochs", 10))),
        pretrain_batch_size=int(tr.get("pretrain_batch_size", spec.training.batch_size)),
        pretrain_lr=float(tr.get("pretrain_learning_rate", 1e-3)),
        pretrain=str(pick("pretrain", "auto")), checkpoint=_given(params, "checkpoint"),
        checkpoints_root=_given(params, "checkpoints_root"),
        epochs=int(pick("epochs", spec.training.epochs)), batch_size=int(spec.training.batch_size),
        lr=float(spec.training.learning_rate), weight_decay=float(tr.get("weight_decay", 0.01)),
        dropout=float(tr.get("dropout", 0.1)),
        freeze_backbone=bool(freeze) if freeze is not None else spec.training.mode != "full",
        seed=int(spec.training.seed))
    if cfg.pretrain not in PRETRAIN_MODES:
        raise SpecError(f"pretrain must be one of {PRETRAIN_MODES}; got {cfg.pretrain!r}", where="params.pretrain",
                        fix="auto (discover the checkpoint, else pretrain it), always, or never (fail when missing)")
    if cfg.pool not in ("mean_energy", "mean"):
        raise SpecError(f"unknown pooling {cfg.pool!r}", where=f"{where}: architecture.params.pool",
                        fix="mean_energy (the mean and the log energy the final RMSNorm removes) or mean")
    if cfg.style not in ("mae", "bert"):
        raise SpecError(f"unknown masking style {cfg.style!r}", where=f"{where}: mask_style", fix="use mae or bert")
    if not 0.0 < cfg.mask_ratio < 1.0:
        raise SpecError(f"mask_ratio must be in (0, 1); got {cfg.mask_ratio}", where=f"{where}: mask_ratio",
                        fix="e.g. 0.5: half of each window's tokens are masked")
    return cfg


def layout(dataset: dict):
    """The token layout of a prepared dataset (what a checkpoint must have been pretrained on)."""
    from biotune.eeg.pretrain import TokenLayout

    fs = float(dataset["fs"])
    return TokenLayout(tuple(dataset["channels"]), int(round(float(dataset["sub_window_seconds"]) * fs)), fs,
                       int(round(float(dataset["window_seconds"]) / float(dataset["sub_window_seconds"]))))


# ====================================================================== the backbone checkpoint
def prepare_backbone(spec, dataset: dict, params: dict | None = None, progress: Progress = None,
                     run_label: str = "") -> dict:
    """The checkpoint ``spec``'s fine-tune starts from: the one given, else the one discovered by its
    pretraining config, else (``pretrain`` auto/always) pretrained now on the training split's
    participants only (validation and test stay unseen) and logged as an MLflow run."""
    from biotune.eeg import dataset as eeg_dataset
    from biotune.eeg.pretrain import default_root, find_checkpoint, pretrain

    cfg = run_config(spec, params)
    lay = layout(dataset)
    root = cfg.checkpoints_root or default_root()
    members = eeg_dataset.split_participants(dataset)
    pretrained_now, run_id = False, None
    if cfg.checkpoint:
        path, origin = cfg.checkpoint, "given"
        _checked_config(path, lay)
    else:
        path = None
        if cfg.pretrain != "always":
            try:
                path = find_checkpoint(cfg.d_model, cfg.n_layers, cfg.mask_ratio, cfg.style, root, layout=lay,
                                       backbone=cfg.backbone or None, primary=dataset["primary"])
                origin = "discovered"
            except MissingInputError:
                if cfg.pretrain == "never":
                    raise
        if path is None:
            from biotune.eeg.primary import read_primary

            if progress:
                progress(f"{spec.name}: pretraining {cfg.mask_ratio:g}/{cfg.style} on {len(members.get('train', []))} "
                         f"training participants, {cfg.pretrain_epochs} epoch(s)")
            summary = pretrain(read_primary(dataset["primary"]), root, d_model=cfg.d_model, n_layers=cfg.n_layers,
                               mask_ratio=cfg.mask_ratio, style=cfg.style, backbone=cfg.backbone or None,
                               epochs=cfg.pretrain_epochs, batch_size=cfg.pretrain_batch_size, lr=cfg.pretrain_lr,
                               seed=cfg.seed, participants=members.get("train"), progress=progress)
            path, origin, pretrained_now = summary["path"], "pretrained", True
    ck = storage.read_json(storage.join(path, "config.json"))
    if pretrained_now:
        run_id = log_pretraining_run(path, ck, dataset, run_label)
    else:
        run_id = _pretraining_run_of(path)
    seen = set((ck.get("pretraining") or {}).get("participants") or [])
    overlap = len(seen & set(members.get("val", []) + members.get("test", [])))
    if overlap and progress:
        progress(f"{spec.name}: checkpoint {Path(path).name} was pretrained on {overlap} participant(s) now in "
                 "validation/test: their scores are optimistic (pretrain again with pretrain=always)")
    pt = ck.get("pretraining") or {}
    return {"model": spec.name, "checkpoint": path, "name": ck.get("name") or Path(path).name, "origin": origin,
            "pretraining_run_id": run_id, "eval_participants_seen_in_pretraining": overlap,
            "config": {**{k: ck["backbone"].get(k) for k in BACKBONE_KEYS if k in ck.get("backbone", {})},
                       "mask_ratio": pt.get("mask_ratio"), "style": pt.get("style"), "epochs": pt.get("epochs"),
                       "final_loss": pt.get("final_loss"), "windows": pt.get("windows")},
            "dataset": {k: dataset.get(k) for k in DATASET_KEYS}}


def _checked_config(path: str, lay) -> dict:
    from biotune.eeg.pretrain import check_config

    uri = storage.join(str(path), "config.json")
    if not storage.exists(uri):
        raise MissingInputError(f"no checkpoint at {path} (config.json missing)", where=str(path),
                                fix="give a directory written by `biotune eeg pretrain`, or leave checkpoint empty "
                                    "to discover or pretrain one")
    cfg = storage.read_json(uri)
    check_config(cfg, path, {}, lay)
    return cfg


def _public_config(ck: dict) -> dict:
    """A checkpoint's config.json for MLflow: participant ids replaced by their count."""
    pt = dict(ck.get("pretraining") or {})
    ids = pt.pop("participants", None)
    pt["participants_n"] = None if ids is None else len(ids)
    return {**ck, "pretraining": pt}


def log_pretraining_run(path: str, ck: dict, dataset: dict, run_label: str = "") -> str | None:
    """An MLflow run for a checkpoint just pretrained (its config, loss curve, dataset); its id is
    kept beside the checkpoint so every model fine-tuned from it links back to it."""
    import mlflow

    from biotune import registry

    exp = registry.experiment_id(PRETRAIN_EXPERIMENT)
    pt = ck.get("pretraining") or {}
    with registry.registry_call(f"log the pretraining of {ck.get('name')}"):
        with mlflow.start_run(experiment_id=exp, run_name=ck.get("name"),
                              tags={"biotune.family": "eeg", "biotune.checkpoint": ck.get("name", ""),
                                    "biotune.checkpoint_path": str(path), "biotune.run": run_label}) as run:
            mlflow.log_params({**{f"backbone_{k}": v for k, v in ck.get("backbone", {}).items()},
                               "mask_ratio": pt.get("mask_ratio"), "style": pt.get("style"),
                               "epochs": pt.get("epochs"), "batch_size": pt.get("batch_size"), "lr": pt.get("lr"),
                               "windows": pt.get("windows"), "sub_samples": ck["tokens"]["sub_samples"],
                               "channels": ",".join(ck["tokens"]["channels"])})
            for step, value in enumerate(pt.get("loss") or []):
                mlflow.log_metric("pretrain_masked_mse", float(value), step=step)
            if pt.get("final_loss") is not None:
                mlflow.log_metric("final_masked_mse", float(pt["final_loss"]))
            mlflow.log_dict(_public_config(ck), "checkpoint/config.json")
            _log_primary_input(dataset, context="pretraining")
            run_id = run.info.run_id
    storage.write_json(storage.join(str(path), CHECKPOINT_RUN_FILE),
                       {"run_id": run_id, "tracking_uri": _tracking_uri()})
    return run_id


def _tracking_uri() -> str:
    from biotune import settings

    return settings.tracking_uri()


def _pretraining_run_of(path: str) -> str | None:
    """The MLflow run that pretrained a checkpoint, when it was logged to the store in use."""
    uri = storage.join(str(path), CHECKPOINT_RUN_FILE)
    if not storage.exists(uri):
        return None
    info = storage.read_json(uri)
    return info.get("run_id") if info.get("tracking_uri") == _tracking_uri() else None


def _log_primary_input(dataset: dict, context: str) -> None:
    """The primary dataset as an MLflow run input, named ``EEG_{window}s_{channels}_{N}windows_primary``
    with the parquet file's digest; its profile is the windows table (ids, label, split), not the signals."""
    import mlflow

    frame = storage.read_parquet(dataset["windows"], columns=["window_id", "Participant", "Remission", "split"])
    ds = mlflow.data.from_pandas(frame, source=dataset["primary"], targets="Remission",
                                 name=dataset["dataset_name"], digest=dataset["digest"])
    mlflow.log_input(ds, context=context)


# ====================================================================== fine-tuning
def train(spec, train_split, val_split, workdir: Path, backbone: dict, params: dict | None = None,
          progress: Progress = None):
    """Fine-tune ``spec``'s classifier on the given splits from ``backbone`` (see ``prepare_backbone``):
    the model's files, ``history.json`` and ``lineage.json`` go to ``workdir``. Returns ``Trained``."""
    from biotune.eeg.finetune import WindowSet, train_classifier
    from biotune.family import Trained

    cfg = run_config(spec, params)
    lay = layout(backbone["dataset"])
    sets = {"train": WindowSet(np.asarray(train_split.x), np.asarray(train_split.y), np.asarray(train_split.ids)),
            "val": WindowSet(np.asarray(val_split.x), np.asarray(val_split.y), np.asarray(val_split.ids))}
    result = train_classifier(sets, str(workdir), layout=lay, checkpoint=backbone["checkpoint"], epochs=cfg.epochs,
                              batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                              dropout=cfg.dropout, freeze_backbone=cfg.freeze_backbone, seed=cfg.seed,
                              progress=progress, dataset=backbone["dataset"].get("primary") or "", pool=cfg.pool)
    val_participant = {k[len("val_participant_"):]: v for k, v in result["metrics"].items()
                       if k.startswith("val_participant_")}
    storage.write_json(str(Path(workdir) / LINEAGE_FILE), {
        "checkpoint": {k: backbone.get(k) for k in ("checkpoint", "name", "origin", "pretraining_run_id", "config",
                                                    "eval_participants_seen_in_pretraining")},
        "dataset": backbone["dataset"], "val_participant": val_participant})
    ck = backbone.get("config") or {}
    trained_params = {
        "train_windows": len(sets["train"]), "val_windows": len(sets["val"]),
        "train_participants": int(len(set(sets["train"].participants))),
        "val_participants": int(len(set(sets["val"].participants))),
        "train_prevalence": round(float(np.mean(sets["train"].y)), 4),
        "freeze_backbone": cfg.freeze_backbone, "pool": cfg.pool, "epochs": cfg.epochs, "best_epoch": result["best_epoch"],
        "batch_size": cfg.batch_size, "learning_rate": cfg.lr, "weight_decay": cfg.weight_decay, "dropout": cfg.dropout,
        "checkpoint": backbone["name"], "checkpoint_origin": backbone["origin"],
        "pretraining_run_id": backbone.get("pretraining_run_id") or "",
        "d_model": ck.get("d_model"), "n_layers": ck.get("n_layers"), "d_state": ck.get("d_state"),
        "headdim": ck.get("headdim"), "mask_ratio": ck.get("mask_ratio"), "mask_style": ck.get("style"),
        "pretrain_epochs": ck.get("epochs"), "pretrain_final_loss": ck.get("final_loss"),
        "dataset": backbone["dataset"].get("dataset_name"),
        "window_seconds": backbone["dataset"].get("window_seconds"),
    }
    history = {f"epoch_{k}": list(v) for k, v in result["history"].items() if k != "epoch"}
    return Trained(params={k: v for k, v in trained_params.items() if v is not None}, history=history)


def load(local_dir):
    from biotune.eeg.finetune import load_classifier

    return load_classifier(str(local_dir))


def predict(model, x) -> np.ndarray:
    """P(remission) per window."""
    from biotune.eeg.finetune import predict_windows

    net, cfg = model
    return predict_windows(net, cfg, np.asarray(x, dtype=np.float32))[:, 1]


def participant_metrics(participants, y, proba) -> dict[str, float]:
    """Accuracy, precision, recall, F1, AUC and n over participants, each one's probability being the
    mean of its windows' (threshold 0.5 on that mean)."""
    from biotune.eeg.finetune import classification_metrics, participant_vote

    p = np.asarray(proba, dtype=np.float64)
    _, py, pp = participant_vote(participants, y, np.stack([1.0 - p, p], axis=1))
    return classification_metrics(py, pp)


def log_model(spec, local_dir):
    """Inside the model's MLflow run (the shared publish step): the pyfunc with its signature, and the
    lineage: the primary dataset as an input, the checkpoint's config and pretraining run, and the
    participant-level metrics of validation and test."""
    import mlflow

    from biotune.eeg import dataset as eeg_dataset
    from biotune.eeg.pyfunc import log_classifier

    info = log_classifier(str(local_dir))
    lineage_path = Path(local_dir) / LINEAGE_FILE
    if not lineage_path.exists():  # a model directory from `biotune eeg finetune`: no run lineage to add
        return info
    lineage = storage.read_json(str(lineage_path))
    ds, ck = lineage["dataset"], lineage["checkpoint"]
    _log_primary_input(ds, context="primary")
    tags = {"biotune.eeg.checkpoint": str(ck.get("name")), "biotune.eeg.checkpoint_origin": str(ck.get("origin")),
            "biotune.eeg.dataset": str(ds.get("dataset_name"))}
    if ck.get("pretraining_run_id"):
        tags["biotune.eeg.pretraining_run_id"] = ck["pretraining_run_id"]
    mlflow.set_tags(tags)
    ck_config = storage.join(str(ck["checkpoint"]), "config.json")
    if storage.exists(ck_config):
        mlflow.log_dict(_public_config(storage.read_json(ck_config)), "pretraining/config.json")
    found = {f"val_participant_{k}": v for k, v in lineage.get("val_participant", {}).items()}
    test = eeg_dataset.load_split(ds, "test", allow_empty=True)
    if len(test):
        proba = predict(load(local_dir), test.x)
        found.update({f"test_participant_{k}": v for k, v in participant_metrics(test.participants, test.y, proba).items()})
    mlflow.log_metrics({k: float(v) for k, v in found.items() if v is not None and np.isfinite(v)})
    return info
