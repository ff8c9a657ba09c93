"""Operators for the biotune library: validation, register-gate-promote, the approval of a promotion,
and the rule that bad input fails a task at once (no retry) while infrastructure faults retry.

Imported by DAG files at parse time, so nothing heavy is imported at module level.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Sequence

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import BaseOperator

log = logging.getLogger(__name__)


@contextmanager
def fail_fast_on_bad_input():
    """Bad input will not fix itself on retry: fail the task now, with the typed message. Which
    errors are bad input is said on the error classes (``BiotuneError.bad_input``); registry and
    storage faults (a server down, credentials) propagate and are retried."""
    from biotune.errors import BiotuneError

    try:
        yield
    except BiotuneError as exc:
        if not exc.bad_input:
            raise
        from airflow.sdk.exceptions import AirflowFailException

        log.error("%s: %s", type(exc).__name__, exc)
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


def label_map_index(label: str) -> None:
    """Name this mapped task instance in the UI (``map_index_template="{{ biotune_label }}"``):
    the model, file or family it works on, instead of 0..n."""
    from airflow.sdk import get_current_context

    get_current_context()["biotune_label"] = str(label)


def run_date(params, dag_run, candidates=()) -> str:
    """The date a monitoring run is about (ISO): ``params["date"]``, else the latest of
    ``candidates`` (dates carried by triggering events), else the run's logical date."""
    import datetime as dt

    from biotune.dates import as_date

    if params.get("date"):
        with fail_fast_on_bad_input():
            return as_date(params["date"]).isoformat()
    dates = [str(d)[:10] for d in candidates if d]
    if dates:
        return max(dates)
    when = getattr(dag_run, "logical_date", None) or getattr(dag_run, "run_after", None)
    return (when.date() if when else dt.date.today()).isoformat()


class ValidateOperator(BaseOperator):
    """Run an expectations/ suite on a landed file; on failure quarantine it with the report and fail."""

    template_fields: Sequence[str] = ("path", "suite")

    def __init__(self, *, path: str, suite: str, reader: str = "parquet", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path, self.suite, self.reader = path, suite, reader

    def execute(self, context) -> dict:
        from biotune import validation

        context["biotune_label"] = self.path.rsplit("/", 1)[-1]
        with fail_fast_on_bad_input():  # every row, streamed; an unreadable file is quarantined too
            outcome = validation.validate_file(self.path, self.suite, self.reader, run_id=context["run_id"])
        log.info("%s passed suite %s: %d expectations on %d rows; report %s", self.path, self.suite,
                 outcome.evaluated, outcome.rows, outcome.report_html)
        return outcome.as_dict()


class RegisterGatePromoteOperator(BaseOperator):
    """Log the evaluated candidate to MLflow, register it as ``challenger`` (once per run), gate it
    against the champion on the same held-out data and move ``champion`` when it passes (or, with
    ``gate.approval: required``, leave the move to :class:`PromotionApprovalOperator`)."""

    template_fields: Sequence[str] = ("candidate",)

    def __init__(self, *, candidate: dict, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.candidate = candidate

    def execute(self, context) -> dict:
        from biotune import registry

        context["biotune_label"] = self.candidate.get("model", "")
        with fail_fast_on_bad_input():
            result = registry.publish(self.candidate, dag_run_id=context["run_id"])
        verdict = ("PROMOTED to champion" if result["promoted"] else
                   "passed the gate: waiting for approval" if result.get("gate_passed") else "kept as challenger")
        log.info("%s v%s %s: %s", result["model"], result["version"], verdict, "; ".join(result["reasons"]))
        return result


class PromotionApprovalOperator(ApprovalOperator):
    """A person approves (or rejects) a promotion in the Airflow UI, seeing the evidence: challenger
    vs champion on the same test split, the gate's reasons, links to the MLflow run. Only waits
    when the spec asks for approval and the automatic gate passed; otherwise returns at once.
    Approve moves ``champion``; reject or time-out records the reason on the version."""

    template_fields: Sequence[str] = ("subject", "body", "published")

    def __init__(self, *, published: dict, **kwargs: Any) -> None:
        kwargs.setdefault("subject", "biotune: approve a promotion")
        kwargs.setdefault("defaults", ["Reject"])  # no answer in time: not promoted
        super().__init__(**kwargs)
        self.published = published

    def execute(self, context):
        from datetime import timedelta

        from biotune.specs import get_spec

        result = self.published
        context["biotune_label"] = result.get("model", "")
        if result.get("approval") != "required" or not result.get("gate_passed") or result.get("promoted"):
            log.info("%s v%s: no approval needed (%s)", result.get("model"), result.get("version"),
                     "promoted by the gate" if result.get("promoted") else "the gate did not pass"
                     if not result.get("gate_passed") else "the spec does not ask for one")
            return {"approval": "not needed", **result}
        spec = get_spec(result["model"].partition("--")[0])
        self.response_timeout = timedelta(hours=spec.gate.approval_timeout_hours)
        self.subject = f"Promote {result['model']} v{result['version']} to champion?"
        self.body = approval_body(result)
        return super().execute(context)

    def execute_complete(self, context, event):
        from biotune import registry

        from airflow.providers.standard.operators.hitl import HITLOperator

        payload = HITLOperator.execute_complete(self, context, event)
        result = self.published
        chosen = payload["chosen_options"][0]
        who = payload.get("responded_by_user") or {}
        who_name = (who.get("name") or who.get("id")) if isinstance(who, dict) else str(who or "")
        if chosen == self.APPROVE:
            registry.promote_version(result["model"], result["version"], approved_by=who_name or "unknown")
            log.info("%s v%s approved by %s: PROMOTED", result["model"], result["version"], who_name)
            return {**result, "approval": "approved", "approved_by": who_name, "promoted": True}
        reason = f"rejected by {who_name}" if who_name else "no approval before the time-out"
        registry.reject_version(result["model"], result["version"], reason)
        log.info("%s v%s not promoted: %s", result["model"], result["version"], reason)
        return {**result, "approval": "rejected", "reason": reason, "promoted": False}


def approval_body(result: dict) -> str:
    """The evidence a person approves on, as Markdown."""
    from biotune import metrics, registry

    rows = []
    challenger = registry.get_alias(result["model"], registry.CHALLENGER)
    champion = registry.champion(result["model"])
    keys = sorted({k for v in (challenger, champion) if v for k in v.metrics if k.startswith("test_")})
    for k in keys:
        rows.append(f"| {k} | {metrics.format_value(k, challenger.metrics.get(k) if challenger else None)} | "
                    f"{metrics.format_value(k, champion.metrics.get(k) if champion else None)} |")
    import os

    mlflow_ui = os.environ.get("BIOTUNE_MLFLOW_UI_URL", "http://127.0.0.1:5000").rstrip("/")
    reasons = "\n".join(f"- {r}" for r in result.get("reasons", []))
    return (f"**{result['model']}** v{result['version']} passed its automatic gate on "
            f"`{result.get('metric')}` ({metrics.format_value('x', result.get('challenger_value'))} vs champion "
            f"{metrics.format_value('x', result.get('champion_value'))}).\n\n{reasons}\n\n"
            f"| metric (test split) | challenger | champion |\n|---|---|---|\n" + "\n".join(rows) +
            f"\n\nIn MLflow (run, plots, dataset, spec): {mlflow_ui}/#/models/{result['model']}/versions/{result['version']}\n\n"
            "Approve moves the `champion` alias; Reject keeps the current champion and records why.")
