"""The activity family on the contract: wrist-IMU anxiety activities, adapted to a new device.

Training data: the new device's labelled session CSVs (``data``), the source domain's (``source``)
and the deployed model's training config (``config``, the seed's config.json with its scaler).
``prepare`` runs the pipeline diagnostic first and refuses to go on while it fails; the dataset is
the new-domain windows split by person (train/val/test) plus the source windows
(:mod:`biotune.activity.dataset`). Architecture ``cnn_bilstm``: the base model is the lab's
``.keras`` file in models/pretrained/ (refused if it is another architecture) or, when there is
none, the seed's CNN-BiLSTM trained on the source domain (``prepare_architectures``, once per run);
each fine-tune is the seed's head-only transfer with the 30/70 source/new mix, validated on new-
domain people. Daily batches: ``landing/activity/<date>/batch.csv`` (+ ``pipeline.json``).

Kept light to import (no TensorFlow, pandas or numpy work at the top): the registry imports every
family.
"""

from __future__ import annotations

from pathlib import Path

from biotune.family import Architecture, Batch, Family, Split, Trained, register

PRETRAINED_FILE = "activity-cnnbilstm.keras"


class CNNBiLSTMArchitecture(Architecture):
    """The seed's 1D-CNN-BiLSTM (Keras 3 / TensorFlow), tuned head-only to the new domain."""

    kind = "cnn_bilstm"

    def prepare(self, family, specs, dataset, run_dir, params, progress=None):
        """The base model, once per run: the lab's .keras file, else trained on the source domain."""
        import tempfile

        from biotune import settings, storage
        from biotune.activity import dataset as ds
        from biotune.activity.bundle import save_bundle
        from biotune.activity.model import load_model, predict_proba, train_source
        from biotune.activity.workflow import split_people

        spec = specs[0]
        tc = ds.training_config(dataset)
        name = params.get("pretrained") or spec.architecture.params.get("pretrained", PRETRAINED_FILE)
        lab_file = Path(settings.pretrained_dir()) / name
        base = storage.join(run_dir, "base")
        out = {"base": base, "source": dataset["source"], "source_x": dataset["source_x"]}
        with tempfile.TemporaryDirectory() as tmp:
            if lab_file.exists():
                model = load_model(lab_file, n_classes=tc.n_classes, window=tc.window_size)
                out.update(origin=f"pretrained:{name}", size="lab")
            else:
                size = params.get("model_size") or spec.architecture.size or "seed"
                epochs = int(params.get("source_epochs") or spec.training.params.get("source_epochs", 30))
                src = ds.load_source(dataset)
                src.x = tc.scaler.transform(src.x)
                train, val = split_people(src, seed=spec.training.seed)
                if progress:
                    progress(f"no {name} in {settings.pretrained_dir()}: training the CNN-BiLSTM ({size}) on "
                             f"{len(train)} source windows")
                model, history = train_source(train, val, size=size, epochs=epochs, seed=spec.training.seed,
                                              progress=progress)
                acc = float((predict_proba(model, val.x).argmax(1) == val.y).mean())
                out.update(origin="trained on the source domain", size=size, source_val_accuracy=acc,
                           source_epochs_run=len(history.get("loss", [])))
            config_text = storage.read_text(dataset["config"])
            save_bundle(model, tc.scaler, tmp, config_text)
            storage.upload_dir(tmp, base)
        out["parameters"] = int(model.count_params())
        return out

    def train(self, spec, train, val, workdir, *, prepared, params, progress=None):
        import tempfile

        import numpy as np

        from biotune import storage
        from biotune.activity.bundle import CONFIG_FILE, load_bundle, save_bundle
        from biotune.activity.dataset import load_source
        from biotune.activity.transfer import head_only_fit
        from biotune.activity.windows import WindowSet
        from biotune.errors import MissingInputError

        if not prepared or "base" not in prepared:
            raise MissingInputError(f"{spec.name}: no base model", where="prepare_architectures",
                                    fix="run prepare_architectures before training")
        with tempfile.TemporaryDirectory() as tmp:
            storage.download_dir(prepared["base"], tmp)
            bundle = load_bundle(tmp)
            config_text = (Path(tmp) / CONFIG_FILE).read_text() if (Path(tmp) / CONFIG_FILE).exists() else None
        scale = bundle.scaler.transform

        def windows(split: Split) -> WindowSet:
            ids = np.asarray(split.ids, dtype=object)
            return WindowSet(scale(split.x), np.asarray(split.y, dtype=np.int16), ids, ids, np.zeros(len(ids)))

        source = load_source(prepared)
        source.x = scale(source.x)
        tp = spec.training.params
        result = head_only_fit(
            bundle.model, source, windows(train), windows(val), trainable_last=int(tp.get("trainable_last", 4)),
            learning_rate=spec.training.learning_rate, epochs=int(params.get("epochs") or spec.training.epochs),
            patience=spec.training.early_stopping_patience, batch_size=spec.training.batch_size,
            source_share=float(tp.get("source_share", 0.3)), seed=spec.training.seed,
            classes=spec.classes or None, progress=progress)
        save_bundle(result.model, bundle.scaler, workdir, config_text)
        return Trained(
            params={"base_model": prepared.get("origin"), "frozen_layers": result.frozen_layers,
                    "trainable_layers": result.trainable_layers, "frozen_params": result.frozen_params,
                    "trainable_params": result.trainable_params, "learning_rate": spec.training.learning_rate,
                    "batch_size": spec.training.batch_size, "source_share": round(result.source_share, 4),
                    "new_share": round(1 - result.source_share, 4), "n_new_train": result.n_new_train,
                    "n_new_val": result.n_new_val, "n_source": result.n_source,
                    "val_accuracy_before": round(result.accuracy_before, 4)},
            history=result.history)

    def load(self, local_dir):
        from biotune.activity.bundle import load_bundle

        return load_bundle(local_dir)

    def predict(self, model, x):
        return model.predict(x)

    def log_model(self, spec, local_dir):
        import mlflow.pyfunc
        import numpy as np
        from mlflow.models import ModelSignature
        from mlflow.types import Schema, TensorSpec

        from biotune.activity import SENSOR_COLS, WINDOW_SIZE
        from biotune.activity.pyfunc import CNNBiLSTMPyfunc

        k = len(spec.classes or [])
        signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, WINDOW_SIZE, len(SENSOR_COLS)))]),
                                   outputs=Schema([TensorSpec(np.dtype(np.float64), (-1, k))]))
        return mlflow.pyfunc.log_model(name="model", python_model=CNNBiLSTMPyfunc(), signature=signature,
                                       artifacts={"bundle": str(local_dir)})


