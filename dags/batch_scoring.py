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
   champion's threshold), confidence, model_version. Re-running a date overwrites its files.

The date is the run's logical date (the daily interval's start), so
`airflow backfill create --dag-id batch_scoring --from-date ... --to-date ...` scores past days.

**Params**: `date` (YYYY-MM-DD; empty: the run's logical date).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, Param, dag, task
from biotune_notifiers import alert_task_failure
from biotune_operators import fail_fast_on_bad_input, family_scoring, run_date

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
        import logging

        from biotune import monitoring

        day = run_date(params, dag_run)
        jobs = []
        for family, models in sorted(monitoring.champions_by_family().items()):
            module = family_scoring(family)
            if module is None:
                logging.getLogger("biotune").info("family %s has no batch scorer yet: skipped", family)
                continue
            jobs.append({"family": family, "date": day, "models": models})
        return jobs

    @task(map_index_template="{{ job['family'] }}")
    def validate(job: dict, run_id=None) -> dict:
        with fail_fast_on_bad_input():
            outcome = family_scoring(job["family"]).validate_batch(job["date"], run_id=run_id)
        return {**job, **outcome}

    @task
    def score_jobs(validated: list[dict]) -> list[dict]:
        return [{"family": v["family"], "date": v["date"], "model": m}
                for v in validated if v["status"] == "ok" for m in v["models"]]

    @task(map_index_template="{{ job['model'] }}", outlets=[PREDICTIONS])
    def score(job: dict, run_id=None) -> dict:
        with fail_fast_on_bad_input():
            scored = family_scoring(job["family"]).score_batch(job["model"], job["date"], run_id=run_id)
        return {"model": scored.model, "version": scored.model_version, "date": scored.date,
                "n": scored.n_rows, "predictions": scored.predictions_uri,
                "mean_confidence": float(scored.proba.size and abs(scored.proba - 0.5).mean() + 0.5)}

    score.expand(job=score_jobs(validate.expand(job=batches())))


batch_scoring()
