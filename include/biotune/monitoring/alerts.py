"""Alerts: the JSON an alert carries and its delivery to a webhook (never failing the monitoring)."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request

from biotune.specs import ModelSpec

log = logging.getLogger(__name__)


def alert_payload(row: dict, spec: ModelSpec | None = None, *, source: str = "biotune") -> dict:
    """The JSON an alert carries for one drift row (no health data: model, date, PSI figures)."""
    critical = spec.drift.critical if spec else None
    top = sorted(((k, v) for k, v in (row.get("psi") or {}).items() if v is not None), key=lambda kv: -kv[1])[:5]
    if row.get("status") == "error":
        title = f"{row['model']} {row['date']}: drift could not be measured"
        severity = "error"
    else:
        title = (f"{row['model']} {row['date']}: PSI {_fmt(row.get('max_psi'))} on {row.get('max_feature')} "
                 f">= critical {critical}")
        severity = "critical"
    return {
        "source": source, "kind": "drift", "severity": severity, "title": title,
        "model": row.get("model"), "model_version": row.get("model_version"), "date": row.get("date"),
        "status": row.get("status"), "max_psi": row.get("max_psi"), "max_feature": row.get("max_feature"),
        "critical_threshold": critical, "drifted_features": row.get("drifted_features"),
        "top_psi": {k: round(float(v), 4) for k, v in top}, "mean_confidence": row.get("mean_confidence"),
        "prediction_collapse": row.get("prediction_collapse"), "error": row.get("error"),
        "report_uri": row.get("report_uri"),
    }


def needs_alert(row: dict) -> bool:
    return bool(row.get("critical")) or row.get("status") == "error"


def redact_url(url: str) -> str:
    """scheme://host[:port] only: webhook paths and queries often carry the secret."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "(unparsable URL)"
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


def send_alert(payload: dict, webhook_url: str | None = None, token: str | None = None,
               timeout: float = 10.0) -> dict:
    """Log the alert; POST it as JSON to ``webhook_url`` when given (``Authorization: Bearer`` from
    ``token``). Never raises on a delivery failure (alerting must not break monitoring) and never
    logs the URL's path, query or the token."""
    log.warning("ALERT [%s] %s", payload.get("severity", "info"), payload.get("title", ""))
    if not webhook_url:
        return {"logged": True, "posted": False}
    data = json.dumps(payload, default=str).encode("utf-8")
    headers = {"Content-Type": "application/json", "User-Agent": "biotune-alerts"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    where = redact_url(webhook_url)
    try:
        req = urllib.request.Request(webhook_url, data=data, headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (URL from the operator's config)
            status = resp.status
        log.info("alert posted to %s (HTTP %s)", where, status)
        return {"logged": True, "posted": True, "status": status}
    except urllib.error.HTTPError as exc:
        log.error("alert webhook %s answered HTTP %s", where, exc.code)
        return {"logged": True, "posted": False, "status": exc.code}
    except Exception as exc:  # network, DNS, TLS
        log.error("alert webhook %s unreachable: %s", where, type(exc).__name__)
        return {"logged": True, "posted": False, "error": type(exc).__name__}



def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
