"""The glucose family on the contract: check-and-split, batches, metrics, the provider architecture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from biotune.errors import BiotuneError, DataValidationError, InputFormatError
from biotune.family import RemoteJob, get_family

from glucose_fake_provider import KEY, FakeProvider  # noqa: E402  (tests/unit is on sys.path)


@pytest.fixture(scope="module")
def family():
    return get_family("glucose")


@pytest.fixture(scope="module")
def generated(family, tmp_path_factory):
    return family.demo_training_data(str(tmp_path_factory.mktemp("glucose_fam")), 16, seed=4)["source"]


@pytest.fixture
def source(home, generated, tmp_path):
    """A fresh copy per test (a failing check moves the file away)."""
    import shutil

    return shutil.copy(generated, tmp_path / "examples.jsonl")


def test_family_is_registered_and_light(family):
    assert family.fine_tune_dag_id == "glucose_llm_finetune" and set(family.architectures) == {"lora", "provider"}
    assert family.batch_uri("2026-10-01").endswith("landing/glucose/2026-10-01/prompts.jsonl")
    params = family.dag_params()
    assert {"source", "epochs", "pretrain_epochs", "base_model_dir"} == set(params)


def test_prepare_checks_and_splits_by_patient(family, source, tmp_path):
    from biotune import storage
    from biotune.glucose import pipeline

    ds = family.prepare({"source": source}, str(tmp_path / "run"), "manual__t")
    assert ds["examples"] == 48 and sum(ds["counts"].values()) == 48 and min(ds["counts"].values()) > 0
    table = pipeline.load_examples(ds)
    assert (table.groupby("group").split.nunique() == 1).all()
    assert set(pipeline.FEATURES) <= set(table.columns) and table["time_in_range"].between(0, 100).all()
    for split, uri in ds["files"].items():
        lines = storage.read_text(uri).splitlines()
        assert len(lines) == ds["counts"][split] and json.loads(lines[0])["messages"][-1]["role"] == "assistant"
    report = storage.read_json(ds["check_report"])
    assert report["ok"] and report["n_examples"] == 48
    spec = family.specs()[0]
    val = family.split(spec, ds, "val")
    assert len(val) == ds["counts"]["val"] and list(val.x.columns) == ["prompt", "messages"]
    assert val.y[0].startswith("Based on your data") and json.loads(val.x["messages"][0])[-1]["role"] == "user"
    ref = family.reference_frame(spec, ds)
    assert list(ref.columns) == list(pipeline.FEATURES) and len(ref) == ds["counts"]["train"]
    again = family.prepare({"source": str(Path(source).parent)}, str(tmp_path / "run2"), "manual__t2")  # a folder
    assert again["source"] == str(source)
    assert pipeline.load_examples(again)["split"].tolist() == table["split"].tolist()  # deterministic


def test_a_bad_file_is_quarantined_with_its_report(family, source, tmp_path):
    from biotune import storage

    lines = Path(source).read_text().splitlines()
    Path(source).write_text("\n".join(lines[:5] + ["{broken"] + lines[5:]) + "\n")
    with pytest.raises(DataValidationError) as exc:
        family.prepare({"source": source}, str(tmp_path / "run"), "manual__bad")
    assert any(f.startswith("line 6: invalid_json") for f in exc.value.failures) and exc.value.bad_input
    assert not Path(source).exists()
    moved = list(Path(storage.lake_path("quarantine")).rglob("examples.jsonl"))
    assert len(moved) == 1 and (moved[0].parent / "check_report.json").exists()
    assert (moved[0].parent / "REASON.json").exists()


def test_batches_validation_and_outputs(family, home):
    from biotune import scoring, storage
    from biotune.glucose.answers import format_ok

    path = family.demo_batch("2026-10-01", 12, seed=2)
    batch = family.read_batch(path)
    assert len(batch) == 12 and len(set(batch.ids)) == 12
    spec = family.specs()[0]
    x = family.batch_inputs(spec, batch)
    assert list(x.columns) == ["prompt", "messages"] and x["prompt"][0].startswith("Patient Profile:")
    feats = family.drift_features(spec, batch)
    assert feats.shape == (12, 8) and feats.dtypes.eq("float64").all()
    labels = family.batch_labels(spec, batch)
    assert sum(lab is not None for lab in labels) == 4  # 30% of the rows carry a reviewed answer
    assert scoring.validate_batch("glucose", "2026-10-01", run_id="t")["status"] == "ok"
    shifted = family.read_batch(family.demo_batch("2026-10-02", 12, seed=2, shifted=True))
    assert family.drift_features(spec, shifted)["lows_pct"].mean() > feats["lows_pct"].mean()
    cats = family.output_categories(spec, [labels[0], "no format"])
    assert list(cats) == ["well_formed", "malformed"] and format_ok(labels[0])
    bad = family.batch_uri("2026-10-03")
    storage.write_bytes(bad, b"this is not a batch file")
    with pytest.raises(BiotuneError):
        scoring.validate_batch("glucose", "2026-10-03", run_id="t")
    assert not storage.exists(bad) and list(Path(storage.lake_path("quarantine")).rglob("prompts.jsonl"))
    storage.write_text(family.batch_uri("2026-10-04"), '{"id": "a", "messages": "hi"}\n')
    with pytest.raises(InputFormatError, match="line 1"):
        family.read_batch(family.batch_uri("2026-10-04"))


def test_generation_metrics_from_references_alone(family, source):
    rows = [json.loads(line) for line in Path(source).read_text().splitlines()]
    refs = [r["messages"][-1]["content"] for r in rows]
    perfect = family.generation_metrics(refs, refs)
    assert perfect["rouge_l"] == pytest.approx(1.0) and perfect["format_rate"] == 1.0 and perfect["safety_rate"] == 1.0
    bland = "1. Title: Walk\nDescription: Walk more.\nCategory: activity\nPriority: low\nAction: Walk\nTiming: Daily"
    low = family.generation_metrics(refs, [bland] * len(refs))
    needs = np.mean(["15 g of fast-acting" in r for r in refs])
    assert 0 < needs < 1 and low["safety_rate"] == pytest.approx(1 - needs) and low["format_rate"] == 1.0


@pytest.mark.parametrize("provider", ["openai", "fireworks"])
def test_provider_architecture_submit_wait_collect_predict(provider, family, source, tmp_path, monkeypatch):
    import yaml

    from biotune.glucose import providers
    from biotune.specs import load_spec

    monkeypatch.setattr(providers, "_sleep", lambda s: None)
    ds = family.prepare({"source": source}, str(tmp_path / "run"), "manual__p")
    spec_dict = yaml.safe_load(Path(__file__).resolve().parents[2].joinpath("models", "glucose-coach-lora.yaml").read_text())
    spec_dict.update(name="glucose-coach-provider", architecture={"kind": "provider", "params": {
        "base_model": "gpt-4o-mini-2024-07-18" if provider == "openai" else "accounts/fireworks/models/gpt-oss-20b",
        "hyperparameters": {"learning_rate_multiplier": 0.5} if provider == "openai" else {"lora_rank": 8}}})
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec_dict))
    spec = load_spec(tmp_path / "spec.yaml")
    arch = family.architecture("provider")
    with FakeProvider() as fake:
        extra = {"provider": provider, **({"account_id": fake.account} if provider == "fireworks" else {})}
        monkeypatch.setenv("AIRFLOW_CONN_BIOTUNE_LLM_PROVIDER", json.dumps(
            {"conn_type": "http", "host": fake.url, "password": KEY, "extra": extra}))
        work = tmp_path / "work"
        work.mkdir()
        remote = arch.train(spec, family.split(spec, ds, "train"), family.split(spec, ds, "val"), work,
                            prepared=None, params={})
        assert isinstance(remote, RemoteJob) and KEY not in json.dumps(remote.job) and remote.job["id"]
        body = fake.jobs[remote.job["job_id"]]["body"]
        if provider == "openai":
            assert body["method"]["supervised"]["hyperparameters"] == {
                "learning_rate_multiplier": 0.5, "n_epochs": spec.training.epochs, "batch_size": spec.training.batch_size}
        else:
            assert body["loraRank"] == 8 and body["epochs"] == spec.training.epochs
        statuses = [arch.poll(remote.job) for _ in range(3)]
        assert statuses[-1].done and statuses[-1].succeeded and len(statuses[-1].events) >= len(statuses[0].events) > 0
        out = tmp_path / "model"
        out.mkdir()
        trained = arch.collect(remote.job, out)
        assert trained.params["provider_model_id"] and (out / "provider_model.json").exists()
        assert KEY not in (out / "provider_model.json").read_text()
        answers = arch.predict(arch.load(out), family.split(spec, ds, "test").x.head(2))
        assert len(answers) == 2 and trained.params["provider_model_id"] in answers[0]
        fake.job_outcome["*"] = "running"
        again = arch.train(spec, family.split(spec, ds, "val"), family.split(spec, ds, "test"), work,
                           prepared=None, params={})
        arch.cancel(again.job)
        assert arch.poll(again.job).state in ("cancelled", "JOB_STATE_CANCELLED")


def test_malformed_answers_are_the_error_rate_the_retraining_rule_judges(family, home):
    """A generation model has no wrong class: its error is a malformed answer, judged on every answer
    with no reference needed, at evaluation (test_error_rate) and in production (the rule's
    'performance degraded' condition can fire for it)."""
    import datetime as dt

    from biotune.monitoring.measure import measure, reference_error_rate
    from biotune.policy import RetrainFacts, retraining_decision

    spec = family.specs()[0]
    good = "1. Title: Walk\nDescription: Walk more.\nCategory: activity\nPriority: low\nAction: Walk\nTiming: Daily"
    errors = family.output_errors(spec, [good, "no format", good, ""])
    assert list(errors) == [False, True, False, True]

    batch = family.read_batch(family.demo_batch("2026-10-01", 12, seed=2))
    feats = family.drift_features(spec, batch)
    outputs = [good] * 9 + ["bad"] * 3
    row = measure(feats, feats, spec, proba=outputs, prediction=family.output_categories(spec, outputs),
                  labels=family.batch_labels(spec, batch), output_errors=family.output_errors(spec, outputs))
    assert row["error_rate"] == pytest.approx(0.25)
    assert reference_error_rate({"test_error_rate": 0.02, "test_fp": 9, "test_fn": 9, "test_n": 10}) == 0.02

    day0 = dt.date(2026, 10, 1)
    rows = [{"model": spec.name, "model_version": "1", "date": (day0 + dt.timedelta(days=i)).isoformat(),
             "status": "ok", "n_rows": 12, "drifted_features": 8, "mean_confidence": None, "labeled_n": 4,
             "error_rate": 0.25, "reference_error_rate": 0.02} for i in range(3)]
    spec = spec.model_copy(update={"retraining": spec.retraining.model_copy(
        update={"min_new_labels": 0, "min_days_since_last": 0, "consecutive_batches": 3, "min_drifted_features": 1})})
    decision = retraining_decision(rows, spec, RetrainFacts(as_of=day0 + dt.timedelta(days=2), test_error_rate=0.02))
    performance = [r for r in decision.reasons if "performance" in r]
    assert performance and performance[0].startswith("yes") and "on 36 answers" in performance[0], decision.reasons
