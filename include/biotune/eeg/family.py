"""The EEG family on the contract: Muse EEG to P(remission) per 10 s window, with a Mamba-2 backbone.

Training data: one folder of recordings (``<participant>/*.csv``, Mind Monitor or muse-lsl CSV)
and a labels CSV (``Participant,Remission``, checked by the ``eeg_labels`` suite). ``prepare``
reads and checks every recording (measured sampling rate, channels, flat/saturated signal, NaN
runs: a bad file is quarantined), writes the primary dataset and the windows with a
participant-level stratified split (:mod:`biotune.eeg.dataset`). Architecture ``mamba2``: the
backbone checkpoint is discovered or pretrained once per run, then a classifier head is
fine-tuned on the frozen backbone (:mod:`biotune.eeg.pipeline`). Drift: band power per band and
channel and frontal alpha asymmetry, per window. Daily batches: windows in the primary format
(``landing/eeg/<date>/batch.parquet``, Remission null where unknown).

Kept light to import (no torch, pandas or numpy at the top): the registry imports every family.
"""

from __future__ import annotations

from biotune.family import Architecture, Batch, Family, Split, register

DEFAULT_WINDOW_SECONDS = 10.0
DEFAULT_SUB_WINDOW_SECONDS = 0.25
DEMO_SECONDS = 60.0     # per generated participant: six 10 s windows
LABEL_COLUMNS = ("Remission", "remission")


class Mamba2Architecture(Architecture):
    """A Mamba-2 (SSD) backbone, masked-pretrained on EEG windows, with a classification head."""

    kind = "mamba2"

    def prepare(self, family, specs, dataset, run_dir, params, progress=None):
        from biotune.eeg import pipeline

        return {spec.name: pipeline.prepare_backbone(spec, dataset, params, progress, run_label=str(run_dir))
                for spec in specs}

    def train(self, spec, train, val, workdir, *, prepared, params, progress=None):
        from biotune.eeg import pipeline

        backbone = (prepared or {}).get(spec.name)
        if not backbone:
            from biotune.errors import MissingInputError

            raise MissingInputError(f"{spec.name}: no backbone checkpoint prepared", where="prepare_architectures",
                                    fix="run the prepare step before training Mamba-2 models")
        return pipeline.train(spec, train, val, workdir, backbone, params, progress)

    def load(self, local_dir):
        from biotune.eeg import pipeline

        return pipeline.load(local_dir)

    def predict(self, model, x):
        from biotune.eeg import pipeline

        return pipeline.predict(model, x)

    def log_model(self, spec, local_dir):
        from biotune.eeg import pipeline

        return pipeline.log_model(spec, local_dir)


def _default_training_folder() -> str:
    from biotune import storage

    return storage.lake_path("landing", "eeg", "training")


