"""
### Mood personal: population episode models from pooled person-days

Reads a folder of persons (one sub-folder each: the Apple Health `export.zip` or a sleep-episode
CSV, and `labels.csv` with dated episodes), imports each one with the personal importer (bad
input quarantined with a typed error), computes the 36 mood_ml daily features, and trains one
model per `mood_personal` spec: next-day depressive, manic and hypomanic episodes (mood_ml's
XGBoost DE/ME/HME). Persons are split train/validation/test; each model is evaluated on the
held-out persons, registered as `challenger`, gated against the `champion` and promoted when it
passes. These champions are what `mood_personal_calibration` adapts to each person.

**Params**: `source` (empty: the lake's `landing/mood_personal/persons`).
"""

from biotune_airflow.builders import finetune_dag

from biotune.mood_personal.family import MoodPersonalFamily

finetune_dag("mood_personal", dag_id="mood_personal_population", doc_md=__doc__,
             params=MoodPersonalFamily().dag_params(), tags=["mood", "personal"])
