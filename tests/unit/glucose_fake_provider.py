"""A fake fine-tuning provider on 127.0.0.1 speaking the OpenAI-compatible API and Fireworks'.

A real HTTP server (``http.server`` in a thread) that keeps jobs in memory and lets a test
inject faults:

- ``fail_next[(method, path_prefix)] = [429, 500, ...]``: answer those statuses first (429s
  carry ``Retry-After: 1``), then serve normally;
- ``job_outcome[job_id] or job_outcome["*"]``: ``"succeeded"`` (default), ``"failed"`` (with
  ``failure_message``) or ``"running"`` (never finishes: for cancel tests);
- ``steps_to_finish``: how many GETs of a job before it reaches its outcome;
- ``events_per_step``: events a job emits per GET (so events paginate).

It checks what a real provider checks that matters here: the bearer key, multipart uploads
with purpose ``fine-tune`` (OpenAI), the supervised method body, dataset names (Fireworks).
Every request is recorded in ``requests`` (method, path, query, headers without the key).
"""

from __future__ import annotations

import email.policy
import json
import threading
import time
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

KEY = "sk-test-0123456789"


class FakeProvider:
    def __init__(self, key: str = KEY, account: str = "acct-1"):
        self.key, self.account = key, account
        self.files: dict[str, dict] = {}
        self.jobs: dict[str, dict] = {}
        self.datasets: dict[str, dict] = {}
        self.fail_next: dict[tuple[str, str], list[int]] = {}
        self.job_outcome: dict[str, str] = {}
        self.failure_message = "training file has 3 examples with invalid roles (line 4, 9, 12)"
        self.steps_to_finish = 2
        self.events_per_step = 3
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._n = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def _id(self, prefix: str) -> str:
        with self._lock:
            self._n += 1
            return f"{prefix}-{self._n:04d}"

    # -- job simulation ----------------------------------------------------------------------------
    def _advance(self, job: dict) -> None:
        """One GET moves a job one step and adds events."""
        if job["terminal"]:
            return
        job["step"] += 1
        for _ in range(self.events_per_step):
            job["events"].append({"object": "fine_tuning.job.event", "id": self._id("ftevent"),
                                  "created_at": int(time.time()), "level": "info",
                                  "message": f"Step {len(job['events']) + 1}: training loss=1.{len(job['events'])}"})
        outcome = self.job_outcome.get(job["id"], self.job_outcome.get("*", "succeeded"))
        if outcome == "running" or job["step"] < self.steps_to_finish:
            job["status"] = "running"
            return
        job["terminal"] = True
        job["status"] = outcome
        if outcome == "failed":
            job["error"] = {"code": "invalid_training_file", "message": self.failure_message, "param": "training_file"}
            job["events"].append({"object": "fine_tuning.job.event", "id": self._id("ftevent"),
                                  "created_at": int(time.time()), "level": "error", "message": self.failure_message})
        else:
            job["fine_tuned_model"] = f"ft:{job['model']}:biotune:{job.get('suffix') or 'x'}:{job['id']}"
            job["trained_tokens"] = 12345

    def _fw_view(self, job: dict) -> dict:
        states = {"running": "JOB_STATE_RUNNING", "succeeded": "JOB_STATE_COMPLETED", "failed": "JOB_STATE_FAILED",
                  "cancelled": "JOB_STATE_CANCELLED", "validating_files": "JOB_STATE_CREATING"}
        out = {k: v for k, v in job["body"].items()}
        out.update({"name": f"accounts/{self.account}/supervisedFineTuningJobs/{job['id']}",
                    "state": states[job["status"]], "updateTime": "2026-01-01T00:00:00Z",
                    "jobProgress": {"percent": min(100, 50 * job["step"]), "inputTokens": 1000 * job["step"]}})
        if job["status"] == "failed":
            out["status"] = {"code": "INVALID_ARGUMENT", "message": self.failure_message}
        else:
            out["status"] = {"code": "OK", "message": ""}
        return out

    # -- HTTP --------------------------------------------------------------------------------------
    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body=None, headers=None):
                data = json.dumps(body if body is not None else {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, message: str):
                self._send(status, {"error": {"message": message, "type": "invalid_request_error"}})

            def _body(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                ctype = self.headers.get("Content-Type", "")
                if ctype.startswith("multipart/form-data"):
                    msg = BytesParser(policy=email.policy.HTTP).parsebytes(
                        f"Content-Type: {ctype}\r\n\r\n".encode() + raw)
                    out = {}
                    for part in msg.iter_parts():
                        name = part.get_param("name", header="content-disposition")
                        data = part.get_payload(decode=True)
                        out[name] = ({"filename": part.get_filename(), "data": data} if part.get_filename()
                                     else data.decode())
                    return out
                return json.loads(raw) if raw else {}

            def _route(self, method: str):
                parts = urlsplit(self.path)
                path, query = parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()}
                fake.requests.append({"method": method, "path": path, "query": query,
                                      "auth_ok": self.headers.get("Authorization") == f"Bearer {fake.key}"})
                for (m, prefix), statuses in list(fake.fail_next.items()):
                    if m == method and path.startswith(prefix) and statuses:
                        status = statuses.pop(0)
                        return self._send(status, {"error": {"message": f"injected {status}"}},
                                          {"Retry-After": "1"} if status == 429 else None)
                if self.headers.get("Authorization") != f"Bearer {fake.key}":
                    return self._error(401, "Incorrect API key provided")
                body = self._body() if method == "POST" else {}
                try:
                    return self._dispatch(method, path, query, body)
                except KeyError as exc:
                    return self._error(404, f"not found: {exc}")

            def _dispatch(self, method, path, query, body):
                acct = f"/v1/accounts/{fake.account}"
                # ---- OpenAI ----
                if method == "POST" and path == "/v1/files":
                    if body.get("purpose") != "fine-tune" or not isinstance(body.get("file"), dict):
                        return self._error(400, "purpose must be fine-tune and file a multipart upload")
                    fid = fake._id("file")
                    fake.files[fid] = {"id": fid, "bytes": len(body["file"]["data"]), "data": body["file"]["data"],
                                       "filename": body["file"]["filename"], "purpose": "fine-tune"}
                    return self._send(200, {k: v for k, v in fake.files[fid].items() if k != "data"} | {"object": "file"})
                if method == "POST" and path == "/v1/fine_tuning/jobs":
                    hp = ((body.get("method") or {}).get("supervised") or {}).get("hyperparameters")
                    if (body.get("method") or {}).get("type") != "supervised" or hp is None:
                        return self._error(400, "method.type must be supervised with hyperparameters")
                    if body.get("training_file") not in fake.files:
                        return self._error(400, f"invalid training_file: {body.get('training_file')}")
                    jid = fake._id("ftjob")
                    fake.jobs[jid] = {"id": jid, "object": "fine_tuning.job", "model": body["model"], "step": 0,
                                      "status": "validating_files", "terminal": False, "events": [], "body": body,
                                      "training_file": body["training_file"],
                                      "validation_file": body.get("validation_file"), "suffix": body.get("suffix"),
                                      "metadata": body.get("metadata"), "hyperparameters": hp,
                                      "fine_tuned_model": None, "error": None}
                    return self._send(200, self._oa(fake.jobs[jid]))
                if method == "GET" and path == "/v1/fine_tuning/jobs":
                    key = query.get("metadata[biotune_key]")
                    data = [self._oa(j) for j in fake.jobs.values() if not key or (j.get("metadata") or {}).get("biotune_key") == key]
                    return self._send(200, {"object": "list", "data": data, "has_more": False})
                if path.startswith("/v1/fine_tuning/jobs/"):
                    rest = path[len("/v1/fine_tuning/jobs/"):].split("/")
                    job = fake.jobs[rest[0]]
                    if method == "GET" and len(rest) == 1:
                        fake._advance(job)
                        return self._send(200, self._oa(job))
                    if method == "GET" and rest[1:] == ["events"]:
                        events = list(reversed(job["events"]))  # newest first, like OpenAI
                        if "after" in query:
                            ids = [e["id"] for e in events]
                            events = events[ids.index(query["after"]) + 1:]
                        limit = int(query.get("limit", 20))
                        return self._send(200, {"object": "list", "data": events[:limit], "has_more": len(events) > limit})
                    if method == "POST" and rest[1:] == ["cancel"]:
                        if job["terminal"]:
                            return self._error(400, f"job {job['id']} is already {job['status']}")
                        job["status"], job["terminal"] = "cancelled", True
                        return self._send(200, self._oa(job))
                if method == "POST" and path == "/v1/chat/completions" or path == "/inference/v1/chat/completions":
                    last = body["messages"][-1]["content"]
                    text = (f"Based on your data, here are my recommendations:\n\n1. Title: Answer from {body['model']}\n"
                            f"Description: The prompt had {len(last)} characters.\nCategory: general\nPriority: low\n"
                            "Action: Keep logging\nTiming: Every day")
                    return self._send(200, {"id": fake._id("chatcmpl"), "object": "chat.completion", "model": body["model"],
                                            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                                         "finish_reason": "stop"}]})
                # ---- Fireworks ----
                if method == "POST" and path == f"{acct}/datasets":
                    did = body.get("datasetId")
                    if not did or did in fake.datasets:
                        return self._error(409 if did else 400, f"dataset {did} already exists" if did else "datasetId required")
                    fake.datasets[did] = {"name": f"accounts/{fake.account}/datasets/{did}", "state": "UPLOADING",
                                          **body.get("dataset", {})}
                    return self._send(200, fake.datasets[did])
                if method == "POST" and path.startswith(f"{acct}/datasets/") and path.endswith(":upload"):
                    did = path[len(f"{acct}/datasets/"):-len(":upload")]
                    ds = fake.datasets[did]
                    if not isinstance(body.get("file"), dict):
                        return self._error(400, "multipart field file required")
                    ds["state"], ds["bytes"] = "READY", len(body["file"]["data"])
                    return self._send(200, {"id": did, "object": "file", "bytes": ds["bytes"],
                                            "filename": body["file"]["filename"]})
                if method == "POST" and path == f"{acct}/supervisedFineTuningJobs":
                    jid = query.get("supervisedFineTuningJobId") or fake._id("sftj")
                    if jid in fake.jobs:
                        return self._error(409, f"job {jid} already exists")
                    ds = body.get("dataset", "").rsplit("/", 1)[-1]
                    if ds not in fake.datasets or fake.datasets[ds]["state"] != "READY":
                        return self._error(400, f"dataset {body.get('dataset')} is not READY")
                    fake.jobs[jid] = {"id": jid, "model": body.get("baseModel"), "step": 0, "status": "validating_files",
                                      "terminal": False, "events": [], "body": body, "suffix": None}
                    return self._send(200, fake._fw_view(fake.jobs[jid]))
                if path.startswith(f"{acct}/supervisedFineTuningJobs/"):
                    rest = path[len(f"{acct}/supervisedFineTuningJobs/"):]
                    if method == "POST" and rest.endswith(":cancel"):
                        job = fake.jobs[rest[:-len(":cancel")]]
                        job["status"], job["terminal"] = "cancelled", True
                        return self._send(200, fake._fw_view(job))
                    if method == "GET":
                        job = fake.jobs[rest]
                        fake._advance(job)
                        return self._send(200, fake._fw_view(job))
                return self._error(404, f"no route {method} {path}")

            def _oa(self, job):
                return {k: job.get(k) for k in ("id", "object", "model", "status", "training_file", "validation_file",
                                               "fine_tuned_model", "error", "metadata", "trained_tokens")} | {
                    "object": "fine_tuning.job", "method": job["body"].get("method")}

            def do_GET(self):
                self._route("GET")

            def do_POST(self):
                self._route("POST")

        return Handler
