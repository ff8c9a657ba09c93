"""glucose_llm_finetune end to end with dag.test(): local LoRA, both provider APIs (fake server), bad input.

The runs are small (a tiny model, a few epochs) and gated at 0 where the mechanism is what is
checked; whether the shipped spec's model reaches its real gate is measured by
``bench/bench_glucose.py --quality`` (figures in bench/results/glucose.json).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from dagtest import ROOT, load_dag, task_states

sys.path.insert(0, str(ROOT / "tests" / "unit"))
from glucose_fake_provider import KEY, FakeProvider  # noqa: E402

pytestmark = pytest.mark.slow

TINY_BASE = {"arch": "llama", "vocab_size": 1024, "hidden_size": 32, "num_layers": 1, "num_heads": 2,
             "intermediate_size": 64, "pretrain_epochs": 1, "max_position": 512}


def _specs(directory: Path, kind: str, provider: str | None = None) -> Path:
    """The shipped glucose spec, shrunk (tiny model) and gated at 0, or turned into a provider spec."""
    spec = yaml.safe_load((ROOT / "models" / "glucose-coach-lora.yaml").read_text())
    spec["gate"] = {"metric": "rouge_l", "min_absolute": 0.0, "min_improvement": 0.0, "minimums": {}}
    if kind == "lora":
        spec["architecture"]["params"]["base"] = TINY_BASE
        spec["architecture"]["params"]["lora"] = {"r": 4, "alpha": 8, "max_length": 512}
        spec["training"]["epochs"] = 2
    else:
        spec["name"] = "glucose-coach-provider"
        spec["architecture"] = {"kind": "provider", "params": {
            "base_model": "gpt-4o-mini-2024-07-18" if provider == "openai" else "accounts/fireworks/models/gpt-oss-20b",
            "suffix": "glucose"}}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{spec['name']}.yaml").write_text(yaml.safe_dump(spec))
    return directory


@pytest.fixture
def glucose_home(home, airflow_db, tmp_path):
    return home


def _source(tmp_path, patients=12) -> str:
    from biotune.family import get_family

    return get_family("glucose").demo_training_data(str(tmp_path / "landing"), patients, seed=2)["source"]


def test_local_lora_to_a_champion(glucose_home, tmp_path, monkeypatch):
    from biotune import registry

    monkeypatch.setenv("BIOTUNE_SPECS", str(_specs(tmp_path / "specs", "lora")))
    dag = load_dag("glucose_llm_finetune")
    run = dag.test(run_conf={"source": _source(tmp_path), "epochs": 2, "pretrain_epochs": 1})
    assert str(run.state) == "success", task_states(run)
    champ = registry.champion("glucose-coach-lora")
    assert champ is not None and champ.tags["dag_run_id"] == run.run_id
    for key in ("test_bleu", "test_rouge_l", "test_format_rate", "test_safety_rate"):
        assert key in champ.metrics
    client = registry.configure()
    info = client.get_run(champ.run_id)
    assert info.inputs.dataset_inputs, "the training dataset is not logged"
    assert {"base_val_rouge_l", "base_val_format_rate", "tokens_per_s"} <= set(info.data.params)  # base beside tuned
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model("models:/glucose-coach-lora@champion")
    import pandas as pd

    out = model.predict(pd.DataFrame({"prompt": ["Frequent lows (<70): 6.0%"]}), params={"max_new_tokens": 5})
    assert len(out) == 1 and isinstance(out[0], str)


def _store_connection(_=None, **fields) -> None:
    """Put biotune_llm_provider into Airflow's metadata database (None: remove it)."""
    from airflow.models import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(Connection).filter(Connection.conn_id == "biotune_llm_provider").delete()
        if fields:
            session.add(Connection(conn_id="biotune_llm_provider", conn_type="http", host=fields["host"],
                                   password=fields["password"], extra=json.dumps(fields["extra"])))