class EEGFamily(Family):
    name = "eeg"
    fine_tune_dag_id = "eeg_sft"
    batch_suite = "eeg_batch"
    id_column = "window_id"
    architectures = {"mamba2": Mamba2Architecture()}
    demo_size = 24                          # participants, one minute of EEG each (~130 windows)
    demo_conf = {"pretrain_epochs": 5}
    demo_batch_rows = 120                   # windows: 20 new participants a day

    # ------------------------------------------------------------------ the fine-tune DAG
    def dag_params(self) -> dict[str, dict]:
        return {
            "source": dict(default=None, type=["null", "string"], title="Recordings folder",
                           description="<participant>/*.csv (Mind Monitor or muse-lsl), or a folder holding "
                                       "recordings/ and labels.csv; empty = the lake's landing/eeg/training"),
            "labels": dict(default=None, type=["null", "string"], title="Labels CSV",
                           description="Participant,Remission (1 remission, 0 not); empty = labels.csv beside "
                                       "the recordings folder"),
            "window_seconds": dict(default=DEFAULT_WINDOW_SECONDS, type="number", minimum=2,
                                   title="Window length (s)", description="parent window, cut into 0.25 s tokens"),
            "mask_ratio": dict(default=None, type=["null", "number"], exclusiveMinimum=0, exclusiveMaximum=1,
                               title="Pretraining mask ratio (empty: spec)"),
            "mask_style": dict(default=None, type=["null", "string"], enum=[None, "mae", "bert"],
                               title="Masking style (empty: spec)"),
            "d_model": dict(default=None, type=["null", "integer"], minimum=8, title="Backbone width (empty: spec)"),
            "n_layers": dict(default=None, type=["null", "integer"], minimum=1, title="Backbone layers (empty: spec)"),
            "pretrain": dict(default="auto", enum=["auto", "always", "never"], title="Pretraining",
                             description="auto: use the checkpoint of this configuration if it exists, else "
                                         "pretrain it; always: pretrain again; never: fail when it is missing"),
            "checkpoint": dict(default=None, type=["null", "string"], title="Checkpoint folder (optional)",
                               description="start from this checkpoint instead of discovering one"),
            "pretrain_epochs": dict(default=None, type=["null", "integer"], minimum=1,
                                    title="Pretraining epochs (empty: spec)"),
            "epochs": dict(default=None, type=["null", "integer"], minimum=1, title="Fine-tuning epochs (empty: spec)"),
            "freeze_backbone": dict(default=None, type=["null", "boolean"],
                                    title="Freeze the backbone (empty: spec's training.mode)"),
        }

    def _paths(self, params: dict) -> tuple[str, str]:
        """(recordings folder, labels file). ``source`` may be the recordings folder itself (labels
        beside it by default) or a folder holding ``recordings/`` and ``labels.csv`` (the layout
        the generator and the lake's ``landing/eeg/training/`` use)."""
        from biotune import storage

        source = str(params.get("source") or _default_training_folder()).rstrip("/")
        parent = source.rsplit("/", 1)[0] if "/" in source else "."
        if storage.exists_prefix(storage.join(source, "recordings")):
            source, parent = storage.join(source, "recordings"), source
        labels = params.get("labels") or storage.join(parent, "labels.csv")
        return str(source), str(labels)

    # ------------------------------------------------------------------ training data
    def sources(self, params):
        from biotune import storage
        from biotune.errors import MissingInputError

        source, labels = self._paths(params)
        for what, path, fix in (("recordings folder", source, "set the DAG's 'source' param to the folder of "
                                 "<participant>/*.csv recordings, or land them under landing/eeg/training/recordings"),
                                ("labels file", labels, "set 'labels' to a CSV with columns Participant,Remission")):
            if not (storage.exists_prefix(path) if path == source else storage.exists(path)):
                raise MissingInputError(f"no {what} at {path}", where=path, fix=fix)
        return [{"path": labels, "suite": "eeg_labels", "reader": "csv"}]

    def _split_settings(self) -> tuple[float, float, int]:
        specs = self.specs()
        if not specs:
            return 0.2, 0.2, 0
        t = specs[0].training  # one split per family run: the first spec's fractions and seed
        return t.validation_fraction, t.test_fraction, t.seed

    def prepare(self, params, run_dir, run_id, progress=None):
        from biotune.eeg.dataset import prepare_dataset

        source, labels = self._paths(params)
        val, test, seed = self._split_settings()
        dataset = prepare_dataset(source, labels, run_dir,
                                  window_seconds=float(params.get("window_seconds") or DEFAULT_WINDOW_SECONDS),
                                  sub_window_seconds=DEFAULT_SUB_WINDOW_SECONDS, val_fraction=val, test_fraction=test,
                                  seed=seed, quarantine=True, run_id=run_id, progress=progress)
        if progress:
            progress(f"{dataset['dataset_name']}: {dataset['n_participants']} participants, splits "
                     + ", ".join(f"{k} {v['participants']} participants / {v['windows']} windows"
                                 for k, v in sorted(dataset["splits"].items())))
        return {**dataset, "uri": dataset["windows"]}

    def split(self, spec, dataset, which):
        from biotune.eeg.dataset import load_split

        part = load_split(dataset, which, allow_empty=True)
        return Split(part.x, part.y, part.participants)

    def reference_frame(self, spec, dataset):
        from biotune.eeg.dataset import LABEL, reference_frame

        return reference_frame(dataset).rename(columns={LABEL: spec.task})

    def reference_features(self, reference):
        return reference[[c for c in reference.columns if c not in LABEL_COLUMNS]]

    # ------------------------------------------------------------------ generated data
    def demo_training_data(self, directory, size, seed=0):
        """``size`` participants (both formats, alternating), one minute each, and their labels."""
        from biotune.eeg.synth import write_dataset

        out = write_dataset(str(directory), participants=int(size), seconds=DEMO_SECONDS, seed=seed, fmt="mixed",
                            disconnect_every=5)
        return {"source": out["source"], "labels": out["labels"]}

    def demo_batch(self, date, rows, seed=0, shifted=False):
        """``rows`` windows of new participants (half of them labelled)."""
        import math

        from biotune.eeg.synth import write_batch

        per = int(DEMO_SECONDS // DEFAULT_WINDOW_SECONDS)
        return write_batch(self.batch_uri(date), participants=max(1, math.ceil(int(rows) / per)), seconds=DEMO_SECONDS,
                           seed=seed, shifted=shifted, window_seconds=DEFAULT_WINDOW_SECONDS,
                           sub_window_seconds=DEFAULT_SUB_WINDOW_SECONDS, windows=int(rows))

    # ------------------------------------------------------------------ daily batches
    def read_batch(self, path):
        import pandas as pd

        from biotune.eeg.dataset import ID_COLUMN, LABEL, read_batch

        batch = read_batch(path)
        labels = pd.DataFrame({"remission": batch.windows[LABEL].astype("float64").to_numpy()})
        return Batch(path=path, ids=batch.windows[ID_COLUMN].astype(str).to_numpy(), labels=labels, data=batch)

    def batch_validation_frame(self, path):
        from biotune.eeg.dataset import batch_summary

        return batch_summary(path)

    def batch_inputs(self, spec, batch):
        return batch.data.x

    def drift_features(self, spec, batch):
        from biotune.eeg.dataset import feature_columns

        return batch.data.windows[feature_columns(batch.data.channels)].reset_index(drop=True)


register(EEGFamily())
