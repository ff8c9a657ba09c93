"""
### Drift monitoring: PSI per feature, prediction drift and confidence, per champion and day

For the run's date and every champion whose family has a batch scorer:

- **reference**: the training split logged with that model version (the
  `reference/features.parquet` artifact of its MLflow run);
- **current**: that date's batch (`landing/<family>/<date>/`), featurized and scored by the
  champion (predictions written as in `batch_scoring`);
- **measures**: PSI per feature (the spec's `drift.method`/`drift.bins`), the features at or above
  `drift.threshold`, prediction drift against the held-out predictions and a collapse check,
  mean confidence, and the error rate on the batch's labelled samples;
- **report**: an Evidently HTML report in the lake (`reports/drift/<model>/<date>/`) and attached
  to the champion's MLflow run under `monitoring/<date>/`;
- **history**: one row per (model, date) in the `drift_history` table (SQLAlchemy; SQLite by
  default, PostgreSQL through `BIOTUNE_DRIFT_DB`), replaced when a date is re-run. A date without
  a batch is recorded as `missing` (not drift); an unusable batch or a model without a logged
  reference as `error`, with the typed message.

PSI at or above the spec's `drift.critical` (and any `error` row) raises an alert through
`BiotuneAlertNotifier` (log, plus a webhook from the `biotune_alerts` connection or
`BIOTUNE_ALERT_WEBHOOK`). The run emits the `biotune_drift_results` asset, which schedules
`retraining_triggers`.

Backfill past days with `airflow backfill create --dag-id drift_monitoring --from-date D1 --to-date D2`.

**Params**: `date` (YYYY-MM-DD; empty: the run's logical date), `evidently_report`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, Param, dag, task
from biotune_airflow.notifiers import BiotuneAlertNotifier, alert_task_failure
from biotune_airflow.operators import fail_fast_on_bad_input, label_map_index, run_date

DRIFT_RESULTS = Asset("biotune_drift_results")


ROW_KEYS = ("model", "model_version", "date", "status", "n_rows", "max_psi", "max_feature", "drifted_features",
            "drifted", "critical", "mean_confidence", "prediction_collapse", "labeled_n", "error_rate",
            "report_uri", "error", "psi")


@dag(
    dag_id="drift_monitoring",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=4,
    tags=["biotune", "monitoring", "drift"],
    doc_md=__doc__,
    default_args={"owner": "biotune", "retries": 2, "retry_delay": timedelta(seconds=30),
                  "on_failure_callback": alert_task_failure()},
    params={
        "date": Param("", type="string", title="Date to measure",
                      description="YYYY-MM-DD; empty = the run's logical date"),
        "evidently_report": Param(True, type="boolean", title="Write the Evidently HTML report"),
    },
)
def drift_monitoring():
    @task
    def champions(params=None, dag_run=None) -> list[dict]:
        """Every champion of every registered family."""
        from biotune import monitoring

        day = run_date(params, dag_run)
        with fail_fast_on_bad_input():
            return [{"model": m, "family": f, "date": day}
                    for f, models in sorted(monitoring.champions_by_family().items()) for m in models]

    @task(map_index_template="{{ biotune_label }}")
    def measure(job: dict, params=None, run_id=None) -> dict:
        """PSI per feature, prediction drift, confidence, error rate; one history row."""
        from biotune import scoring
        from biotune.specs import get_spec

        label_map_index(job["model"])
        with fail_fast_on_bad_input():
            row = scoring.monitor_model(get_spec(job["model"]), job["date"], run_id=run_id,
                                      report=bool(params["evidently_report"]))
        return {k: row.get(k) for k in ROW_KEYS}

    @task
    def alert(rows: list[dict], **context) -> int:
        """An alert per critical or failed measurement (log, and the webhook when configured)."""
        from biotune import monitoring
        from biotune.specs import get_spec

        sent = 0
        for row in list(rows):
            if monitoring.needs_alert(row):
                payload = monitoring.alert_payload(row, get_spec(row["model"]))
                BiotuneAlertNotifier(title=payload["title"], payload=payload, severity=payload["severity"])(context)
                sent += 1
        return sent

    @task(outlets=[DRIFT_RESULTS])
    def publish(rows: list[dict], outlet_events=None) -> dict:
        """The day's results as an asset event: it schedules retraining_triggers."""
        import logging

        rows = list(rows)
        summary = {"date": rows[0]["date"] if rows else None,
                   "models": {r["model"]: {"status": r["status"], "drifted_features": r["drifted_features"],
                                           "max_psi": r["max_psi"], "critical": r["critical"]} for r in rows}}
        outlet_events[DRIFT_RESULTS].extra = summary
        for r in rows:
            logging.getLogger("biotune").info("%s %s: %s, %s drifted features, max PSI %s", r["model"], r["date"],
                                              r["status"], r["drifted_features"], r["max_psi"])
        return summary

    rows = measure.expand(job=champions())
    alert(rows)
    publish(rows)


drift_monitoring()
