"""Provider backends against a fake provider server on 127.0.0.1 (OpenAI-compatible and Fireworks)."""

from __future__ import annotations

import json
import logging
import socket

import pytest

from biotune.glucose import providers
from biotune.glucose.providers import ProviderConnection, ProviderError, ProviderJobFailed

from glucose_fake_provider import KEY, FakeProvider  # noqa: E402  (tests/unit is on sys.path)


@pytest.fixture
def fake():
    with FakeProvider() as server:
        yield server


@pytest.fixture(autouse=True)
def sleeps(monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(providers, "_sleep", waits.append)
    return waits


@pytest.fixture
def files(tmp_path):
    rows = [{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": f"q{i}"},
                          {"role": "assistant", "content": f"a{i}"}]} for i in range(12)]
    train, val = tmp_path / "train.jsonl", tmp_path / "validation.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    val.write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    return train, val


def _openai(fake, **kw):
    return ProviderConnection.from_fields(fake.url, KEY, {"provider": "openai"}, **kw)


def _fireworks(fake, **kw):
    return ProviderConnection.from_fields(fake.url, KEY, json.dumps({"provider": "fireworks", "account_id": fake.account}), **kw)


def test_connection_from_fields_env_json_and_uri():
    c = ProviderConnection.from_fields("api.openai.com", "sk-abc", '{"provider": "openai"}', conn_type="http")
    assert c.base_url == "http://api.openai.com" and c.provider == "openai"
    c = ProviderConnection.from_fields("https://api.openai.com/v1/", "sk-abc", {})
    assert c.base_url == "https://api.openai.com" and c.provider == "openai"  # /v1 is added per path
    env = {"AIRFLOW_CONN_BIOTUNE_LLM_PROVIDER": json.dumps({
        "conn_type": "http", "host": "https://api.fireworks.ai", "password": "fw-key",
        "extra": {"provider": "fireworks", "account_id": "lab"}})}
    c = ProviderConnection.from_env(environ=env)
    assert (c.provider, c.base_url, c.account_id, c.api_key) == ("fireworks", "https://api.fireworks.ai", "lab", "fw-key")
    env = {"AIRFLOW_CONN_BIOTUNE_LLM_PROVIDER": "http://:sk%2Fkey@127.0.0.1:8080/?provider=openai"}
    c = ProviderConnection.from_env(environ=env)
    assert (c.base_url, c.api_key, c.provider) == ("http://127.0.0.1:8080", "sk/key", "openai")
    env = {"AIRFLOW_CONN_BIOTUNE_LLM_PROVIDER": "https://:k@api.fireworks.ai/?__extra__=" +
           '%7B%22provider%22%3A%20%22fireworks%22%2C%20%22account_id%22%3A%20%22lab%22%7D'}
    c = ProviderConnection.from_env(environ=env)
    assert (c.base_url, c.account_id) == ("https://api.fireworks.ai", "lab")
    assert "sk/key" not in repr(ProviderConnection.from_fields("h", "sk/key", {})) and "api_key" not in c.public()


def test_connection_errors_name_the_connection():
    with pytest.raises(ProviderError, match="no API key") as exc:
        ProviderConnection.from_fields("https://api.openai.com", "", {"provider": "openai"})
    assert "biotune_llm_provider" in str(exc.value) and "password" in exc.value.where
    with pytest.raises(ProviderError, match="account id"):
        ProviderConnection.from_fields("https://api.fireworks.ai", "k", {"provider": "fireworks"})
    with pytest.raises(ProviderError, match="unknown provider"):
        ProviderConnection.from_fields("https://x", "k", {"provider": "acme"})
    with pytest.raises(ProviderError, match="AIRFLOW_CONN_BIOTUNE_LLM_PROVIDER"):
        ProviderConnection.from_env(environ={})


