"""The mood family on the contract: NHANES 2013-14 to PAT and XGBoost population models.

Training data: the seven NHANES XPT files, each validated by its suite, then the cohort and the
features (:mod:`biotune.mood.pipeline`). Architectures: ``pat`` (the activity week; the encoder is
prepared once per run: released weights or masked-autoencoder pretraining; drift is measured on
that week too, :mod:`biotune.mood.activity_week`) and ``xgboost`` (the 36 mood_ml sleep/circadian
features, also its drift features). Daily batches: :mod:`biotune.mood.scoring`.

Kept light to import (no torch, pandas or xgboost at the top): the registry imports every family.
"""

from __future__ import annotations

from pathlib import Path

from biotune.family import Architecture, Batch, Family, Split, Trained, register

LABELS = ("depression", "benzodiazepine", "ssri")


class PATArchitecture(Architecture):
    """PAT (Pretrained Actigraphy Transformer) fine-tuned on one week of minute activity."""

    kind = "pat"

    def prepare(self, family, specs, dataset, run_dir, params, progress=None):
        from biotune.mood import pipeline

        size = params.get("pat_size") or specs[0].architecture.size or "S"
        pretrain = params.get("pretrain_epochs") or specs[0].training.params.get("pretrain_epochs", 2)
        return pipeline.prepare_encoder_in(dataset, run_dir, size, int(pretrain), specs[0], progress=progress)

    def train(self, spec, train, val, workdir, *, prepared, params, progress=None):
        import torch

        from biotune import storage
        from biotune.mood import pat

        if not prepared:
            from biotune.errors import MissingInputError

            raise MissingInputError(f"{spec.name}: no prepared PAT encoder", where="prepare_architectures",
                                    fix="run the prepare step before training PAT models")
        with storage.local_copy(prepared["scaler"]) as path:
            scaler = pat.PATScaler.load(path)
        with storage.local_copy(prepared["encoder"]) as path:
            encoder_state = torch.load(path, map_location="cpu")
        mode = params.get("pat_mode") or spec.training.mode
        epochs = int(params.get("epochs") or spec.training.epochs)
        model, history = pat.finetune(
            scaler.transform(train.x), train.y, scaler.transform(val.x), val.y,
            size=prepared["size"], mode=mode, epochs=epochs, batch_size=spec.training.batch_size,
            lr=spec.training.learning_rate, patience=spec.training.early_stopping_patience,
            encoder_state=encoder_state, seed=spec.training.seed, progress=progress)
        pat.save_pat_bundle(model, scaler, str(Path(workdir) / "bundle"))
        return Trained(params={**_counts(train, val), "size": prepared["size"], "mode": mode, "epochs": epochs,
                               "encoder": prepared["origin"], "batch_size": spec.training.batch_size,
                               "learning_rate": spec.training.learning_rate},
                       history={k: v for k, v in (history or {}).items() if isinstance(v, list)})

    def load(self, local_dir):
        from biotune.mood import pat

        return pat.load_pat_bundle(str(Path(local_dir) / "bundle"))

    def predict(self, model, x):
        import numpy as np

        from biotune.mood import pat

        net, scaler = model
        x = np.nan_to_num(np.asarray(x, dtype=np.float32), nan=0.0)
        return pat.predict_proba(net, scaler.transform(x), batch_size=64)

    def log_model(self, spec, local_dir):
        import mlflow.pyfunc
        import numpy as np
        from mlflow.models import ModelSignature
        from mlflow.types import Schema, TensorSpec

        from biotune.mood.pyfunc import PATPyfunc

        signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 10080))]),
                                   outputs=Schema([TensorSpec(np.dtype(np.float64), (-1,))]))
        return mlflow.pyfunc.log_model(name="model", python_model=PATPyfunc(), signature=signature,
                                       artifacts={"bundle": str(Path(local_dir) / "bundle")})


    # PAT reads the minute activity week, not the 36 sleep features: it is monitored on that week
    def drift_features(self, family, spec, batch):
        """The activity week summarised (:mod:`biotune.mood.activity_week`), then the 36 features: the
        reference logged with the champion picks the columns (PAT champions trained before PAT had
        its own drift features logged the 36; they stay monitored on those until retrained)."""
        import pandas as pd

        if "activity_week" not in batch.data:
            from biotune.mood.activity_week import activity_week_features

            batch.data["activity_week"] = activity_week_features(batch.data["activity"], batch.data["state"])
        return pd.concat([batch.data["activity_week"], family.drift_features(spec, batch).reset_index(drop=True)],
                         axis=1)

    def reference_frame(self, family, spec, dataset):
        from biotune import storage
        from biotune.errors import MissingInputError
        from biotune.mood.activity_week import ACTIVITY_WEEK_FEATURE_NAMES

        table = storage.read_parquet(dataset["features"])
        missing = [c for c in ACTIVITY_WEEK_FEATURE_NAMES if c not in table.columns]
        if missing:
            raise MissingInputError(f"the prepared features lack PAT's drift features ({missing[:3]}...)",
                                    where=dataset["features"], fix="re-run the fine-tuning DAG from its prepare step")
        rows = (table["split"] == "train") & table[spec.task].notna()
        return table.loc[rows, [*ACTIVITY_WEEK_FEATURE_NAMES, spec.task]].reset_index(drop=True)