@pytest.mark.parametrize("provider", ["openai", "fireworks"])
def test_provider_job_deferred_to_a_champion(provider, glucose_home, tmp_path, monkeypatch):
    from biotune import registry

    monkeypatch.setenv("BIOTUNE_SPECS", str(_specs(tmp_path / "specs", "provider", provider)))
    with FakeProvider() as fake:
        fake.steps_to_finish = 1  # done at the trigger's first poll (it polls every 30 s)
        fake.fail_next[("POST", "/v1/")] = [429]  # the first call is rate-limited: retried, honouring Retry-After
        extra = {"provider": provider, **({"account_id": fake.account} if provider == "fireworks" else {})}
        if provider == "openai":  # the connection as an environment variable ...
            monkeypatch.setenv("AIRFLOW_CONN_BIOTUNE_LLM_PROVIDER", json.dumps(
                {"conn_type": "http", "host": fake.url, "password": KEY, "extra": extra}))
        else:  # ... or kept in Airflow's database (Admin > Connections), read in the task and on the triggerer
            monkeypatch.delenv("AIRFLOW_CONN_BIOTUNE_LLM_PROVIDER", raising=False)
            _store_connection(host=fake.url, password=KEY, extra=extra)
        dag = load_dag("glucose_llm_finetune")
        try:
            run = dag.test(run_conf={"source": _source(tmp_path, 10), "epochs": 2})
        finally:
            _store_connection(None)
        states = task_states(run)
        assert str(run.state) == "success", states
        assert states["wait_for_training"] == ["success"]
        assert len(fake.jobs) == 1 and all(r["auth_ok"] for r in fake.requests if r["path"] != "/inference")
        champ = registry.champion("glucose-coach-provider")
        client = registry.configure()
        tags = client.get_run(champ.run_id).data.tags
        assert tags["provider_job_id"] == next(iter(fake.jobs)) and tags["provider_model_id"]
        assert KEY not in json.dumps(tags) and KEY not in json.dumps(client.get_run(champ.run_id).data.params)
        artifacts = {a.path for a in client.list_artifacts(champ.run_id)}
        assert "provider_job" in artifacts
        events = json.loads(Path(client.download_artifacts(champ.run_id, "provider_job/events.json")).read_text())
        assert events["events"] and events["job_id"] == tags["provider_job_id"]


def test_failed_provider_job_fails_the_run_with_its_message(glucose_home, tmp_path, monkeypatch):
    from biotune import registry

    monkeypatch.setenv("BIOTUNE_SPECS", str(_specs(tmp_path / "specs", "provider", "openai")))
    with FakeProvider() as fake:
        fake.steps_to_finish = 1
        fake.job_outcome["*"] = "failed"
        monkeypatch.setenv("AIRFLOW_CONN_BIOTUNE_LLM_PROVIDER", json.dumps(
            {"conn_type": "http", "host": fake.url, "password": KEY, "extra": {"provider": "openai"}}))
        run = load_dag("glucose_llm_finetune").test(run_conf={"source": _source(tmp_path, 10)})
        states = task_states(run)
        assert str(run.state) == "failed" and states["wait_for_training"] == ["failed"], states
        assert registry.list_models() == []


def test_bad_jsonl_is_quarantined_and_nothing_trained(glucose_home, tmp_path, monkeypatch):
    from biotune import registry, storage

    monkeypatch.setenv("BIOTUNE_SPECS", str(_specs(tmp_path / "specs", "lora")))
    source = Path(_source(tmp_path))
    lines = source.read_text().splitlines()
    lines[3] = lines[3].replace('"role": "system"', '"role": "robot"')
    source.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    run = load_dag("glucose_llm_finetune").test(run_conf={"source": str(source)})
    states = task_states(run)
    assert str(run.state) == "failed" and states["check_and_split"] == ["failed"], states
    assert not source.exists()
    moved = list(Path(storage.lake_path("quarantine")).rglob("examples.jsonl"))
    assert len(moved) == 1
    report = json.loads((moved[0].parent / "check_report.json").read_text())
    codes = {(e["line"], e["code"]) for e in report["errors"]}
    assert (4, "unrecognized_role") in codes and (1, "crlf") in codes
    assert registry.list_models() == []
