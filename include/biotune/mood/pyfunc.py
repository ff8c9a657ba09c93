"""MLflow pyfunc wrappers: every mood model predicts P(label = 1) from its own input.

PAT models take the raw 10,080-minute activity week (the bundle holds the scaler fitted on
the training split); XGBoost models take the 36 mood_ml features by name.
"""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np


class PATPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from biotune.mood.pat import load_pat_bundle

        self.model, self.scaler = load_pat_bundle(context.artifacts["bundle"])

    def predict(self, context, model_input, params=None):
        from biotune.mood.pat import predict_proba

        x = np.asarray(model_input, dtype=np.float32)
        x = self.scaler.transform(np.nan_to_num(x, nan=0.0))
        return predict_proba(self.model, x, batch_size=64)


class XGBPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from xgboost import XGBClassifier

        self.model = XGBClassifier()
        self.model.load_model(context.artifacts["model"])

    def predict(self, context, model_input, params=None):
        columns = self.model.get_booster().feature_names
        return self.model.predict_proba(model_input[columns])[:, 1]
