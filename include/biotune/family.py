"""The family contract: what a model family provides, and the registry that finds families.

A family (mood, activity, eeg, glucose, or one of yours) is a folder ``biotune/<family>/`` whose
``family.py`` builds a :class:`Family` and calls :func:`register`. It says how to read and validate
its training data and its daily batches, how to build model inputs and drift features, and, per
architecture (:class:`Architecture`), how to train, load, predict and log a model, and, when a
kind reads something other than the family's drift features, its own drift features. The shared
steps (:mod:`biotune.steps`) do the rest the same way for every family: train, evaluate by the
spec's task type, register-gate-promote, score a batch, measure drift, decide on retraining.

Nothing shared imports a family by name: :func:`discover` imports every ``biotune.<pkg>.family``
module (and the ``biotune.families`` entry points of installed packages), and each registers
itself. A family module must stay light to import (no torch, tensorflow or pandas at its top).

What the parts exchange:
- a *dataset* (``Family.prepare``): a small JSON-able dict of lake URIs and counts, handed from
  task to task through XCom; never data frames;
- a :class:`Split` (``Family.split``): one split's model inputs, labels and row ids, for one model;
- model *outputs* (``Architecture.predict``), by task type: binary P(1) as ``[n]``, multiclass
  probabilities ``[n, k]`` in ``spec.classes`` order, generation a list of strings.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from biotune.errors import MissingInputError

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass
class Split:
    """One split of a prepared dataset, for one model."""

    x: Any                  # what the architecture's predict takes: an array, a frame, a list of prompts
    y: Any                  # binary 0/1, multiclass class index, generation reference texts
    ids: Any = None         # pseudonymous row ids (participant, person, session)

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Batch:
    """One day's production batch as the family read it."""

    path: str
    ids: Any                # one pseudonymous id per row
    labels: Any             # a frame of the label columns present (NaN where unlabelled), row-aligned
    data: Any = None        # the family's payload (arrays, frames)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Served:
    """Which model served each row of a batch, when the population champion does not serve them all
    (:meth:`Family.serve_batch`; mood_personal: a person's own calibrated model)."""

    served_by: list[str]    # per row: "<registered model> v<version>" that served it
    reasons: list[str]      # per row: why ("personal", "fallback: no personal model", ...)
    rows: Any               # indices of the rows another model served ...
    outputs: Any            # ... their outputs by task type (binary P(1) [m], multiclass [m, k], texts)
    thresholds: Any = None  # binary: those rows' decision thresholds [m] (None: the champion's)


@dataclass
class Trained:
    """A model trained locally: its files are in the ``workdir`` given to ``train``."""

    params: dict[str, Any] = field(default_factory=dict)      # settings and counts, never health data
    history: dict[str, list[float]] = field(default_factory=dict)  # per-epoch curves: logged per step
    threshold: float | None = None  # binary: None lets the shared step choose one on validation


@dataclass
class RemoteJob:
    """A training job a provider runs: the DAG waits for it without holding a worker slot, then
    ``Architecture.collect`` turns the finished job into files in a workdir."""

    job: dict[str, Any]                                       # JSON-able, no secrets
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobStatus:
    state: str
    done: bool
    succeeded: bool = False
    error: str | None = None
    events: list[str] = field(default_factory=list)


class Architecture:
    """How one kind of model (``spec.architecture.kind``) trains, predicts and is logged."""

    kind: str = ""

    def prepare(self, family: "Family", specs: list, dataset: dict, run_dir: str, params: dict,
                progress: Progress | None = None) -> dict | None:
        """Work shared by every model of this kind in one run (mood PAT: the scaler and the
        pretrained encoder), done once before training. Returns a JSON-able dict or None."""
        return None

    def train(self, spec, train: Split, val: Split, workdir: Path, *, prepared: dict | None, params: dict,
              progress: Progress | None = None) -> Trained | RemoteJob:
        """Fit on ``train`` (early stopping on ``val``) and save the model's files into ``workdir``."""
        raise NotImplementedError

    def load(self, local_dir: str | Path) -> Any:
        """The model saved by ``train`` in ``local_dir``, ready for ``predict``."""
        raise NotImplementedError

    def predict(self, model: Any, x: Any) -> Any:
        """Outputs by task type (see the module docstring)."""
        raise NotImplementedError

    def log_model(self, spec, local_dir: str | Path) -> Any:
        """Log the model (inside the active MLflow run) as a pyfunc with a signature whose
        ``predict`` returns the same outputs as :meth:`predict`; return the ModelInfo."""
        raise NotImplementedError

    # drift on the model's own input: a kind whose model reads something other than the family's
    # drift features (mood's PAT reads the minute activity week, not the 36 sleep features) says so here
    def drift_features(self, family: "Family", spec, batch: "Batch"):
        """The drift features of ``batch`` for a model of this kind; None (the default): the family's
        :meth:`Family.drift_features`. Columns must match :meth:`reference_frame`'s features."""
        return None

    def reference_frame(self, family: "Family", spec, dataset: dict):
        """The training split's drift features of this kind (and the label column); None (the default):
        the family's :meth:`Family.reference_frame`."""
        return None

    # a remote trainer (glucose's provider backends) also implements these
    def poll(self, job: dict) -> JobStatus:
        raise NotImplementedError(f"{self.kind} trains locally: nothing to poll")

    def cancel(self, job: dict) -> None:
        raise NotImplementedError(f"{self.kind} trains locally: nothing to cancel")

    def collect(self, job: dict, workdir: Path) -> Trained:
        raise NotImplementedError(f"{self.kind} trains locally: nothing to collect")