class ActivityFamily(Family):
    name = "activity"
    fine_tune_dag_id = "activity_domain_adaptation"
    batch_file = "batch.csv"
    batch_suite = "activity/activity_batch"
    id_column = "window_id"
    architectures = {"cnn_bilstm": CNNBiLSTMArchitecture()}
    demo_size = 500                                        # as the DAG test: small model, quick on 2 cores
    demo_conf = {"model_size": "small", "source_epochs": 15}

    def dag_params(self) -> dict[str, dict]:
        return {
            "data": dict(default=None, type=["null", "string"], title="New device's sessions",
                         description="Folder (or s3:// prefix) of labelled session CSVs from the new device, with "
                                     "its pipeline.json; empty = the lake's landing/activity/garmin"),
            "source": dict(default=None, type=["null", "string"], title="Source-domain sessions",
                           description="Folder of the labelled sessions the model was trained on (reference and "
                                       "the 30% source share); empty = landing/activity/source"),
            "config": dict(default=None, type=["null", "string"], title="Model's training config",
                           description="The deployed model's config.json (seed format, with its scaler); empty = "
                                       "landing/activity/config.json"),
            "pipeline": dict(default=None, type=["null", "string"], title="Pipeline config",
                             description="The new device's pipeline.json (empty: the one in the data folder)"),
            "min_new_windows": dict(default=500, type="integer", minimum=1,
                                    title="Minimum labelled new-domain windows"),
            "force": dict(default=False, type="boolean", title="Fine-tune even when no shift is found"),
            "model_size": dict(default=None, type=["null", "string"], title="Base model size when trained here",
                               description="seed (499K parameters), small or tiny; empty: the spec's"),
            "source_epochs": dict(default=None, type=["null", "integer"], minimum=1,
                                  title="Source training epochs (no lab model; empty: spec)"),
            "epochs": dict(default=None, type=["null", "integer"], minimum=1,
                           title="Head-only transfer epochs (empty: spec)"),
            "pretrained": dict(default=None, type=["null", "string"], title="Lab model file in models/pretrained/",
                               description=f"empty: {PRETRAINED_FILE}"),
        }

    @staticmethod
    def defaults(params: dict) -> dict:
        from biotune import storage

        out = dict(params)
        out["data"] = out.get("data") or storage.lake_path("landing", "activity", "garmin")
        out["source"] = out.get("source") or storage.lake_path("landing", "activity", "source")
        out["config"] = out.get("config") or storage.lake_path("landing", "activity", "config.json")
        return out

    # ------------------------------------------------------------------ training data
    def prepare(self, params, run_dir, run_id, progress=None):
        from biotune.activity import dataset as ds

        specs = self.specs()
        tr = specs[0].training if specs else None
        return ds.prepare(self.defaults(params), run_dir, val_fraction=tr.validation_fraction if tr else 0.2,
                          test_fraction=tr.test_fraction if tr else 0.2, progress=progress)

    def split(self, spec, dataset, which):
        from biotune import storage
        from biotune.activity.dataset import load_split

        ws = load_split(dataset, which)
        table = storage.read_parquet(dataset["uri"], columns=["window_id", "split"])
        ids = table.loc[table["split"] == which, "window_id"].to_numpy(object)
        return Split(ws.x, ws.y.astype(int), ids)

    def reference_frame(self, spec, dataset):
        from biotune.activity.dataset import reference_frame

        return reference_frame(dataset)

    def reference_features(self, reference):
        from biotune.activity.dataset import FEATURES

        return reference[[c for c in FEATURES if c in reference.columns]]

    # ------------------------------------------------------------------ daily batches
    def read_batch(self, path):
        from biotune.activity.dataset import read_batch

        b = read_batch(path)
        return Batch(path=path, ids=b["ids"], labels=b["labels"], data={"x": b["x"], "features": b["features"]})

    def batch_validation_frame(self, path):
        from biotune.activity.dataset import validation_frame

        return validation_frame(path)

    def batch_inputs(self, spec, batch):
        return batch.data["x"]

    def drift_features(self, spec, batch):
        return batch.data["features"]

    # ------------------------------------------------------------------ generated data
    def demo_training_data(self, directory, size, seed=0):
        """Source + Garmin sessions, the model's config.json; ``size``: about that many labelled
        Garmin windows (at least five people, so the 500-window floor and a person split hold)."""
        import math

        from biotune.activity import synth

        kw = dict(bout_seconds=(20.0, 24.0), seed=seed)
        persons = max(5, math.ceil(size / 220))
        out = Path(directory)
        # the source domain is the base model's training data: two bouts per class, four people
        synth.write_domain(out / "source", "source", persons=4, bouts_per_class=2, **kw)
        synth.write_domain(out / "garmin", "garmin", persons=persons, bouts_per_class=2, **kw)
        scaler = synth.source_scaler(persons=4, bouts_per_class=2, **kw)
        files = synth.write_training_config(out / "model", scaler)
        return {"data": str(out / "garmin"), "source": str(out / "source"), "config": files["config"]}

    def demo_batch(self, date, rows, seed=0, shifted=False):
        """A day's Garmin CSV of ``rows`` windows (labelled), with its pipeline.json beside it;
        ``shifted``: worn differently again and a biased sensor (drift)."""
        import tempfile
        from dataclasses import replace

        from biotune import storage
        from biotune.activity import synth
        from biotune.activity.config import PIPELINE_FILE, write_pipeline

        dom = synth.GARMIN
        if shifted:
            dom = replace(dom, mount_deg=dom.mount_deg + 60, accel_bias=(1.5, -1.2, 1.0), name="garmin_shifted")
        # windows = (n - 200) // 100 + 1 at 50 Hz: 2 s per window, plus a margin under one step
        seconds = (rows - 1) * 2.0 + 4.0 + 1.0
        sess = synth.generate_session(dom, 90 + seed % 9, seed=seed, session_seconds=seconds,
                                      bout_seconds=(20.0, 24.0))
        target = self.batch_uri(date)
        with tempfile.TemporaryDirectory() as tmp:
            local = synth.write_session_csv(sess, Path(tmp) / self.batch_file)
            storage.upload_file(local, target)
        folder = target.rsplit("/", 1)[0] if storage.is_s3(target) else str(Path(target).parent)
        write_pipeline(synth.GARMIN.pipeline(), storage.join(folder, PIPELINE_FILE))  # local or s3
        return target


register(ActivityFamily())