def test_openai_job_end_to_end_with_paginated_events(fake, files, caplog):
    caplog.set_level(logging.INFO, logger="biotune.glucose.providers")
    conn = _openai(fake)
    train, val = files
    job = providers.submit(conn, train, val, base_model="gpt-4o-mini-2024-07-18", suffix="glucose", seed=7,
                           hyperparameters={"n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 0.5})
    body = fake.jobs[job["job_id"]]["body"]
    assert body["method"] == {"type": "supervised", "supervised": {"hyperparameters": {
        "n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 0.5}}}
    assert body["suffix"] == "glucose" and body["seed"] == 7 and body["validation_file"] == job["validation_file"]
    assert fake.files[job["training_file"]]["data"] == train.read_bytes()
    fake.events_per_step = 5
    seen, status, since = [], None, None
    for _ in range(5):
        status = providers.poll(conn, job, since=since, limit=2)  # 5 new events a poll, pages of 2
        seen += status["events"]
        since = status["last_event_id"]
        if status["done"]:
            break
    assert status["state"] == "succeeded" and status["succeeded"] and status["model_id"].startswith("ft:gpt-4o-mini")
    assert [e["id"] for e in seen] == [e["id"] for e in fake.jobs[job["job_id"]]["events"]]  # all, once, in order
    pages = [r for r in fake.requests if r["path"].endswith("/events")]
    assert any("after" in r["query"] for r in pages)
    assert providers.raise_for_job(status) is status
    answers = providers.chat_generator(conn, status["model_id"])([[{"role": "user", "content": "hi"}]] * 3)
    assert len(answers) == 3 and answers[0].startswith("Based on your data") and status["model_id"] in answers[0]
    for record in (job, status):
        assert KEY not in json.dumps(record)
    assert KEY not in caplog.text and "POST /v1/fine_tuning/jobs -> 200" in caplog.text


def test_429_then_success_honours_retry_after(fake, files, sleeps):
    fake.fail_next[("POST", "/v1/files")] = [429, 429]
    job = providers.submit(_openai(fake), files[0], base_model="gpt-4o-mini-2024-07-18")
    assert sleeps == [1.0, 1.0] and job["job_id"] in fake.jobs
    assert [r["path"] for r in fake.requests[:3]] == ["/v1/files"] * 3


def test_500_is_retried_with_backoff_and_gives_up_clearly(fake, files, sleeps):
    conn = _openai(fake, backoff=0.5, max_retries=3)
    job = providers.submit(conn, files[0], base_model="m")
    fake.fail_next[("GET", "/v1/fine_tuning/jobs/")] = [500, 503]
    status = providers.poll(conn, job)
    assert status["state"] == "running" and sleeps == [0.5, 1.0]
    fake.fail_next[("GET", "/v1/fine_tuning/jobs/")] = [500] * 10
    with pytest.raises(ProviderError, match="HTTP 500 after 4 attempts"):
        providers.poll(conn, job)


def test_failed_job_raises_its_own_message(fake, files):
    fake.job_outcome["*"] = "failed"
    conn = _openai(fake)
    job = providers.submit(conn, files[0], base_model="m")
    with pytest.raises(ProviderJobFailed) as exc:
        providers.wait(conn, job, interval=0)
    assert exc.value.what == fake.failure_message and job["job_id"] in exc.value.where
    status = providers.poll(conn, job)
    assert status["done"] and status["error"] == fake.failure_message and status["error_code"] == "invalid_training_file"


def test_cancelled_job(fake, files):
    fake.job_outcome["*"] = "running"
    conn = _openai(fake)
    job = providers.submit(conn, files[0], base_model="m")
    assert providers.poll(conn, job)["state"] == "running"
    assert providers.cancel(conn, job)["state"] == "cancelled"
    status = providers.poll(conn, job)
    assert status["done"] and not status["succeeded"] and status["state"] == "cancelled"
    with pytest.raises(ProviderJobFailed, match="cancelled"):
        providers.raise_for_job(status)


def test_wrong_key_and_provider_down(fake, files, sleeps):
    bad = ProviderConnection.from_fields(fake.url, "sk-wrong", {"provider": "openai"})
    with pytest.raises(ProviderError, match="refused the key") as exc:
        providers.submit(bad, files[0], base_model="m")
    assert exc.value.bad_input  # a wrong key: fail at once, no retries
    assert "biotune_llm_provider" in exc.value.where and "sk-wrong" not in str(exc.value)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    down = ProviderConnection.from_fields(f"http://127.0.0.1:{port}", KEY, {"provider": "openai"}, max_retries=2, timeout=2)
    with pytest.raises(providers.ProviderUnavailable, match="cannot reach") as exc:
        providers.poll(down, {"job_id": "ftjob-1"})
    assert sleeps == [1.0, 2.0] and exc.value.retryable  # the provider being down is worth a task retry


def test_submit_with_a_key_is_idempotent(fake, files):
    conn = _openai(fake)
    a = providers.submit(conn, files[0], base_model="m", key="run-2026-01-01")
    b = providers.submit(conn, files[0], base_model="m", key="run-2026-01-01")
    assert a["job_id"] == b["job_id"] and len(fake.jobs) == 1
    fw = _fireworks(fake)
    c = providers.submit(fw, files[0], base_model="accounts/fireworks/models/llama-v3p1-8b-instruct", key="run-1")
    d = providers.submit(fw, files[0], base_model="accounts/fireworks/models/llama-v3p1-8b-instruct", key="run-1")
    assert c["job_id"] == d["job_id"] and len(fake.jobs) == 2


def test_fireworks_job_end_to_end(fake, files):
    conn = _fireworks(fake)
    train, val = files
    job = providers.submit(conn, train, val, base_model="accounts/fireworks/models/gpt-oss-20b", suffix="glucose",
                           hyperparameters={"epochs": 2, "learning_rate": 1e-4, "lora_rank": 8, "max_context_length": 4096})
    body = fake.jobs[job["job_id"]]["body"]
    assert body["dataset"] == job["training_file"] and body["evaluationDataset"] == job["validation_file"]
    assert (body["epochs"], body["learningRate"], body["loraRank"], body["maxContextLength"]) == (2, 1e-4, 8, 4096)
    assert body["outputModel"].startswith(f"accounts/{fake.account}/models/biotune-glucose-")
    ds = job["training_file"].rsplit("/", 1)[-1]
    assert fake.datasets[ds]["state"] == "READY" and fake.datasets[ds]["bytes"] == train.stat().st_size
    upload = next(r for r in fake.requests if r["path"].endswith(":upload"))
    assert upload["path"] == f"/v1/accounts/{fake.account}/datasets/{ds}:upload"
    status = providers.wait(conn, job, interval=0)
    assert status["state"] == "JOB_STATE_COMPLETED" and status["model_id"] == body["outputModel"]
    assert status["events"] and "JOB_STATE_COMPLETED" in status["events"][-1]["message"]
    assert providers.chat(conn, status["model_id"], [{"role": "user", "content": "x"}]).startswith("Based on")
    assert any(r["path"] == "/inference/v1/chat/completions" for r in fake.requests)


def test_fireworks_failure_and_cancel(fake, files):
    conn = _fireworks(fake)
    fake.job_outcome["*"] = "failed"
    job = providers.submit(conn, files[0], base_model="accounts/fireworks/models/m")
    with pytest.raises(ProviderJobFailed) as exc:
        providers.wait(conn, job, interval=0)
    assert exc.value.what == fake.failure_message
    fake.job_outcome["*"] = "running"
    job = providers.submit(conn, files[0], base_model="accounts/fireworks/models/m", key="other")
    assert providers.cancel(conn, job)["state"] == "JOB_STATE_CANCELLED"
    status = providers.poll(conn, job)
    assert status["done"] and status["state"] == "JOB_STATE_CANCELLED" and not status["succeeded"]


def test_provider_pyfunc_calls_the_tuned_model(fake, monkeypatch):
    from types import SimpleNamespace

    import pandas as pd

    from biotune.glucose.pyfunc import ProviderChatPyfunc

    model = ProviderChatPyfunc()
    model.load_context(SimpleNamespace(artifacts={}, model_config={
        "provider": "fireworks", "base_url": fake.url, "account_id": fake.account, "conn_id": "biotune_llm_provider",
        "model_id": "accounts/acct-1/models/biotune-glucose"}))
    monkeypatch.setenv("AIRFLOW_CONN_BIOTUNE_LLM_PROVIDER", json.dumps(
        {"conn_type": "http", "host": fake.url, "password": KEY,
         "extra": {"provider": "fireworks", "account_id": fake.account}}))
    out = model.predict(None, pd.DataFrame({"prompt": ["a", "b"]}))
    assert len(out) == 2 and "accounts/acct-1/models/biotune-glucose" in out[0]
    monkeypatch.setenv("AIRFLOW_CONN_BIOTUNE_LLM_PROVIDER", json.dumps(
        {"host": fake.url, "password": KEY, "extra": {"provider": "openai"}}))
    with pytest.raises(ProviderError, match="tuned on fireworks"):
        model.predict(None, ["a"])
