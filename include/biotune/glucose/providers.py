"""Hosted fine-tuning: the OpenAI-compatible API and Fireworks, behind submit / poll / cancel.

Connection (:class:`ProviderConnection`): base URL, API key, provider (``openai`` |
``fireworks``) and, for Fireworks, the account id. Built from an Airflow connection's fields
(host = base URL, password = key, extra ``{"provider": ..., "account_id": ...}``) or from the
environment variable Airflow reads for connection ``biotune_llm_provider``:
``AIRFLOW_CONN_BIOTUNE_LLM_PROVIDER`` in JSON form (``{"conn_type": "http", "host": ...,
"password": ..., "extra": {...}}``) or URI form (``https://:KEY@api.openai.com/?provider=openai``).
Parsed here, without importing Airflow. The key lives only in the dataclass (``repr=False``)
and the ``Authorization`` header: it is never logged, never in an error message and never in
a returned dict (jobs and statuses travel through XCom).

OpenAI-compatible API: ``POST /v1/files`` (multipart, purpose ``fine-tune``), ``POST
/v1/fine_tuning/jobs`` with ``method: {type: supervised, supervised: {hyperparameters: {n_epochs,
batch_size, learning_rate_multiplier}}}``, ``GET /v1/fine_tuning/jobs/{id}``, ``GET
.../events`` (newest first; ``after`` + ``limit``, ``has_more``), ``POST .../cancel``, ``POST
/v1/chat/completions``. Statuses ``validating_files``, ``queued``, ``running``, ``succeeded``,
``failed``, ``cancelled``.

Fireworks: ``POST /v1/accounts/{a}/datasets`` then ``POST .../datasets/{id}:upload`` (multipart,
<= 150 MB), ``POST /v1/accounts/{a}/supervisedFineTuningJobs?supervisedFineTuningJobId=...``
(``dataset, baseModel, outputModel, epochs, learningRate, loraRank, maxContextLength,
evaluationDataset``), ``GET`` it, ``POST .../{id}:cancel``; states ``JOB_STATE_*`` (terminal:
COMPLETED, FAILED, CANCELLED, EXPIRED, EARLY_STOPPED, DELETED, ARCHIVED); chat completions at
``POST /inference/v1/chat/completions``.

Every request retries 429 and 5xx answers and connection failures with exponential backoff,
honouring ``Retry-After`` (capped at ``max_backoff``). A job that fails carries the provider's
own error message: :func:`poll` returns it in ``error`` and :func:`wait` /
:func:`raise_for_job` raise :class:`ProviderJobFailed` with it.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence
from urllib.parse import parse_qsl, unquote, urlsplit

from biotune.errors import BiotuneError, MissingInputError

log = logging.getLogger(__name__)

CONN_ID = "biotune_llm_provider"
PROVIDERS = ("openai", "fireworks")
OPENAI_TERMINAL = {"succeeded", "failed", "cancelled"}
FIREWORKS_TERMINAL = {"JOB_STATE_COMPLETED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED",
                      "JOB_STATE_EARLY_STOPPED", "JOB_STATE_DELETED", "JOB_STATE_ARCHIVED"}
FIREWORKS_SUCCESS = {"JOB_STATE_COMPLETED", "JOB_STATE_EARLY_STOPPED"}
FIREWORKS_UPLOAD_LIMIT = 150 * 1024 * 1024
RETRY_STATUS = {429, 500, 502, 503, 504}
_sleep = time.sleep  # tests replace it to record the waits


class ProviderError(BiotuneError):
    """The provider cannot be used as configured: no or wrong key, bad connection, a rejected request.
    Bad input: retrying the same call cannot help."""

    bad_input = True


class ProviderUnavailable(ProviderError):
    """The provider is down or overloaded (unreachable, 5xx or 429 after every retry): a later retry may work."""

    bad_input = False


class ProviderJobFailed(ProviderError):
    """A fine-tuning job ended in failure; ``what`` is the provider's own error message."""


# --- connection ---------------------------------------------------------------------------------------

