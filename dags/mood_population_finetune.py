"""
### Mood population fine-tuning: NHANES 2013-14 to champion PAT and XGBoost models

Reads the NHANES 2013-14 SAS XPORT files a lab has on disk (PAXHD_H, PAXDAY_H, PAXMIN_H,
DPQ_H, RXQ_RX_H, RXQ_DRUG, DEMO_H), validates each against its suite in `expectations/`,
builds the participant cohort (one week of minute activity and sleep/wake on clock time,
PHQ-9, benzodiazepine and SSRI labels), computes the PAT input and the 36 mood_ml features,
loads PAT weights from `models/pretrained/` (or pretrains a masked autoencoder when none are
there), then fine-tunes one model per mood spec in `models/`:

| model | input |
|---|---|
| mood-depression-pat, mood-benzodiazepine-pat, mood-ssri-pat | PAT on the activity week |
| mood-depression-xgb | XGBoost on the 36 sleep/circadian features |

Each model is evaluated on a held-out participant split, registered in MLflow as
`challenger`, gated against the `champion` on the same split (thresholds from its spec) and
promoted when it passes (after a person's approval when the spec asks for one). One model's
failure does not stop the others. A file that fails its suite is quarantined with the report
beside it and nothing is registered.

**Params**: `source` (empty: the lake's `landing/nhanes/2013-2014`), `pat_size` (S, M, L),
`pat_mode` (full, linear, lora), `epochs` and `pretrain_epochs` (empty: from the spec).
"""

from airflow.sdk import Asset
from biotune_airflow.builders import finetune_dag

from biotune.mood.family import MoodFamily

finetune_dag("mood", dag_id="mood_population_finetune", doc_md=__doc__, params=MoodFamily().dag_params(),
             tags=["nhanes"], prepare_task_id="build_cohort", dataset_asset=Asset("biotune_mood_nhanes_cohort"))
