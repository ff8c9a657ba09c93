"""The mood personal family on the contract: population episode models from pooled person-days.

Models (``models/mood_personal-<task>-xgb.yaml``): next-day depressive, manic and hypomanic
episode classifiers on the 36 mood_ml features, mood_ml's XGBoost_DE/ME/HME. They are the
population champions that ``mood_personal_calibration`` adapts to each person (per-person
versions are registered as ``<spec>--<pseudonym>``, scope ``person``). Trained by the shared
fine-tune DAG (``mood_personal_population``) on pooled person-days
(:mod:`biotune.mood.personal.pooled`), or imported from mood_ml pickles
(:func:`biotune.mood.personal.safe_pickle.import_model`). The XGBoost architecture is the mood
family's. Daily batches: one row per person-day, person_id + the 36 features; batch scoring serves
each row by the person's own champion when it is current (``serve_batch``), else the population.

Kept light to import (no torch, pandas or xgboost at the top).
"""

from __future__ import annotations

from biotune.family import Batch, Family, Split, register
from biotune.mood.family import XGBoostArchitecture

TASKS = ("depressive", "manic", "hypomanic")


class MoodPersonalFamily(Family):
    name = "mood_personal"
    fine_tune_dag_id = "mood_personal_population"
    batch_suite = "mood_personal_batch"
    id_column = "person_id"
    architectures = {"xgboost": XGBoostArchitecture()}
    demo_size = 300

    def dag_params(self) -> dict[str, dict]:
        return {"source": dict(default=None, type=["null", "string"], title="Persons folder",
                               description="One folder per person: export.zip or sleep.csv, and labels.csv; "
                                           "empty = the lake's landing/mood_personal/persons")}

    # ------------------------------------------------------------------ training data
    def prepare(self, params, run_dir, run_id, progress=None):
        from biotune import storage
        from biotune.mood.personal import pooled

        source = params.get("source") or storage.lake_path("landing", "mood_personal", "persons")
        return pooled.build_dataset(source, run_dir, run_id, progress=progress)

    def split(self, spec, dataset, which):
        from biotune.mood.personal import pooled

        x, y, ids = pooled.split_rows(spec, dataset, which)
        return Split(x, y, ids)

    def reference_frame(self, spec, dataset):
        from biotune import storage
        from biotune.mood.personal.names import SLEEP_FEATURE_NAMES

        table = storage.read_parquet(dataset["features"])
        rows = (table["split"] == "train") & table[spec.task].notna()
        return table.loc[rows, [*SLEEP_FEATURE_NAMES, spec.task]].reset_index(drop=True)

    def reference_features(self, reference):
        from biotune.mood.personal.names import SLEEP_FEATURE_NAMES

        return reference[[c for c in SLEEP_FEATURE_NAMES if c in reference.columns]]

    # ------------------------------------------------------------------ daily batches
    def read_batch(self, path):
        from biotune.mood.personal import pooled

        frame = pooled.read_batch(path)
        return Batch(path=path, ids=frame["person_id"].to_numpy(), labels=frame[list(TASKS)], data={"frame": frame})

    def batch_validation_frame(self, path):
        from biotune.mood.personal import pooled

        return pooled.read_batch(path)

    def batch_inputs(self, spec, batch):
        from biotune.mood.personal.names import SLEEP_FEATURE_NAMES

        return batch.data["frame"][SLEEP_FEATURE_NAMES].astype("float64")

    def drift_features(self, spec, batch):
        return self.batch_inputs(spec, batch)

    def serve_batch(self, spec, batch, champion, inputs):
        """Each person-day by the person's own champion (``<task>-personal--<pseudonym>``) when it was
        calibrated on this population champion, else by the population, with the reason
        (biotune.mood.personal.serving)."""
        from biotune.mood.personal import serving

        if spec.scope != "population" or serving.person_spec(spec) is None:
            return None
        return serving.serve_batch(spec, batch, champion, inputs)

    # ------------------------------------------------------------------ generated data
    def demo_training_data(self, directory, size, seed=0):
        from biotune.mood.personal.synth_files import generate_persons

        # enough persons and days that every split holds manic and hypomanic episodes too
        generate_persons(max(10, size // 30), directory, days=180, seed=seed, filler=0.0)
        return {"source": str(directory)}

    def demo_batch(self, date, rows, seed=0, shifted=False):
        from biotune.mood.personal import pooled

        return pooled.write_batch(pooled.demo_rows(rows, seed=seed, shifted=shifted), self.batch_uri(date))


register(MoodPersonalFamily())
