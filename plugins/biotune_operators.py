"""Airflow glue for the biotune library: a validation operator, a register-gate-promote operator
and the rule that bad input fails a task at once (no retry) while infrastructure faults retry.

Imported by DAG files at parse time, so nothing heavy is imported at module level.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Sequence

from airflow.sdk import BaseOperator

log = logging.getLogger(__name__)


@contextmanager
def fail_fast_on_bad_input():
    """Bad data or a bad spec will not fix itself on retry: fail the task now, with the typed message.
    Registry and storage errors (a server down, credentials) propagate and are retried."""
    from biotune.errors import DataValidationError, InputFormatError, MissingInputError, SpecError, WeightsError

    try:
        yield
    except (DataValidationError, InputFormatError, MissingInputError, SpecError, WeightsError) as exc:
        from airflow.sdk.exceptions import AirflowFailException

        log.error("%s: %s", type(exc).__name__, exc)
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


def family_scoring(family: str):
    """The family's batch-scoring module (``biotune.<family>.scoring``), or None when it has none yet."""
    import importlib

    try:
        return importlib.import_module(f"biotune.{family}.scoring")
    except ModuleNotFoundError:
        return None


def run_date(params, dag_run, candidates=()) -> str:
    """The date a monitoring run is about (ISO): ``params["date"]``, else the latest of
    ``candidates`` (dates carried by triggering events), else the run's logical date."""
    import datetime as dt

    if params.get("date"):
        return dt.date.fromisoformat(str(params["date"])[:10]).isoformat()
    dates = [str(d)[:10] for d in candidates if d]
    if dates:
        return max(dates)
    when = getattr(dag_run, "logical_date", None) or getattr(dag_run, "run_after", None)
    return (when.date() if when else dt.date.today()).isoformat()


class ValidateOperator(BaseOperator):
    """Run an expectations/ suite on a landed file; on failure quarantine it with the report and fail."""

    template_fields: Sequence[str] = ("path", "suite")

    def __init__(self, *, path: str, suite: str, reader: str = "parquet", row_limit: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path, self.suite, self.reader, self.row_limit = path, suite, reader, row_limit

    def execute(self, context) -> dict:
        from biotune import storage, validation

        run_id = context["run_id"]
        with fail_fast_on_bad_input():
            try:
                frame = validation.read_frame(self.path, self.reader, self.row_limit)
            except Exception as exc:
                from biotune.errors import InputFormatError

                if not isinstance(exc, InputFormatError):
                    exc = InputFormatError(f"cannot read {self.path} as {self.reader}: {exc}", where=self.path,
                                           fix="check the file is complete and in the expected format")
                moved = storage.quarantine(self.path, reason=str(exc), run_id=run_id)
                raise InputFormatError(exc.what, where=self.path, fix=f"{exc.fix} (moved to {moved})") from exc
            outcome = validation.validate_or_quarantine(frame, self.suite, self.path, run_id=run_id)
        log.info("%s passed suite %s: %d expectations on %d rows; report %s", self.path, self.suite,
                 outcome.evaluated, outcome.rows, outcome.report_html)
        return outcome.as_dict()


class RegisterGatePromoteOperator(BaseOperator):
    """Log the evaluated candidate to MLflow, register it as ``challenger`` (once per run), gate it
    against the champion on the same held-out data and move ``champion`` when it passes."""

    template_fields: Sequence[str] = ("candidate",)

    def __init__(self, *, candidate: dict, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.candidate = candidate

    def execute(self, context) -> dict:
        from biotune import registry

        with fail_fast_on_bad_input():
            result = registry.publish(self.candidate, dag_run_id=context["run_id"])
        verdict = "PROMOTED to champion" if result["promoted"] else "kept as challenger"
        log.info("%s v%s %s: %s", result["model"], result["version"], verdict, "; ".join(result["reasons"]))
        return result