class XGBoostArchitecture(Architecture):
    """Gradient-boosted trees on the 36 mood_ml sleep/circadian features."""

    kind = "xgboost"

    def train(self, spec, train, val, workdir, *, prepared, params, progress=None):
        from biotune.mood.xgb import train_xgb

        model = train_xgb(spec, train.x, train.y, val.x, val.y, progress=progress)
        model.save_model(str(Path(workdir) / "model.json"))
        curve = model.evals_result().get("validation_0", {}).get("auc", [])
        return Trained(params={**_counts(train, val), **spec.architecture.params,
                               "learning_rate": spec.training.learning_rate,
                               "best_iteration": int(model.best_iteration)},
                       history={"val_auc": list(curve)})

    def load(self, local_dir):
        from xgboost import XGBClassifier

        model = XGBClassifier()
        model.load_model(str(Path(local_dir) / "model.json"))
        return model

    def predict(self, model, x):
        columns = model.get_booster().feature_names
        return model.predict_proba(x[columns] if columns else x)[:, 1]

    def log_model(self, spec, local_dir):
        import mlflow.pyfunc
        import numpy as np
        from mlflow.models import ModelSignature
        from mlflow.types import ColSpec, Schema, TensorSpec

        from biotune.mood.features import SLEEP_FEATURE_NAMES
        from biotune.mood.pyfunc import XGBPyfunc

        signature = ModelSignature(inputs=Schema([ColSpec("double", c) for c in SLEEP_FEATURE_NAMES]),
                                   outputs=Schema([TensorSpec(np.dtype(np.float64), (-1,))]))
        return mlflow.pyfunc.log_model(name="model", python_model=XGBPyfunc(), signature=signature,
                                       artifacts={"model": str(Path(local_dir) / "model.json")})


def _counts(train: Split, val: Split) -> dict:
    import numpy as np

    return {"train_n": int(len(train)), "val_n": int(len(val)),
            "train_prevalence": round(float(np.mean(train.y)), 4) if len(train) else None}