@dataclass
class ProviderConnection:
    provider: str
    base_url: str
    api_key: str = field(repr=False)
    account_id: str | None = None
    conn_id: str = CONN_ID
    timeout: float = 60.0
    max_retries: int = 5
    backoff: float = 1.0
    max_backoff: float = 60.0

    def __post_init__(self):
        self.provider = (self.provider or "").strip().lower()
        where = f"Airflow connection {self.conn_id}"
        if self.provider not in PROVIDERS:
            raise ProviderError(f"unknown provider {self.provider!r} in connection {self.conn_id}",
                                where=f"{where} (extra.provider)",
                                fix='set extra {"provider": "openai"} or {"provider": "fireworks"}')
        if not self.base_url:
            raise ProviderError(f"connection {self.conn_id} has no base URL", where=f"{where} (host)",
                                fix="set the host to the API base URL, e.g. https://api.openai.com")
        if not self.api_key:
            raise ProviderError(f"connection {self.conn_id} has no API key", where=f"{where} (password)",
                                fix="put the provider API key in the password field "
                                    f"(or AIRFLOW_CONN_{self.conn_id.upper()})")
        if self.provider == "fireworks" and not self.account_id:
            raise ProviderError(f"connection {self.conn_id} has no Fireworks account id", where=f"{where} (extra.account_id)",
                                fix='set extra {"provider": "fireworks", "account_id": "<your account>"}')
        self.base_url = re.sub(r"/v1/?$", "", self.base_url.rstrip("/"))  # paths below carry /v1

    def public(self) -> dict:
        """Everything but the key (for logs, XCom, MLflow)."""
        return {"provider": self.provider, "base_url": self.base_url, "account_id": self.account_id,
                "conn_id": self.conn_id}

    @classmethod
    def from_fields(cls, host: str | None, password: str | None, extra=None, conn_type: str | None = None,
                    port: int | None = None, schema: str | None = None, conn_id: str = CONN_ID, **kw) -> "ProviderConnection":
        """From an Airflow connection's fields (``conn.host``, ``conn.password``, ``conn.extra``...)."""
        if isinstance(extra, str):
            try:
                extra = json.loads(extra) if extra.strip() else {}
            except json.JSONDecodeError as exc:
                raise ProviderError(f"the extra of connection {conn_id} is not JSON", where=f"Airflow connection {conn_id} (extra)",
                                    fix='write it as JSON, e.g. {"provider": "openai"}') from exc
        extra = dict(extra or {})
        host = (host or "").strip()
        if host and "://" not in host:
            scheme = extra.get("scheme") or (conn_type if conn_type in ("http", "https") else "https")
            host = f"{scheme}://{host}"
        if host and port and not re.search(r":\d+$", urlsplit(host).netloc):
            parts = urlsplit(host)
            host = f"{parts.scheme}://{parts.netloc}:{port}{parts.path}"
        if host and schema:
            host = host.rstrip("/") + "/" + schema.strip("/")
        return cls(provider=extra.get("provider", "openai"), base_url=host, api_key=password or "",
                   account_id=extra.get("account_id"), conn_id=conn_id, **kw)

    @classmethod
    def from_uri(cls, uri: str, conn_id: str = CONN_ID, **kw) -> "ProviderConnection":
        """Airflow's URI form: ``conn-type://login:password@host:port/schema?extra=...``."""
        parts = urlsplit(uri)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        extra = json.loads(query.pop("__extra__")) if "__extra__" in query else query
        conn_type = parts.scheme.replace("-", "_")
        scheme = conn_type if conn_type in ("http", "https") else extra.get("scheme", "https")
        host = f"{scheme}://{unquote(parts.hostname or '')}" if parts.hostname else ""
        return cls.from_fields(host, unquote(parts.password or ""), extra, conn_type=conn_type, port=parts.port,
                               schema=unquote(parts.path.lstrip("/")), conn_id=conn_id, **kw)

    @classmethod
    def from_env(cls, conn_id: str = CONN_ID, environ=None, **kw) -> "ProviderConnection":
        """From ``AIRFLOW_CONN_<CONN_ID>`` (JSON or URI form), as Airflow itself would read it."""
        env = os.environ if environ is None else environ
        var = f"AIRFLOW_CONN_{conn_id.upper()}"
        value = env.get(var, "").strip()
        if not value:
            raise ProviderError(f"no connection {conn_id}", where=f"environment variable {var}",
                                fix=f"create the Airflow connection {conn_id} (host = base URL, password = API key, "
                                    f'extra {{"provider": "openai"|"fireworks", "account_id": ...}}) or set {var}')
        if value.startswith("{"):
            try:
                d = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ProviderError(f"{var} is not valid JSON", where=var, fix="use Airflow's JSON or URI connection form") from exc
            return cls.from_fields(d.get("host"), d.get("password"), d.get("extra"), conn_type=d.get("conn_type"),
                                   port=d.get("port"), schema=d.get("schema"), conn_id=conn_id, **kw)
        return cls.from_uri(value, conn_id=conn_id, **kw)


