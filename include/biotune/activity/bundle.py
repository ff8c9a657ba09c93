"""A trained activity model on disk: ``model.keras`` + ``scaler.json`` (+ the training
``config.json``), so whoever loads it scales windows exactly as the model was trained."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from biotune.activity.config import Scaler, read_scaler, write_scaler

MODEL_FILE, SCALER_FILE, CONFIG_FILE = "model.keras", "scaler.json", "config.json"


@dataclass
class Bundle:
    model: Any
    scaler: Scaler

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Class probabilities [n, k] of unscaled windows."""
        from biotune.activity.model import predict_proba

        x = np.asarray(x, dtype=np.float32)
        if len(x) == 0:
            return np.empty((0, self.model.output_shape[-1]))
        return predict_proba(self.model, self.scaler.transform(x), batch_size=batch_size)


def save_bundle(model, scaler: Scaler, directory: str | Path, config_text: str | None = None) -> str:
    from biotune.activity.model import save_model

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    save_model(model, d / MODEL_FILE)
    write_scaler(scaler, d / SCALER_FILE, fmt="variant")
    if config_text:
        (d / CONFIG_FILE).write_text(config_text)
    return str(d)


def load_bundle(directory: str | Path) -> Bundle:
    from biotune.activity.model import load_model

    d = Path(directory)
    return Bundle(load_model(d / MODEL_FILE), read_scaler(d / SCALER_FILE))