class Family:
    """What a model family provides. Subclass it in ``biotune/<family>/family.py`` and register it."""

    name: str = ""
    fine_tune_dag_id: str = ""          # the DAG a retrain triggers (a spec may name another)
    batch_file: str = "batch.parquet"   # landing/<family>/<YYYY-MM-DD>/<batch_file>
    batch_suite: str | None = None      # the expectations/ suite a daily batch must pass
    id_column: str = "id"               # the id column of the predictions it writes
    architectures: dict[str, Architecture] = {}

    # ------------------------------------------------------------------ the fine-tune DAG
    def dag_params(self) -> dict[str, dict]:
        """The fine-tune DAG's UI form: name -> keyword arguments of ``airflow.sdk.Param``."""
        return {}

    def sources(self, params: dict) -> list[dict]:
        """The training files to validate before anything else, one dict each with ``path``,
        ``suite`` and ``reader``; a missing required file raises
        MissingInputError naming it. [] when the family validates inside ``prepare``."""
        return []

    def prepare(self, params: dict, run_dir: str, run_id: str, progress: Progress | None = None) -> dict:
        """Read the (validated) training data and write one prepared dataset under ``run_dir``:
        rows with a deterministic group-level ``split`` (train/val/test), labels and drift
        features. Returns the dataset dict (lake URIs and counts)."""
        raise NotImplementedError

    def split(self, spec, dataset: dict, which: str) -> Split:
        """One split (``train``, ``val`` or ``test``) of the dataset as ``spec``'s model takes it."""
        raise NotImplementedError

    def reference_frame(self, spec, dataset: dict):
        """The training split's drift features (and the label column): logged with the model as
        the drift reference and the run's dataset."""
        raise NotImplementedError

    def generation_metrics(self, references: list[str], outputs: list[str]) -> dict[str, float]:
        """Generation families: the metrics of ``outputs`` against ``references`` (biotune.metrics names)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ daily batches
    def batch_uri(self, date) -> str:
        from biotune import storage
        from biotune.dates import as_date

        return storage.lake_path("landing", self.name, as_date(date).isoformat(), self.batch_file)

    def batch_dates(self) -> list:
        """The dates with a landed batch (the date folders beside ``batch_uri``), oldest first."""
        import datetime as dt

        from biotune import storage

        folder = storage.lake_path("landing", self.name)
        found = []
        for name in storage.listdir(folder):
            try:
                day = dt.date.fromisoformat(name)
            except ValueError:
                continue
            if storage.exists(self.batch_uri(day)):
                found.append(day)
        return found

    def read_batch(self, path: str) -> Batch:
        """The batch at ``path``; typed errors for anything unusable."""
        raise NotImplementedError

    def batch_validation_frame(self, path: str):
        """A frame the family's batch suite checks (one row per batch row, summaries of arrays)."""
        raise NotImplementedError

    def batch_inputs(self, spec, batch: Batch) -> Any:
        """What ``spec``'s model takes, for every row of the batch."""
        raise NotImplementedError

    def drift_features(self, spec, batch: Batch):
        """The numeric drift features of the batch (the reference frame's feature columns)."""
        raise NotImplementedError

    def batch_labels(self, spec, batch: Batch):
        """``spec``'s labels in the batch: float (NaN unlabelled) or object for generation."""
        import numpy as np

        labels = batch.labels
        if labels is not None and spec.task in getattr(labels, "columns", []):
            return labels[spec.task].astype("float64").to_numpy()
        return np.full(len(batch), np.nan)

    def output_categories(self, spec, outputs) -> Any:
        """Generation families: a category per output (e.g. well-formed / not) whose shares
        prediction drift follows. None: no prediction drift for this family."""
        return None

    def output_errors(self, spec, outputs) -> Any:
        """Generation families: which outputs are wrong on their own, with no reference answer
        needed (glucose: a malformed answer), as a bool array. Their share is the model's error
        rate, in evaluation and in production, which the retraining rule compares. None: no such
        check (a generation model then has no error rate)."""
        return None

    def reference_features(self, reference):
        """The feature columns of a logged reference frame (drops label columns)."""
        return reference

    # ------------------------------------------------------------------ per model (what the shared steps call)
    def model_drift_features(self, spec, batch: Batch):
        """``spec``'s drift features of a batch: its architecture's own when it has them
        (:meth:`Architecture.drift_features`), else :meth:`drift_features`."""
        arch = self.architectures.get(spec.architecture.kind) if spec is not None else None
        own = arch.drift_features(self, spec, batch) if arch is not None else None
        return own if own is not None else self.drift_features(spec, batch)

    def model_reference_frame(self, spec, dataset: dict):
        """``spec``'s drift reference (logged with the model): its architecture's own when it has
        one (:meth:`Architecture.reference_frame`), else :meth:`reference_frame`."""
        arch = self.architectures.get(spec.architecture.kind)
        own = arch.reference_frame(self, spec, dataset) if arch is not None else None
        return own if own is not None else self.reference_frame(spec, dataset)

    # ------------------------------------------------------------------ who serves a row
    def serve_batch(self, spec, batch: Batch, champion, inputs) -> Served | None:
        """Per-row serving for the population model ``spec`` whose ``champion`` (a registry Version)
        scores ``batch`` (``inputs``: its model input): a family with per-person models names, per
        row, the model that serves it and why, and gives the outputs of the rows it serves.
        None (the default): the champion serves every row. The champion's own outputs stay in the
        predictions file for drift monitoring either way."""
        return None

    # ------------------------------------------------------------------ generated data (demo, tests)
    demo_size: int = 300                # `make demo`: how much training data to generate ...
    demo_conf: dict = {}                # ... and the fine-tune DAG's conf for it (small epochs)
    demo_batch_rows: int = 200          # rows per generated daily batch

    def demo_training_data(self, directory: str, size: int, seed: int = 0) -> dict:
        """Write small training data in the family's real file formats, with a planted signal, into
        ``directory``; return the fine-tune DAG params that point at it."""
        raise NotImplementedError

    def demo_batch(self, date, rows: int, seed: int = 0, shifted: bool = False) -> str:
        """Land a generated daily batch (``shifted``: production has drifted) at ``batch_uri(date)``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers
    def architecture(self, kind: str) -> Architecture:
        try:
            return self.architectures[kind]
        except KeyError:
            from biotune.errors import SpecError

            raise SpecError(f"family {self.name} has no architecture {kind!r}", where=f"family {self.name}",
                            fix=f"use one of {sorted(self.architectures)} in architecture.kind") from None

    def specs(self, scope: str | None = "population") -> list:
        """The family's specs in models/ (of one scope; None: all)."""
        from biotune.specs import all_specs

        return [s for s in all_specs() if s.family == self.name and (scope is None or s.scope == scope)]


_FAMILIES: dict[str, Family] = {}
_discovered = False


def register(family: Family) -> Family:
    """Make a family known to the shared machinery (called by its own ``family.py``)."""
    if not family.name:
        raise ValueError("a family needs a name")
    _FAMILIES[family.name] = family
    return family


def discover() -> dict[str, Family]:
    """Import every ``biotune.<pkg>.family`` module and the ``biotune.families`` entry points once."""
    global _discovered
    if not _discovered:
        import biotune

        for info in pkgutil.iter_modules(biotune.__path__):
            if info.ispkg and (Path(info.module_finder.path) / info.name / "family.py").exists():
                importlib.import_module(f"biotune.{info.name}.family")
        from importlib.metadata import entry_points

        for ep in entry_points(group="biotune.families"):
            ep.load()
        _discovered = True
    return dict(_FAMILIES)


def families() -> dict[str, Family]:
    return discover()


def get_family(name: str) -> Family:
    found = discover().get(name)
    if found is None:
        raise MissingInputError(f"no model family {name!r} is registered", where="biotune.family",
                                fix=f"known families: {sorted(_FAMILIES)}; a family is a folder "
                                    "include/biotune/<name>/ with a family.py (docs/architecture.md)")
    return found
