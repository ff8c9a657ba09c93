"""
### Mood population fine-tuning: NHANES 2013-14 to champion PAT and XGBoost models

Reads the NHANES 2013-14 SAS XPORT files a lab has on disk (PAXHD_H, PAXDAY_H, PAXMIN_H,
DPQ_H, RXQ_RX_H, RXQ_DRUG, DEMO_H), validates each against its suite in `expectations/`,
builds the participant cohort (one week of minute activity and sleep/wake on clock time,
PHQ-9, benzodiazepine and SSRI labels), computes the PAT input and the 36 mood_ml features,
loads PAT weights from `models/pretrained/` (or pretrains a masked autoencoder when none are
there), then fine-tunes one model per registered spec:

| model | input |
|---|---|
| mood-depression-pat, mood-benzodiazepine-pat, mood-ssri-pat | PAT on the activity week |
| mood-depression-xgb | XGBoost on the 36 sleep/circadian features |

Each model is evaluated on a held-out participant split, registered in MLflow as
`challenger`, gated against the `champion` on the same split (thresholds from its spec in
`models/`) and promoted when it passes. A file that fails its suite is quarantined with the
report beside it and nothing is registered.

**Params**: `source` (empty: the lake's `landing/nhanes/2013-2014`), `pat_size` (S, M, L),
`pat_mode` (full, linear, lora), `epochs` and `pretrain_epochs` (empty: from the spec).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, Param, dag, task
from biotune_operators import RegisterGatePromoteOperator, ValidateOperator, fail_fast_on_bad_input

MOOD_COHORT = Asset("biotune_mood_nhanes_cohort")


@dag(
    dag_id="mood_population_finetune",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["biotune", "mood", "fine-tune", "nhanes"],
    doc_md=__doc__,
    default_args={"owner": "biotune", "retries": 2, "retry_delay": timedelta(seconds=20)},
    params={
        "source": Param(None, type=["null", "string"], title="NHANES folder",
                        description="Folder (or s3:// prefix) with the seven XPT files; empty = lake landing/nhanes/2013-2014"),
        "pat_size": Param("S", enum=["S", "M", "L"], title="PAT size"),
        "pat_mode": Param("full", enum=["full", "linear", "lora"], title="PAT fine-tuning mode"),
        "epochs": Param(None, type=["null", "integer"], minimum=1, title="Fine-tuning epochs (empty: spec)"),
        "pretrain_epochs": Param(None, type=["null", "integer"], minimum=1,
                                 title="MAE pretraining epochs when no weights (empty: spec)"),
    },
)
def mood_population_finetune():
    @task
    def locate_tables(params=None) -> list[dict]:
        from biotune.mood import pipeline

        with fail_fast_on_bad_input():
            return pipeline.raw_tables(params["source"] or pipeline.default_source())

    @task(outlets=[MOOD_COHORT])
    def build_cohort(params=None, run_id=None, outlet_events=None) -> dict:
        import logging

        from biotune.mood import pipeline

        with fail_fast_on_bad_input():
            info = pipeline.build_cohort(params["source"] or pipeline.default_source(), run_id,
                                         progress=logging.getLogger("biotune").info)
        outlet_events[MOOD_COHORT].extra = {"uri": info["cohort"], "participants": info["participants"]}
        return info

    @task
    def build_features(cohort: dict, run_id=None) -> dict:
        from biotune.mood import pipeline

        with fail_fast_on_bad_input():
            return pipeline.build_features(cohort, run_id)

    @task
    def prepare_encoder(features: dict, params=None, run_id=None) -> dict:
        import logging

        from biotune.mood import pipeline
        from biotune.specs import get_spec

        pretrain = params["pretrain_epochs"] or get_spec("mood-depression-pat").training.params.get("pretrain_epochs", 2)
        with fail_fast_on_bad_input():
            return pipeline.prepare_encoder(features, run_id, params["pat_size"], int(pretrain),
                                            progress=logging.getLogger("biotune").info)

    @task
    def model_names() -> list[str]:
        from biotune.mood import pipeline

        return pipeline.MODEL_NAMES

    @task(map_index_template="{{ model_name }}")
    def train(model_name: str, features: dict, encoder: dict, params=None, run_id=None) -> dict:
        import logging

        from biotune.mood import pipeline

        with fail_fast_on_bad_input():
            return pipeline.train_model(model_name, features, encoder, run_id,
                                        overrides={k: params[k] for k in ("epochs", "pat_mode")},
                                        progress=logging.getLogger("biotune").info)

    @task(map_index_template="{{ trained['model'] }}")
    def evaluate(trained: dict, features: dict, run_id=None) -> dict:
        from biotune.mood import pipeline

        with fail_fast_on_bad_input():
            return pipeline.evaluate_model(trained, features, run_id)

    validated = ValidateOperator.partial(task_id="validate", reader="xpt").expand_kwargs(locate_tables())
    cohort = build_cohort()
    validated >> cohort
    features = build_features(cohort)
    encoder = prepare_encoder(features)
    trained = train.partial(features=features, encoder=encoder).expand(model_name=model_names())
    evaluated = evaluate.partial(features=features).expand(trained=trained)
    RegisterGatePromoteOperator.partial(task_id="register_gate_promote").expand(candidate=evaluated)


mood_population_finetune()
