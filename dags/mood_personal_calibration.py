"""
### Mood personal calibration: per-person adapters and boosting, or a recorded fallback

For one person (by hand: the form's `person`) or every person whose episode labels changed since
their last calibration, and for each task (depressive, manic, hypomanic episode tomorrow):

1. the population models to start from (the bundle in `population`, or the lake's; built from
   the `mood_personal-<task>-xgb` champion when there is none);
2. calibration on the person's encrypted data: a LoRA adapter (r=8, query/value) on the
   population PAT and boosting continued from the population XGBoost, fitted on the person's
   earlier days, judged against the population on their latest days (time split, never random);
   fewer than 30 labelled days or a failed gate: the population serves and the reason is kept;
3. the per-person registry scope: a version of `mood_personal-<task>-personal--<pseudonym>`
   with the metrics and the reasons; `champion` only when the personal models won.

Persons appear only as pseudonyms; the adapters stay encrypted (key: BIOTUNE_PERSONAL_KEY).
`biotune mood predict --person P` then serves the champion side with an interval, and
`batch_scoring` serves the person's rows of the daily mood_personal batch by their champion while it
was calibrated on the population champion of the day (`served_by`, `serving_reason` per row).

**Params**: `person` (empty: everyone with new labels), `tasks` (comma-separated),
`population` (bundle folder; empty: the lake's).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task
from biotune_airflow.operators import fail_fast_on_bad_input, label_map_index


@dag(
    dag_id="mood_personal_calibration",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["biotune", "mood", "personal", "calibration"],
    doc_md=__doc__,
    default_args={"owner": "biotune", "retries": 2, "retry_delay": timedelta(seconds=30)},
    params={
        "person": Param("", type="string", title="Person",
                        description="id or pseudonym; empty = every person with labels newer than their calibration"),
        "tasks": Param("depressive,manic,hypomanic", type="string", title="Tasks",
                       description="comma-separated: depressive, manic, hypomanic"),
        "population": Param("", type="string", title="Population bundle folder",
                            description="empty = the lake's models/mood-personal/population/<task>"),
    },
)
def mood_personal_calibration():
    @task
    def jobs(params=None) -> list[dict]:
        """(pseudonym, task) pairs to calibrate, each with its population bundle."""
        from biotune.mood.personal import jobs as j

        tasks = [t.strip() for t in (params.get("tasks") or "").split(",") if t.strip()] or list(j.TASKS)
        with fail_fast_on_bad_input():
            todo = j.persons_to_calibrate(params.get("person") or None, tasks)
            bundles = {t: j.ensure_population(t, params.get("population") or None)
                       for t in sorted({x["task"] for x in todo})}
        return [{**x, "population_dir": bundles[x["task"]]["dir"]} for x in todo]

    @task(map_index_template="{{ biotune_label }}")
    def calibrate(job: dict) -> dict:
        """Adapter + continued boosting for one person and task, judged on the person's later days."""
        from biotune.mood.personal import jobs as j

        label_map_index(f"{job['person']} {job['task']}")
        with fail_fast_on_bad_input():
            return j.calibrate(job, job["population_dir"])

    @task(map_index_template="{{ biotune_label }}")
    def record(summary: dict, run_id=None) -> dict:
        """The person's version in the registry; champion only when the personal models won."""
        from biotune.mood.personal import jobs as j

        label_map_index(f"{summary['person']} {summary['task']}")
        return j.record(summary, run_id)

    @task
    def serving(results: list[dict]) -> list[dict]:
        """Who is served by which model, and why (pseudonyms)."""
        import logging

        for r in results:
            logging.getLogger("biotune").info("%s v%s: %s (%s)", r["model"], r["version"], r["serving"], r["reason"])
        return list(results)

    serving(record.expand(summary=calibrate.expand(job=jobs())))


mood_personal_calibration()
