"""
### Batch scoring: each champion scores its family's batch of the day

Production batches land in the lake at `landing/<family>/<YYYY-MM-DD>/` (mood:
`batch.parquet`, one row per person: person_id, a week of minute activity and PAXPREDM
sleep/wake state, optional labels). For the run's date this DAG

1. finds every family with a champion and a landed batch (a day without a batch is logged and
   skipped: nothing to score);
2. validates the batch against its suite in `expectations/` (mood: `mood_batch`); a batch that
   fails is moved to `quarantine/` with the report beside it and the run fails, naming each
   failed expectation;
3. scores it with every champion of the family (`models:/<name>@champion`) and writes
   `predictions/<family>/<date>/<model>.parquet`: person_id, proba, prediction (at the
   champion's threshold), confidence, model_version, and per row `served_by` (model and version)
   and `serving_reason`. A family with per-person models serves a row by the person's own
   champion when it is current (mood_personal: calibrated on the population version that is
   champion now), else by the population champion with the reason ("fallback: no personal
   model", "fallback: calibrated on population ... v3, champion is v4"); the champion's own
   outputs stay beside them (`champion_*`) for drift monitoring. Re-running a date overwrites
   its files.

The date is the run's logical date (the daily interval's start), so
`airflow backfill create --dag-id batch_scoring --from-date ... --to-date ...` scores past days.

**Params**: `date` (YYYY-MM-DD; empty: the run's logical date).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, Param, dag, task
from biotune_airflow.notifiers import alert_task_failure
from biotune_airflow.operators import fail_fast_on_bad_input, label_map_index, run_date

PREDICTIONS = Asset("biotune_predictions")


@dag(
    dag_id="batch_scoring",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=4,
    tags=["biotune", "monitoring", "scoring"],
    doc_md=__doc__,
    default_args={"owner": "biotune", "retries": 2, "retry_delay": timedelta(seconds=30),
                  "on_failure_callback": alert_task_failure()},
    params={
        "date": Param("", type="string", title="Batch date",
                      description="YYYY-MM-DD; empty = the run's logical date"),
    },
)
def batch_scoring():
    @task
    def batches(params=None, dag_run=None) -> list[dict]:
        """One job per family that has a champion (every registered family takes part)."""
        from biotune import monitoring

        day = run_date(params, dag_run)
        with fail_fast_on_bad_input():
            return [{"family": family, "date": day, "models": models}
                    for family, models in sorted(monitoring.champions_by_family().items())]

    @task(map_index_template="{{ biotune_label }}")
    def validate(job: dict, run_id=None) -> dict:
        """The family's batch suite; a failing batch is quarantined with its report."""
        from biotune import scoring

        label_map_index(job["family"])
        with fail_fast_on_bad_input():
            outcome = scoring.validate_batch(job["family"], job["date"], run_id=run_id)
        return {**job, **outcome}

    @task
    def score_jobs(validated: list[dict]) -> list[dict]:
        """One scoring job per champion of a family whose batch landed and passed."""
        return [{"family": v["family"], "date": v["date"], "model": m}
                for v in validated if v["status"] == "ok" for m in v["models"]]

    @task(map_index_template="{{ biotune_label }}", outlets=[PREDICTIONS])
    def score(job: dict, run_id=None) -> dict:
        """The champion's predictions with confidence, written to predictions/<family>/<date>/."""
        from biotune import scoring

        label_map_index(job["model"])
        with fail_fast_on_bad_input():
            scored = scoring.score_batch(job["model"], job["date"], run_id=run_id)
        return {"model": scored.model, "version": scored.model_version, "date": scored.date,
                "n": scored.n_rows, "predictions": scored.predictions_uri, "served": scored.extra.get("served"),
                "mean_confidence": float(scored.confidence.mean())
                if scored.confidence is not None and len(scored.confidence) else None}

    score.expand(job=score_jobs(validate.expand(job=batches())))


batch_scoring()
