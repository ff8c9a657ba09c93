"""
### Retraining triggers: retrain only when the evidence says so

Runs whenever `drift_monitoring` publishes results (the `biotune_drift_results` asset) and
evaluates, as of the measured date, each champion's retraining rule from its spec in `models/`
(`retraining`, `drift`). A model is retrained only when **all** of these hold:

| condition | spec field |
|---|---|
| PSI >= `drift.threshold` in at least `min_drifted_features` features for `consecutive_batches` consecutive batches (a day without a batch is stepped over; a day never measured or in error breaks the streak) | `drift.threshold`, `retraining.min_drifted_features`, `retraining.consecutive_batches` |
| performance degraded: mean confidence below `min_confidence`, or the error rate on labelled samples up by `max_error_rate_increase` over the model's test error | `retraining.min_confidence`, `retraining.max_error_rate_increase` |
| enough new labels since the last retrain (and classes, where `min_classes` is set) | `retraining.min_new_labels`, `retraining.min_classes` |
| at least `min_days_since_last` days since the last retrain | `retraining.min_days_since_last` |
| no run of the fine-tune DAG already queued or running | `retraining.dag_id` (default: the family's fine-tune DAG) |

Every decision, yes or no, is written with its reasons to the `retraining_decisions` table and
to the task log. A yes passes the short-circuit and triggers the family's fine-tune DAG
(`retraining.dag_id`, one run per DAG even when several of its models say yes) with the reasons
in its conf under `retrain`.

**Params**: `date` (YYYY-MM-DD to evaluate as of; empty: the latest date in the drift results,
else the run's logical date). A run woken by drift results also judges the dates measured since the
last decision: Airflow drops the events that arrive while a run is going (a backfill's later dates),
and the history store still has them.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Asset, Param, dag, task
from biotune_airflow.notifiers import alert_task_failure
from biotune_airflow.operators import fail_fast_on_bad_input, run_date

DRIFT_RESULTS = Asset("biotune_drift_results")
IN_FLIGHT_STATES = ["queued", "running"]


@dag(
    dag_id="retraining_triggers",
    schedule=[DRIFT_RESULTS],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["biotune", "monitoring", "retraining"],
    doc_md=__doc__,
    default_args={"owner": "biotune", "retries": 2, "retry_delay": timedelta(seconds=30),
                  "on_failure_callback": alert_task_failure()},
    params={
        "date": Param("", type="string", title="Evaluate as of",
                      description="YYYY-MM-DD; empty = the date of the drift results that triggered the run"),
    },
)
def retraining_triggers():
    @task
    def evaluate(params=None, dag_run=None, triggering_asset_events=None, ti=None, run_id=None) -> list[dict]:
        """Each champion's retraining rule as of the measured date, recorded with its reasons."""
        import logging

        from biotune import monitoring, steps
        from biotune.specs import all_specs

        try:
            event_dates = [(e.extra or {}).get("date") for events in (triggering_asset_events or {}).values()
                           for e in events]
        except Exception:  # a manual run has no triggering events
            event_dates = []
        if event_dates:  # woken by drift results: also what was measured since but whose event Airflow dropped
            event_dates += monitoring.unjudged_dates()
        as_of = run_date(params, dag_run, event_dates)
        watched = {m for models in monitoring.champions_by_family().values() for m in models}
        results = []
        for spec in all_specs():
            if spec.name not in watched:
                continue
            dag_id = steps.fine_tune_dag_id(spec)
            try:
                in_flight = ti.get_dr_count(dag_id=dag_id, states=IN_FLIGHT_STATES) > 0
            except Exception as exc:  # the fine-tune DAG is not deployed: nothing can be in flight
                logging.getLogger("biotune").warning("cannot count runs of %s (%s): assuming none in flight",
                                                     dag_id, type(exc).__name__)
                in_flight = False
            with fail_fast_on_bad_input():
                results.append(monitoring.evaluate(spec, as_of, in_flight=in_flight, run_id=run_id, dag_id=dag_id))
        return results

    @task.short_circuit
    def retrain_plans(evaluated: list[dict]) -> list[dict]:
        """One trigger per fine-tune DAG whose models said yes; nothing to do stops here."""
        from biotune import monitoring

        return monitoring.retrain_plans(list(evaluated))

    plans = retrain_plans(evaluate())
    TriggerDagRunOperator.partial(task_id="trigger_retrain", skip_when_already_exists=True,
                                  wait_for_completion=False).expand_kwargs(plans)


retraining_triggers()