def resolve_connection(conn_id: str = CONN_ID, **kw) -> ProviderConnection:
    """The provider connection ``conn_id``: Airflow's (biotune.connections), else the environment."""
    from biotune import connections

    fields = connections.fields(conn_id)
    if fields:
        keep = ("host", "password", "extra", "conn_type", "port", "schema")
        return ProviderConnection.from_fields(conn_id=conn_id, **{k: fields.get(k) for k in keep}, **kw)
    return ProviderConnection.from_env(conn_id, **kw)


# --- HTTP with retries ------------------------------------------------------------------------------

def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _error_message(resp) -> str:
    try:
        body = resp.json()
    except ValueError:
        return (resp.text or "").strip()[:500]
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return str(err.get("message") or err)
    return str(err or (body.get("message") if isinstance(body, dict) else body))[:500]


def request(conn: ProviderConnection, method: str, path: str, *, json_body=None, params=None,
            files: Callable[[], dict] | None = None, data=None, ok=(200, 201)) -> dict:
    """One API call with retries; returns the JSON body. ``files`` is a function so a retry re-opens them."""
    import requests

    url = conn.base_url + path
    headers = {"Authorization": f"Bearer {conn.api_key}"}
    for attempt in range(conn.max_retries + 1):
        opened = files() if files else None
        try:
            resp = requests.request(method, url, headers=headers, json=json_body, params=params, files=opened,
                                    data=data, timeout=conn.timeout)
        except (requests.ConnectionError, requests.Timeout) as exc:
            if attempt >= conn.max_retries:
                raise ProviderUnavailable(f"cannot reach the {conn.provider} API ({type(exc).__name__})",
                                    where=f"{method} {url} (connection {conn.conn_id})",
                                    fix="check the connection's base URL and the provider's status page") from None
            wait = min(conn.backoff * 2 ** attempt, conn.max_backoff)
            log.warning("%s %s: %s, retry %d in %.1f s", method, path, type(exc).__name__, attempt + 1, wait)
            _sleep(wait)
            continue
        finally:
            for f in (opened or {}).values():
                if isinstance(f, tuple) and hasattr(f[1], "close"):
                    f[1].close()
        log.info("%s %s -> %d", method, path, resp.status_code)
        if resp.status_code in RETRY_STATUS or resp.status_code >= 500:
            if attempt >= conn.max_retries:
                raise ProviderUnavailable(f"the {conn.provider} API answered HTTP {resp.status_code} after "
                                    f"{conn.max_retries + 1} attempts: {_error_message(resp)}",
                                    where=f"{method} {url}", fix="the provider is overloaded or down: retry later")
            hinted = _retry_after(resp.headers.get("Retry-After"))
            wait = min(hinted if hinted is not None else conn.backoff * 2 ** attempt, conn.max_backoff)
            log.warning("%s %s: HTTP %d, retry %d in %.1f s", method, path, resp.status_code, attempt + 1, wait)
            _sleep(wait)
            continue
        if resp.status_code in (401, 403):
            raise ProviderError(f"the {conn.provider} API refused the key (HTTP {resp.status_code}): {_error_message(resp)}",
                                where=f"Airflow connection {conn.conn_id} (password) -> {conn.base_url}",
                                fix="put a valid API key for this provider/account in the connection's password")
        if resp.status_code not in ok:
            raise ProviderError(f"the {conn.provider} API rejected {method} {path} (HTTP {resp.status_code}): "
                                f"{_error_message(resp)}", where=f"{method} {url}",
                                fix="see the provider's message above")
        try:
            return resp.json() if resp.content else {}
        except ValueError as exc:
            raise ProviderError(f"the {conn.provider} API answered {method} {path} with non-JSON",
                                where=f"{method} {url}", fix="check the base URL points at the API") from exc
    raise AssertionError("unreachable")


