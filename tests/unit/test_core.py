"""core and services without MLflow: specs, storage (local and S3), validation, policy."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from biotune import policy, storage, validation
from biotune.errors import DataValidationError, SpecError, StorageError
from biotune.specs import Gate, all_specs, load_spec

GOOD = """
name: mood-depression-xgb
family: mood
task: depression
architecture: {kind: xgboost}
gate: {metric: auc, min_absolute: 0.6}
retraining: {dag_id: mood_population_finetune}
"""


def test_repo_specs_all_load():
    specs = all_specs()
    assert specs, "models/ holds no spec"
    assert all(s.source.name == f"{s.name}.yaml" for s in specs)


def test_spec_unknown_field_names_file_and_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace("min_absolute: 0.6", "min_absolute: 0.6, min_absolut: 1"))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert "gate.min_absolut" in str(err.value) and str(path) in str(err.value)


def test_spec_wrong_type_names_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD + "training: {epochs: many}\n")
    with pytest.raises(SpecError, match="training.epochs"):
        load_spec(path)


def test_spec_name_convention(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace("name: mood-depression-xgb", "name: depression"))
    with pytest.raises(SpecError, match="<family>-<task>-<arch>"):
        load_spec(path)


def test_atomic_write_and_quarantine_keeps_file(home, tmp_path):
    target = storage.lake_path("landing", "x", "data.csv")
    storage.write_text(target, "a,b\n1,2\n")
    assert Path(target).read_text() == "a,b\n1,2\n"
    assert not [p for p in Path(target).parent.iterdir() if p.name.endswith(".tmp")]
    moved = storage.quarantine(target, "bad rows", run_id="manual__1")
    assert not Path(target).exists() and Path(moved).read_text() == "a,b\n1,2\n"
    reason = json.loads((Path(moved).parent / "REASON.json").read_text())
    assert reason["reason"] == "bad rows" and reason["source"] == target


def test_s3_roundtrip_and_quarantine(monkeypatch):
    moto = pytest.importorskip("moto")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("BIOTUNE_LAKE", "s3://lake/biotune")
    with moto.mock_aws():
        import boto3

        boto3.client("s3").create_bucket(Bucket="lake")
        uri = storage.lake_path("landing", "t", "a.parquet")
        storage.write_parquet(pd.DataFrame({"a": [1, 2]}), uri)
        assert storage.exists(uri) and storage.read_parquet(uri)["a"].tolist() == [1, 2]
        assert storage.listdir(storage.lake_path("landing")) == ["t"]
        moved = storage.quarantine(uri, "test")
        assert not storage.exists(uri) and storage.exists(moved)


def test_s3_without_credentials_names_the_variable(monkeypatch):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(StorageError, match="AWS_ACCESS_KEY_ID"):
        storage.read_bytes("s3://bucket/key")


def test_validation_failure_quarantines_with_report(home, tmp_path, monkeypatch):
    suites = tmp_path / "expectations"
    suites.mkdir()
    (suites / "demo.json").write_text(json.dumps({"name": "demo", "expectations": [
        {"type": "expect_column_to_exist", "kwargs": {"column": "SEQN"}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "age", "min_value": 0, "max_value": 120}},
    ]}))
    monkeypatch.setenv("BIOTUNE_EXPECTATIONS", str(suites))
    source = storage.lake_path("landing", "demo.csv")
    storage.write_text(source, "SEQN,age\n1,30\n2,150\n")
    good = validation.run_suite(pd.DataFrame({"SEQN": [1], "age": [30]}), "demo", where="inline")
    assert good.success and good.evaluated == 2
    with pytest.raises(DataValidationError) as err:
        validation.validate_or_quarantine(pd.read_csv(source), "demo", source, run_id="r1")
    assert "age" in str(err.value) and "150" in str(err.value)
    assert not Path(source).exists()
    qdir = next(Path(storage.lake_path("quarantine")).iterdir())
    assert {"demo.csv", "REASON.json", "validation_demo.json", "validation_demo.html"} <= {p.name for p in qdir.iterdir()}


def test_unknown_expectation_type_is_a_spec_error(tmp_path, monkeypatch):
    (tmp_path / "bad.json").write_text(json.dumps({"name": "bad", "expectations": [
        {"type": "expect_the_impossible", "kwargs": {}}]}))
    monkeypatch.setenv("BIOTUNE_EXPECTATIONS", str(tmp_path))
    with pytest.raises(SpecError, match="expect_the_impossible"):
        validation.run_suite(pd.DataFrame({"a": [1]}), "bad", where="inline")


@pytest.mark.parametrize("challenger,champion,yes", [
    (0.70, None, True), (0.55, None, False), (0.72, 0.70, True), (0.705, 0.70, False), (0.75, 0.80, False),
])
def test_gate(challenger, champion, yes):
    decision = policy.gate(Gate(metric="auc", min_absolute=0.6, min_improvement=0.01), challenger, champion)
    assert decision.yes is yes and decision.reasons


def test_gate_lower_is_better():
    g = Gate(metric="rmse", higher_is_better=False, min_absolute=1.0, min_improvement=0.1)
    assert policy.gate(g, 0.5, 0.7).yes and not policy.gate(g, 0.65, 0.7).yes and not policy.gate(g, 1.5, None).yes


def test_s3_directory_round_trip(tmp_path, monkeypatch):
    moto = pytest.importorskip("moto")
    for var, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    src = tmp_path / "bundle"
    (src / "sub").mkdir(parents=True)
    (src / "model.pt").write_bytes(b"weights")
    (src / "sub" / "scaler.npz").write_bytes(b"scaler")
    with moto.mock_aws():
        import boto3

        boto3.client("s3").create_bucket(Bucket="lake")
        storage.upload_dir(str(src), "s3://lake/runs/r1/bundle")
        out = Path(storage.download_dir("s3://lake/runs/r1/bundle", str(tmp_path / "back")))
    assert (out / "model.pt").read_bytes() == b"weights"
    assert (out / "sub" / "scaler.npz").read_bytes() == b"scaler"
