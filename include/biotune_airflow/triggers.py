"""Waiting for a provider's training job without holding a worker slot.

``RemoteJobOperator`` defers to ``RemoteJobTrigger``, which polls the job through the family's
architecture (``Architecture.poll``) on the triggerer. A finished job resumes the task; a failed
job fails it with the provider's own error message. Credentials never travel in the trigger:
the architecture reads them from its connection when it polls.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator, Sequence

from airflow.sdk import BaseOperator
from airflow.triggers.base import BaseTrigger, TriggerEvent

log = logging.getLogger(__name__)


class RemoteJobTrigger(BaseTrigger):
    def __init__(self, family: str, kind: str, job: dict, poll_seconds: float = 30.0) -> None:
        super().__init__()
        self.family, self.kind, self.job, self.poll_seconds = family, kind, job, poll_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("biotune_airflow.triggers.RemoteJobTrigger",
                {"family": self.family, "kind": self.kind, "job": self.job, "poll_seconds": self.poll_seconds})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from biotune.family import get_family

        arch = get_family(self.family).architecture(self.kind)
        seen = 0
        while True:
            status = await asyncio.to_thread(arch.poll, self.job)
            for event in status.events[seen:]:
                log.info("job %s: %s", self.job.get("id"), event)
            seen = len(status.events)
            if status.done:
                yield TriggerEvent({"state": status.state, "succeeded": status.succeeded, "error": status.error,
                                    "events": status.events[-50:]})
                return
            await asyncio.sleep(self.poll_seconds)


class RemoteJobOperator(BaseOperator):
    """Pass a locally trained candidate through; wait (deferred) for a remote one's job."""

    template_fields: Sequence[str] = ("candidate",)

    def __init__(self, *, candidate: dict, poll_seconds: float = 30.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.candidate, self.poll_seconds = candidate, poll_seconds

    def execute(self, context) -> dict:
        context["biotune_label"] = self.candidate.get("model", "")
        if "job" not in self.candidate:
            return self.candidate
        self.defer(trigger=RemoteJobTrigger(self.candidate["family"], self.candidate["kind"], self.candidate["job"],
                                            self.poll_seconds), method_name="execute_complete")

    def execute_complete(self, context, event: dict) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        context["biotune_label"] = self.candidate.get("model", "")
        if not event.get("succeeded"):
            raise AirflowFailException(f"{self.candidate['model']}: the provider's job {self.candidate['job'].get('id')} "
                                       f"ended {event.get('state')}: {event.get('error') or 'no error message'}")
        return {**self.candidate, "job_events": event.get("events", [])}

    def on_kill(self) -> None:
        """A cancelled run cancels the provider's job too (it would otherwise go on, billed)."""
        if "job" in self.candidate:
            from biotune.family import get_family

            get_family(self.candidate["family"]).architecture(self.candidate["kind"]).cancel(self.candidate["job"])