# --- OpenAI-compatible ------------------------------------------------------------------------------

def _file(path) -> Callable[[], dict]:
    p = Path(path)
    if not p.is_file():
        raise MissingInputError(f"no file at {path}", where=str(path), fix="run the split step first")
    return lambda: {"file": (p.name, open(p, "rb"), "application/jsonl")}


def _openai_submit(conn, training_file, validation_file, base_model, suffix, seed, hyperparameters, key):
    if key:  # a retried task finds the job its first attempt created
        found = request(conn, "GET", "/v1/fine_tuning/jobs", params={"limit": 100, "metadata[biotune_key]": key})
        for job in found.get("data", []):
            if (job.get("metadata") or {}).get("biotune_key") == key and job.get("status") not in ("failed", "cancelled"):
                return _openai_job_dict(job, job.get("training_file"), job.get("validation_file"), key)
    train_id = request(conn, "POST", "/v1/files", files=_file(training_file), data={"purpose": "fine-tune"})["id"]
    val_id = (request(conn, "POST", "/v1/files", files=_file(validation_file), data={"purpose": "fine-tune"})["id"]
              if validation_file else None)
    body = {"model": base_model, "training_file": train_id,
            "method": {"type": "supervised", "supervised": {"hyperparameters": dict(hyperparameters or {})}}}
    if val_id:
        body["validation_file"] = val_id
    if suffix:
        body["suffix"] = suffix
    if seed is not None:
        body["seed"] = int(seed)
    if key:
        body["metadata"] = {"biotune_key": key}
    job = request(conn, "POST", "/v1/fine_tuning/jobs", json_body=body)
    return _openai_job_dict(job, train_id, val_id, key)


def _openai_job_dict(job, train_id, val_id, key) -> dict:
    return {"provider": "openai", "id": job["id"], "job_id": job["id"], "base_model": job.get("model"), "training_file": train_id,
            "validation_file": val_id, "state": job.get("status"), "key": key}


def _openai_events(conn, job_id: str, since: str | None, limit: int) -> list[dict]:
    """Events newer than ``since`` (oldest first), following ``has_more`` pages."""
    new, after = [], None
    while True:
        params = {"limit": limit}
        if after:
            params["after"] = after
        page = request(conn, "GET", f"/v1/fine_tuning/jobs/{job_id}/events", params=params)
        data = page.get("data", [])
        for ev in data:  # newest first
            if since and ev.get("id") == since:
                return list(reversed(new))
            new.append({"id": ev.get("id"), "created_at": ev.get("created_at"), "level": ev.get("level"),
                        "message": ev.get("message")})
        if not page.get("has_more") or not data:
            return list(reversed(new))
        after = data[-1]["id"]


def _openai_poll(conn, job, since, limit) -> dict:
    j = request(conn, "GET", f"/v1/fine_tuning/jobs/{job['job_id']}")
    state = j.get("status")
    err = j.get("error") or {}
    events = _openai_events(conn, job["job_id"], since, limit)
    return {"provider": "openai", "job_id": job["job_id"], "state": state, "done": state in OPENAI_TERMINAL,
            "succeeded": state == "succeeded", "error": (err.get("message") if state == "failed" else None),
            "error_code": err.get("code") if state == "failed" else None,
            "model_id": j.get("fine_tuned_model"), "trained_tokens": j.get("trained_tokens"),
            "events": events, "last_event_id": events[-1]["id"] if events else since}


# --- Fireworks --------------------------------------------------------------------------------------

def _fw_id(text: str) -> str:
    """Fireworks resource ids: lowercase letters, digits and hyphens, at most 63 characters."""
    out = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return out[:63].rstrip("-") or "biotune"