class MoodFamily(Family):
    name = "mood"
    fine_tune_dag_id = "mood_population_finetune"
    batch_suite = "mood_batch"
    id_column = "person_id"
    architectures = {"pat": PATArchitecture(), "xgboost": XGBoostArchitecture()}
    demo_size = 400
    demo_conf = {"epochs": 4, "pretrain_epochs": 1}
    demo_batch_rows = 250

    def dag_params(self) -> dict[str, dict]:
        return {
            "source": dict(default=None, type=["null", "string"], title="NHANES folder",
                           description="Folder (or s3:// prefix) with the seven XPT files; empty = lake "
                                       "landing/nhanes/2013-2014"),
            "pat_size": dict(default="S", enum=["S", "M", "L"], title="PAT size"),
            "pat_mode": dict(default="full", enum=["full", "linear", "lora"], title="PAT fine-tuning mode"),
            "epochs": dict(default=None, type=["null", "integer"], minimum=1, title="Fine-tuning epochs (empty: spec)"),
            "pretrain_epochs": dict(default=None, type=["null", "integer"], minimum=1,
                                    title="MAE pretraining epochs when no weights (empty: spec)"),
        }

    # ------------------------------------------------------------------ training data
    def sources(self, params):
        from biotune.mood import pipeline

        return pipeline.raw_tables(params.get("source") or pipeline.default_source())

    def prepare(self, params, run_dir, run_id, progress=None):
        from biotune.mood import pipeline

        cohort = pipeline.build_cohort(params.get("source") or pipeline.default_source(), run_id, progress=progress)
        features = pipeline.build_features(cohort, run_id)
        return {**features, "uri": features["features"], "cohort": cohort["cohort"],
                "participants": cohort["participants"]}

    def split(self, spec, dataset, which):
        from biotune.mood import pipeline

        table, activity = pipeline.load_features(dataset)
        mask = ((table["split"] == which) & table[spec.task].notna()).to_numpy()
        y = table.loc[mask, spec.task].astype(int).to_numpy()
        ids = table.loc[mask, "SEQN"].to_numpy()
        if spec.architecture.kind == "xgboost":
            from biotune.mood.features import SLEEP_FEATURE_NAMES

            return Split(table.loc[mask, SLEEP_FEATURE_NAMES].reset_index(drop=True), y, ids)
        return Split(activity[mask], y, ids)

    def reference_frame(self, spec, dataset):
        from biotune import storage
        from biotune.mood.features import SLEEP_FEATURE_NAMES

        table = storage.read_parquet(dataset["features"])
        rows = (table["split"] == "train") & table[spec.task].notna()
        return table.loc[rows, [*SLEEP_FEATURE_NAMES, spec.task]].reset_index(drop=True)

    def reference_features(self, reference):
        from biotune.mood import scoring

        return scoring.reference_features(reference)

    # ------------------------------------------------------------------ generated data
    def demo_training_data(self, directory, size, seed=0):
        from biotune.synthetic.nhanes import write_nhanes

        write_nhanes(directory, participants=size, seed=seed)
        return {"source": str(directory)}

    def demo_batch(self, date, rows, seed=0, shifted=False):
        from biotune.synthetic.batches import day_batch, write_batch

        return write_batch(day_batch(date, rows, seed=seed, shifted=shifted), self.batch_uri(date))

    # ------------------------------------------------------------------ daily batches
    def read_batch(self, path):
        from biotune.mood import scoring

        frame, activity, state = scoring.read_batch(path)
        labels = frame[[c for c in LABELS if c in frame.columns]]
        return Batch(path=path, ids=frame["person_id"].astype(str).to_numpy(), labels=labels,
                     data={"activity": activity, "state": state})

    def batch_validation_frame(self, path):
        from biotune.mood import scoring

        return scoring.validation_frame(path)

    def _features(self, batch: Batch):
        if "features" not in batch.data:  # the 36 features serve XGBoost's input and the drift check
            from biotune.mood import scoring

            batch.data["features"] = scoring.batch_features(batch.data["activity"], batch.data["state"])
        return batch.data["features"]

    def batch_inputs(self, spec, batch):
        from biotune.mood import scoring

        return scoring.model_input(spec.architecture.kind, batch.data["activity"], self._features(batch))

    def drift_features(self, spec, batch):
        return self._features(batch)


register(MoodFamily())
