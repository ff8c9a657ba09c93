"""The monitoring loop's services, one concern per module:

- :mod:`.store`    the history store (drift per model and date, retraining decisions);
- :mod:`.measure`  PSI, prediction drift, confidence and error rate of one batch (pure);
- :mod:`.report`   the Evidently HTML report of one (model, date);
- :mod:`.alerts`   alert payloads and their delivery;
- :mod:`.loop`     monitor one champion on one date, evaluate the retraining rule, plan retrains.

The retraining rule itself is a pure function beside the promotion gate in :mod:`biotune.policy`.
"""

from biotune.dates import as_date
from biotune.monitoring.alerts import alert_payload, needs_alert, redact_url, send_alert
from biotune.monitoring.loop import (BAD_INPUT, champions_by_family, evaluate, last_retrain,
                                     reference_frame, reference_prediction_labels, retrain_plans)
from biotune.monitoring.measure import COLLAPSE_MIN_GAIN, measure, reference_error_rate, reference_predictions
from biotune.monitoring.report import report_dir, write_report
from biotune.monitoring.store import (DECISIONS_TABLE, DRIFT_TABLE, STATUSES, decisions, dispose, engine, history,
                                      record_decision, unjudged_dates, upsert_drift)
from biotune.policy import Decision, RetrainFacts, drift_streak, retraining_decision

__all__ = [
    "DRIFT_TABLE", "DECISIONS_TABLE", "STATUSES", "BAD_INPUT", "COLLAPSE_MIN_GAIN", "RetrainFacts", "as_date",
    "engine", "dispose", "upsert_drift", "history", "record_decision", "decisions", "unjudged_dates", "measure",
    "champions_by_family", "reference_prediction_labels", "reference_frame", "report_dir", "write_report",
    "reference_error_rate", "reference_predictions", "drift_streak", "retraining_decision", "last_retrain",
    "evaluate", "retrain_plans", "alert_payload", "needs_alert", "send_alert", "redact_url", "Decision",
]