def _fw_dataset(conn, path, dataset_id: str) -> str:
    p = Path(path)
    if not p.is_file():
        raise MissingInputError(f"no file at {path}", where=str(path), fix="run the split step first")
    if p.stat().st_size > FIREWORKS_UPLOAD_LIMIT:
        raise ProviderError(f"{p.name} is {p.stat().st_size / 2**20:.0f} MB, over Fireworks' 150 MB upload limit",
                            where=str(path), fix="use fewer or shorter examples")
    acct = conn.account_id
    with open(p, "rb") as fh:
        n = sum(1 for line in fh if line.strip())
    try:
        request(conn, "POST", f"/v1/accounts/{acct}/datasets",
                json_body={"datasetId": dataset_id, "dataset": {"displayName": dataset_id, "exampleCount": str(n),
                                                                 "format": "CHAT", "userUploaded": {}}})
    except ProviderError as exc:
        if "HTTP 409" not in exc.what:  # exists already (a retried task): upload again
            raise
    request(conn, "POST", f"/v1/accounts/{acct}/datasets/{dataset_id}:upload", files=_file(p))
    return f"accounts/{acct}/datasets/{dataset_id}"


def _fireworks_submit(conn, training_file, validation_file, base_model, suffix, hyperparameters, key):
    acct = conn.account_id
    stem = _fw_id(f"biotune-{suffix or 'glucose'}-{key or hashlib.sha1(str(time.time()).encode()).hexdigest()[:10]}")
    hp = dict(hyperparameters or {})
    body = {"dataset": _fw_dataset(conn, training_file, _fw_id(stem + "-train")), "baseModel": base_model,
            "outputModel": f"accounts/{acct}/models/{_fw_id(stem)}", "displayName": stem}
    if validation_file:
        body["evaluationDataset"] = _fw_dataset(conn, validation_file, _fw_id(stem + "-val"))
    for src, dst in (("epochs", "epochs"), ("n_epochs", "epochs"), ("learning_rate", "learningRate"),
                     ("learningRate", "learningRate"), ("lora_rank", "loraRank"), ("loraRank", "loraRank"),
                     ("max_context_length", "maxContextLength"), ("maxContextLength", "maxContextLength"),
                     ("batch_size", "batchSize"), ("batchSize", "batchSize")):
        if src in hp:
            body[dst] = hp[src]
    job_id = _fw_id(stem)
    try:
        job = request(conn, "POST", f"/v1/accounts/{acct}/supervisedFineTuningJobs",
                      params={"supervisedFineTuningJobId": job_id}, json_body=body)
    except ProviderError as exc:
        if "HTTP 409" not in exc.what:
            raise
        job = request(conn, "GET", f"/v1/accounts/{acct}/supervisedFineTuningJobs/{job_id}")
    fw_id = job.get("name", "").rsplit("/", 1)[-1] or job_id
    return {"provider": "fireworks", "id": fw_id, "job_id": fw_id,
            "name": job.get("name"), "base_model": base_model, "training_file": body["dataset"],
            "validation_file": body.get("evaluationDataset"), "output_model": body["outputModel"],
            "state": job.get("state"), "key": key}


def _fireworks_poll(conn, job, since) -> dict:
    j = request(conn, "GET", f"/v1/accounts/{conn.account_id}/supervisedFineTuningJobs/{job['job_id']}")
    state = j.get("state")
    status = j.get("status") or {}
    failed = state in FIREWORKS_TERMINAL and state not in FIREWORKS_SUCCESS
    progress = j.get("jobProgress") or {}
    events = []
    marker = f"{state}:{progress.get('percent')}"
    if marker != since:  # Fireworks has no event list: report each state/progress change once
        events.append({"id": marker, "created_at": j.get("updateTime"), "level": "info",
                       "message": f"{state} {progress.get('percent', '')}%".strip() + (f": {status.get('message')}" if status.get("message") else "")})
    return {"provider": "fireworks", "job_id": job["job_id"], "state": state, "done": state in FIREWORKS_TERMINAL,
            "succeeded": state in FIREWORKS_SUCCESS,
            "error": (status.get("message") or state) if failed else None, "error_code": status.get("code") if failed else None,
            "model_id": j.get("outputModel") or job.get("output_model"), "trained_tokens": progress.get("inputTokens"),
            "events": events, "last_event_id": marker}


# --- the interface the pipeline (and the Airflow trigger) uses --------------------------------------------

def submit(conn: ProviderConnection, training_file, validation_file=None, *, base_model: str, suffix: str | None = None,
           seed: int | None = None, hyperparameters: dict | None = None, key: str | None = None) -> dict:
    """Upload the files and create the fine-tuning job; returns a JSON-able job dict (no key).

    ``key`` (e.g. the DAG run id) makes a retried submit find the job the first attempt created.
    """
    if conn.provider == "openai":
        job = _openai_submit(conn, training_file, validation_file, base_model, suffix, seed, hyperparameters, key)
    else:
        job = _fireworks_submit(conn, training_file, validation_file, base_model, suffix, hyperparameters, key)
    log.info("submitted %s job %s (base %s)", conn.provider, job["job_id"], base_model)
    return job


