"""The activity steps end to end on folders of session CSVs: train on the source domain, check for
shift, transfer to the new domain. The CLI calls these; the DAG's tasks call the same pieces.

Order of the seed's decision tree: the pipeline diagnostic comes first, and nothing is tuned while
it fails (``transfer_model`` refuses, naming the failed checks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from biotune import storage
from biotune.activity.config import PIPELINE_FILE, PipelineConfig, TrainingConfig, read_pipeline, read_training_config
from biotune.activity.windows import WindowSet, load_windows
from biotune.errors import DataValidationError

Progress = Callable[[str], None] | None


def _config(config: str | TrainingConfig) -> TrainingConfig:
    tc = config if isinstance(config, TrainingConfig) else read_training_config(config)
    return tc.require_consistent()


def _pipeline(folder: str, pipeline: str | PipelineConfig | None, tc: TrainingConfig) -> PipelineConfig:
    if isinstance(pipeline, PipelineConfig):
        return pipeline
    if pipeline:
        return read_pipeline(pipeline)
    candidate = storage.join(str(folder), PIPELINE_FILE)
    return read_pipeline(candidate) if storage.exists(candidate) else PipelineConfig.from_training(tc, scaler=None)


def windows(folder: str, tc: TrainingConfig, pipeline: str | PipelineConfig | None = None) -> WindowSet:
    """Scaled windows of a folder of sessions, through its pipeline (scaler: the model's unless the
    pipeline sets one -- the diagnostic flags a different one)."""
    return load_windows(folder, _pipeline(folder, pipeline, tc), tc)


def split_people(ws: WindowSet, val_fraction: float = 0.25, seed: int = 0) -> tuple[WindowSet, WindowSet]:
    """Training and validation windows on different people (sessions when one person)."""
    from biotune.activity.transfer import split_by_group

    tr, va, _, _ = split_by_group(ws, val_fraction, seed)
    return ws.subset(tr), ws.subset(va)


def train_source_model(source: str, config: str | TrainingConfig, out: str, size: str = "seed", epochs: int = 30,
                       seed: int = 0, pipeline: str | None = None, progress: Progress = None) -> dict:
    """Train the CNN-BiLSTM on labelled source sessions (people split), save ``out`` (.keras)."""
    from biotune.activity.model import predict_proba, save_model, train_source

    tc = _config(config)
    ws = windows(source, tc, pipeline)
    train, val = split_people(ws, seed=seed)
    model, history = train_source(train, val, size=size, epochs=epochs, seed=seed, progress=progress)
    acc = float((predict_proba(model, val.x).argmax(1) == val.y).mean())
    save_model(model, out)
    return {"model": str(out), "val_accuracy": acc, "n_train": len(train), "n_val": len(val),
            "parameters": int(model.count_params()), "epochs_run": len(history.get("loss", [])), "size": size}


def shift_report(model, source: str, data: str, config: str | TrainingConfig, pipeline: str | None = None,
                 diagnostic=None, **kw):
    """Diagnostic first; if it passes, the shift check of ``data`` against ``source``."""
    from biotune.activity.diagnose import diagnose
    from biotune.activity.model import load_model
    from biotune.activity.shift import run_shift_check

    tc = _config(config)
    diag = diagnostic if diagnostic is not None else diagnose(data, tc, pipeline)
    if not (diag["ok"] if isinstance(diag, dict) else diag.ok):  # judged on the diagnostic: no model needed
        return run_shift_check(None, None, None, diag, **kw)
    if isinstance(model, (str, Path)):
        model = load_model(model, n_classes=tc.n_classes, window=tc.window_size)
    return run_shift_check(model, windows(source, tc), windows(data, tc, pipeline), diag, **kw)


def require_clean_pipeline(diag) -> None:
    """Refuse to tune while the pipeline diagnostic fails (the seed's first rule)."""
    failed = diag["failed"] if isinstance(diag, dict) else diag.failed()
    if failed:
        raise DataValidationError(
            "refusing to fine-tune: the pipeline diagnostic failed", where=f"checks {', '.join(failed)}",
            fix="fix the pipeline (see each check's fix) and run the diagnostic again; fine-tuning cannot repair "
                "broken preprocessing", failures=[f"{name}: failed" for name in failed])


def transfer_model(model: str, source: str, data: str, config: str | TrainingConfig, out: str,
                   pipeline: str | None = None, trainable_last: int = 4, epochs: int = 20, seed: int = 0,
                   min_new_windows: int = 500, progress: Progress = None, diagnostic=None) -> dict:
    """Diagnose, then head-only transfer ``model`` to the labelled sessions in ``data``; save ``out``."""
    from biotune.activity.diagnose import diagnose
    from biotune.activity.model import load_model, save_model
    from biotune.activity.transfer import head_only_transfer

    tc = _config(config)
    diag = diagnostic if diagnostic is not None else diagnose(data, tc, pipeline)
    require_clean_pipeline(diag)
    keras_model = load_model(model, n_classes=tc.n_classes, window=tc.window_size)
    result = head_only_transfer(keras_model, windows(source, tc), windows(data, tc, pipeline),
                                trainable_last=trainable_last, epochs=epochs, seed=seed,
                                min_new_windows=min_new_windows, classes=tc.classes, progress=progress)
    save_model(result.model, out)
    d = result.to_dict()
    d["model"] = str(out)
    d["accuracy_gain"] = result.accuracy_after - result.accuracy_before
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in d.items()}
