"""Alerts from the monitoring DAGs: a notifier that always logs and posts JSON to a webhook when one is configured.

Where the webhook comes from (first found):
1. the Airflow Connection ``biotune_alerts`` (any type; the URL is the ``webhook_url`` or ``url``
   field of its extra, else ``schema://host:port/endpoint`` with ``schema`` defaulting to https;
   its password, when set, is sent as ``Authorization: Bearer``), e.g.
   ``AIRFLOW_CONN_BIOTUNE_ALERTS='{"conn_type": "http", "extra": {"webhook_url": "https://hooks.example/T0/B0/xyz"}}'``;
2. the environment variable ``BIOTUNE_ALERT_WEBHOOK`` (a URL; ``BIOTUNE_ALERT_TOKEN`` optional).

Without either the alert is only logged. Webhook URLs usually embed a secret: only the scheme
and host are ever logged, never the path, query or token. A delivery failure is logged, never
raised, so an alert can not fail the monitoring it reports on.

Use it as a callback (``on_failure_callback=BiotuneAlertNotifier(title=...)``) or call it from a
task with the task's context: ``BiotuneAlertNotifier(title=..., payload=...)(context)``.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Sequence

from airflow.sdk import BaseNotifier

log = logging.getLogger(__name__)

DEFAULT_CONN_ID = "biotune_alerts"


def resolve_webhook(conn_id: str = DEFAULT_CONN_ID) -> tuple[str | None, str | None]:
    """(webhook URL, bearer token) from the Connection, else the environment; (None, None) when unset."""
    from biotune_airflow.connections import airflow_connection

    conn = airflow_connection(conn_id)
    if conn is not None:
        extra: dict[str, Any] = conn["extra"] if isinstance(conn["extra"], dict) else {}
        url = extra.get("webhook_url") or extra.get("url")
        if not url and conn["host"]:
            host = str(conn["host"])
            if host.startswith(("http://", "https://")):
                url = host
            else:
                scheme = conn["schema"] or "https"
                port = f":{conn['port']}" if conn["port"] else ""
                endpoint = str(extra.get("endpoint", "")).lstrip("/")
                url = f"{scheme}://{host}{port}/{endpoint}"
        if url:
            return str(url), (conn["password"] or extra.get("token") or None)
    url = os.environ.get("BIOTUNE_ALERT_WEBHOOK") or None
    return url, (os.environ.get("BIOTUNE_ALERT_TOKEN") or None) if url else None


class BiotuneAlertNotifier(BaseNotifier):
    """Log an alert and POST it as JSON to the configured webhook.

    ``title`` and ``message`` are templated (e.g. ``"{{ ti.dag_id }}.{{ ti.task_id }} failed"``);
    ``payload`` is a dict merged into the JSON body (a drift row's figures, never health data).
    """

    template_fields: Sequence[str] = ("title", "message")

    def __init__(self, *, title: str = "", message: str = "", payload: dict | None = None,
                 severity: str = "warning", conn_id: str = DEFAULT_CONN_ID, timeout: float = 10.0) -> None:
        super().__init__()
        self.title = title
        self.message = message
        self.payload = dict(payload or {})
        self.severity = severity
        self.conn_id = conn_id
        self.timeout = timeout

    def build_payload(self, context) -> dict:
        body: dict[str, Any] = {"source": "biotune", "severity": self.severity}
        body.update(self.payload)
        if self.title:
            body["title"] = self.title
        if self.message:
            body["message"] = self.message
        ti = context.get("ti") or context.get("task_instance") if hasattr(context, "get") else None
        if ti is not None:
            body.setdefault("dag_id", getattr(ti, "dag_id", None))
            body.setdefault("task_id", getattr(ti, "task_id", None))
            body.setdefault("run_id", getattr(ti, "run_id", None))
            body.setdefault("map_index", getattr(ti, "map_index", None))
        exc = context.get("exception") if hasattr(context, "get") else None
        if exc is not None:
            body.setdefault("error", f"{type(exc).__name__}: {str(exc)[:2000]}")
        return json.loads(json.dumps(body, default=str))

    def notify(self, context) -> dict:
        from biotune import monitoring

        payload = self.build_payload(context or {})
        url, token = resolve_webhook(self.conn_id)
        return monitoring.send_alert(payload, url, token, timeout=self.timeout)


def alert_task_failure(title: str = "biotune task failed: {{ ti.dag_id }}.{{ ti.task_id }}") -> BiotuneAlertNotifier:
    """An ``on_failure_callback`` for the monitoring DAGs."""
    return BiotuneAlertNotifier(title=title, severity="error")