def poll(conn: ProviderConnection, job: dict, since: str | None = None, limit: int = 50) -> dict:
    """The job's state: ``state``, ``done``, ``succeeded``, ``error`` (the provider's message),
    ``model_id`` (the tuned model when done), and the ``events`` newer than ``since`` (pass the
    previous poll's ``last_event_id``)."""
    since = since if since is not None else job.get("last_event_id")
    if conn.provider == "openai":
        return _openai_poll(conn, job, since, limit)
    return _fireworks_poll(conn, job, since)


def cancel(conn: ProviderConnection, job: dict) -> dict:
    """Ask the provider to cancel the job; returns ``{job_id, state}``."""
    if conn.provider == "openai":
        j = request(conn, "POST", f"/v1/fine_tuning/jobs/{job['job_id']}/cancel")
        state = j.get("status")
    else:
        j = request(conn, "POST", f"/v1/accounts/{conn.account_id}/supervisedFineTuningJobs/{job['job_id']}:cancel")
        state = j.get("state", "JOB_STATE_CANCELLED")
    log.info("cancelled %s job %s -> %s", conn.provider, job["job_id"], state)
    return {"provider": conn.provider, "job_id": job["job_id"], "state": state}


def raise_for_job(status: dict) -> dict:
    """Raise :class:`ProviderJobFailed` with the provider's message when a finished job did not succeed."""
    if status.get("done") and not status.get("succeeded"):
        cancelled = str(status.get("state", "")).lower().endswith(("cancelled", "canceled"))
        raise ProviderJobFailed(
            status.get("error") if not cancelled else f"the job was cancelled ({status.get('state')})",
            where=f"{status.get('provider')} fine-tuning job {status.get('job_id')}",
            fix="read the provider's message; fix the data or hyperparameters and submit again" if not cancelled
            else "submit the job again if the cancellation was not intended")
    return status


def wait(conn: ProviderConnection, job: dict, interval: float = 30.0, timeout: float | None = None,
         on_event: Callable[[dict], None] | None = None) -> dict:
    """Poll until the job is done (blocking; the DAG defers instead); raises on failure/cancel."""
    t0, since = time.monotonic(), job.get("last_event_id")
    while True:
        status = poll(conn, job, since=since)
        since = status.get("last_event_id")
        for ev in status["events"]:
            log.info("%s job %s: %s", conn.provider, job["job_id"], ev.get("message"))
            if on_event:
                on_event(ev)
        if status["done"]:
            return raise_for_job(status)
        if timeout is not None and time.monotonic() - t0 > timeout:
            raise ProviderError(f"the {conn.provider} job {job['job_id']} is still {status['state']} after {timeout:.0f} s",
                                where=f"job {job['job_id']}", fix="wait longer or cancel the job")
        _sleep(interval)


def chat(conn: ProviderConnection, model: str, messages: Sequence[dict], max_tokens: int = 800,
         temperature: float = 0.0) -> str:
    """One chat completion from ``model`` (a tuned model id)."""
    path = "/v1/chat/completions" if conn.provider == "openai" else "/inference/v1/chat/completions"
    body = request(conn, "POST", path, json_body={"model": model, "messages": list(messages),
                                                  "max_tokens": max_tokens, "temperature": temperature})
    try:
        return body["choices"][0]["message"]["content"] or ""
    except (KeyError, IndexError, TypeError) as exc:
        raise ProviderError(f"the {conn.provider} chat answer has no choices[0].message.content",
                            where=f"POST {path} (model {model})", fix="check the model id") from exc


def chat_generator(conn: ProviderConnection, model: str, max_tokens: int = 800, workers: int = 4):
    """``generate(batch of prompts) -> answers`` through chat completions (a few requests at a time)."""
    from concurrent.futures import ThreadPoolExecutor

    def generate(batch):
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(batch)))) as pool:
            return list(pool.map(lambda msgs: chat(conn, model, msgs, max_tokens), batch))

    return generate
