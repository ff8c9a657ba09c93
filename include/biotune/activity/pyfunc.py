"""MLflow pyfunc wrapper: the CNN-BiLSTM bundle predicts class probabilities [n, 11] from
unscaled windows (n, 200, 6) in model units; the bundle's scaler is applied inside."""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np


class CNNBiLSTMPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from biotune.activity.bundle import load_bundle

        self.bundle = load_bundle(context.artifacts["bundle"])

    def predict(self, context, model_input, params=None):
        return self.bundle.predict(np.asarray(model_input, dtype=np.float32))
