"""The EEG classifier as an MLflow pyfunc: parent windows in, P(remission) out.

Input: float32 windows (n, n_sub, channels, sub_samples) in microvolts, filtered and DC-removed
as the primary dataset stores them (the causal backbone takes any number of sub-windows).
Output: P(class 1) per window for a binary model, class probabilities (n, k) otherwise. The
model directory written by ``finetune`` travels as an artifact.
"""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np


class EEGPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from biotune.eeg.finetune import load_classifier

        self.model, self.cfg = load_classifier(context.artifacts["model"])

    def predict(self, context, model_input, params=None):
        from biotune.eeg.finetune import predict_windows

        proba = predict_windows(self.model, self.cfg, np.asarray(model_input, dtype=np.float32))
        return proba[:, 1] if proba.shape[1] == 2 else proba


def signature(cfg: dict):
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    tok = cfg["tokens"]
    inputs = Schema([TensorSpec(np.dtype(np.float32), (-1, -1, len(tok["channels"]), int(tok["sub_samples"])))])
    k = int(cfg["classes"])
    outputs = Schema([TensorSpec(np.dtype(np.float64), (-1,) if k == 2 else (-1, k))])
    return ModelSignature(inputs=inputs, outputs=outputs)


def log_classifier(model_dir: str, name: str = "model"):
    """Log the fine-tuned model in ``model_dir`` (inside the active MLflow run); returns the ModelInfo."""
    from biotune import storage

    cfg = storage.read_json(storage.join(str(model_dir), "config.json"))
    return mlflow.pyfunc.log_model(name=name, python_model=EEGPyfunc(), signature=signature(cfg),
                                   artifacts={"model": str(model_dir)})
