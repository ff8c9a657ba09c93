"""A minimal second family, used only by the tests: it shows that a folder's worth of code, a spec
and a one-screen DAG file is all a family needs (docs/architecture.md walks through the real one).

Training data: one CSV (id, x0..x3, label); daily batches: parquet (id, x0..x3, optional label).
One architecture, ``logreg`` (scikit-learn), binary.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from biotune import storage
from biotune.errors import DataValidationError, InputFormatError
from biotune.family import Architecture, Batch, Family, Split, Trained, register

FEATURES = ["x0", "x1", "x2", "x3"]


def _rows(n: int, seed: int, shifted: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)) + (2.0 if shifted else 0.0)
    # shifted: production's features moved and so did what predicts the label (concept drift)
    score = x[:, 1] - 0.5 * x[:, 0] - 1.0 if shifted else x[:, 0] + 0.5 * x[:, 1]
    label = (score + rng.normal(0, 0.5, n) > 0).astype(int)
    frame = pd.DataFrame(x, columns=FEATURES)
    frame.insert(0, "id", [f"p{seed}-{i}" for i in range(n)])
    frame["label"] = label
    return frame


class LogReg(Architecture):
    kind = "logreg"

    def train(self, spec, train, val, workdir, *, prepared, params, progress=None):
        import joblib
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=float(spec.architecture.params.get("C", 1.0))).fit(train.x, train.y)
        joblib.dump(model, Path(workdir) / "model.joblib")
        return Trained(params={"train_n": len(train), "C": model.C}, history={"val_loss": [0.7, 0.6, 0.55]})

    def load(self, local_dir):
        import joblib

        return joblib.load(Path(local_dir) / "model.joblib")

    def predict(self, model, x):
        return model.predict_proba(np.asarray(x, dtype=float))[:, 1]

    def log_model(self, spec, local_dir):
        import mlflow.pyfunc
        from mlflow.models import ModelSignature
        from mlflow.types import ColSpec, Schema, TensorSpec

        signature = ModelSignature(inputs=Schema([ColSpec("double", c) for c in FEATURES]),
                                   outputs=Schema([TensorSpec(np.dtype(np.float64), (-1,))]))
        return mlflow.pyfunc.log_model(name="model", python_model=ToyPyfunc(), signature=signature,
                                       artifacts={"model": str(Path(local_dir) / "model.joblib")},
                                       code_paths=[__file__])


class ToyPyfunc:  # an mlflow.pyfunc.PythonModel without importing mlflow at module import
    def __new__(cls):
        import mlflow.pyfunc

        class _Toy(mlflow.pyfunc.PythonModel):
            def load_context(self, context):
                import joblib

                self.model = joblib.load(context.artifacts["model"])

            def predict(self, context, model_input, params=None):
                return self.model.predict_proba(np.asarray(model_input[FEATURES], dtype=float))[:, 1]

        return _Toy()


class ToyFamily(Family):
    name = "toy"
    fine_tune_dag_id = "toy_finetune"
    architectures = {"logreg": LogReg()}

    def dag_params(self):
        return {"source": dict(default=None, type=["null", "string"], title="training CSV")}

    def prepare(self, params, run_dir, run_id, progress=None):
        path = params.get("source")
        frame = pd.read_csv(path)
        if list(frame.columns) != ["id", *FEATURES, "label"]:
            raise InputFormatError(f"unexpected columns {list(frame.columns)}", where=path,
                                   fix="id, x0..x3, label")
        h = frame["id"].map(lambda s: (hash(s) % 1000) / 1000)  # stable within a process: enough for tests
        frame["split"] = np.where(h < 0.2, "test", np.where(h < 0.4, "val", "train"))
        uri = storage.write_parquet(frame, storage.join(run_dir, "dataset.parquet"))
        return {"uri": uri, "rows": int(len(frame))}

    def split(self, spec, dataset, which):
        frame = storage.read_parquet(dataset["uri"])
        part = frame[frame["split"] == which]
        return Split(part[FEATURES].reset_index(drop=True), part["label"].to_numpy(), part["id"].to_numpy())

    def reference_frame(self, spec, dataset):
        frame = storage.read_parquet(dataset["uri"])
        return frame.loc[frame["split"] == "train", [*FEATURES, "label"]].reset_index(drop=True)

    def reference_features(self, reference):
        return reference[FEATURES]

    def read_batch(self, path):
        with storage.local_copy(path) as local:
            try:
                frame = pd.read_parquet(local)
            except Exception as exc:
                raise InputFormatError(f"not a parquet file: {exc}", where=path, fix="land it again") from exc
        missing = [c for c in ["id", *FEATURES] if c not in frame.columns]
        if missing:
            raise DataValidationError(f"missing columns {missing}", where=path, fix="land id, x0..x3")
        labels = frame[["label"]] if "label" in frame.columns else pd.DataFrame(index=frame.index)
        return Batch(path=path, ids=frame["id"].astype(str).to_numpy(), labels=labels.rename(columns={"label": "y"}),
                     data=frame)

    def batch_validation_frame(self, path):
        return self.read_batch(path).data

    def batch_inputs(self, spec, batch):
        return batch.data[FEATURES].astype(float).reset_index(drop=True)

    def drift_features(self, spec, batch):
        return batch.data[FEATURES].astype(float).reset_index(drop=True)

    def demo_training_data(self, directory, size, seed=0):
        path = Path(directory) / "toy.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        _rows(size, seed).to_csv(path, index=False)
        return {"source": str(path)}

    def demo_batch(self, date, rows, seed=0, shifted=False):
        frame = _rows(rows, seed, shifted)
        return storage.write_parquet(frame, self.batch_uri(date))


register(ToyFamily())

SPEC = {
    "name": "toy-y-logreg", "family": "toy", "task": "y", "task_type": "binary",
    "architecture": {"kind": "logreg", "params": {"C": 1.0}},
    "gate": {"metric": "auc", "min_absolute": 0.6},
    "drift": {"threshold": 0.2, "critical": 0.25},
    "retraining": {"min_new_labels": 10, "consecutive_batches": 1, "min_drifted_features": 1,
                   "min_days_since_last": 0},
}
