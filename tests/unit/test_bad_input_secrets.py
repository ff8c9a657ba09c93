"""Bad input class: credentials inside URIs and messages (issue 10, item 8).

One redaction (``biotune.errors.redact``) is applied by BiotuneError itself to what / where /
fix (and DataValidationError's failures), so no typed error can carry a credential, whoever
raises it. A planted secret is grepped for in every message, report and reason file.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pandas as pd
import pytest

from biotune import errors, storage, validation
from biotune.errors import (BiotuneError, DataValidationError, DriftError, InputFormatError, MissingInputError,
                            RegistryError, SpecError, StorageError, WeightsError, redact)

SECRET = "hunter2-Pl4nted-S3cret"

CARRIERS = [
    f"http://mlflow:{SECRET}@tracking.example:5000",
    f"postgresql+psycopg2://biotune:{SECRET}@db:5432/mlflow",
    f"https://{SECRET}@github.com/org/repo.git",
    f"redis://:{SECRET}@redis:6379/0",
    f"http://user:{SECRET[:4]}@{SECRET[4:]}@host/x",  # an '@' inside the password
    f"https://store/report.html?X-Amz-Signature={SECRET}&X-Amz-Date=20260101",
    f"https://hooks.example/alert?token={SECRET}",
    f"AWS_SECRET_ACCESS_KEY={SECRET}",
    f"MLFLOW_TRACKING_PASSWORD={SECRET} mlflow server",
    f'{{"api_key": "{SECRET}", "model": "x"}}',
    f"Authorization: Bearer {SECRET}",
]


@pytest.mark.parametrize("text", CARRIERS)
def test_redact_hides_the_secret_and_keeps_the_rest(text):
    out = redact(text)
    assert SECRET not in out and SECRET[4:] not in out and "***" in out
    assert redact(out) == out  # idempotent


@pytest.mark.parametrize("plain", ["s3://lake/biotune/landing/mood/2026-01-01/batch.parquet",
                                   "sqlite:////home/x/.biotune/mlflow/mlflow.db", "max_tokens=512 design=3",
                                   "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", "file:///tmp/a.html",
                                   "mailto:ops@example.org", "column PAXMTSM: 3 unexpected"])
def test_redact_leaves_ordinary_text_alone(plain):
    assert redact(plain) == plain


@pytest.mark.parametrize("cls", [BiotuneError, SpecError, InputFormatError, MissingInputError, WeightsError,
                                 DriftError, RegistryError, StorageError, DataValidationError,
                                 errors.ConsistencyError, errors.CohortError])
@pytest.mark.parametrize("carrier", CARRIERS[:3] + CARRIERS[5:8])
def test_no_typed_error_can_carry_a_credential(cls, carrier):
    exc = cls(f"cannot reach {carrier}", where=f"MLFLOW_TRACKING_URI={carrier}", fix=f"check {carrier}")
    if isinstance(exc, DataValidationError):
        exc = cls(f"bad {carrier}", where=carrier, fix=carrier, failures=[f"row from {carrier}"])
    for text in (str(exc), repr(exc), exc.what, exc.where, exc.fix, *getattr(exc, "failures", [])):
        assert SECRET not in text
    again = pickle.loads(pickle.dumps(exc))  # what crosses to another process (Celery, XCom)
    assert SECRET not in str(again) and type(again) is cls


def test_quarantine_reason_and_validation_report_hold_no_secret(home, tmp_path, monkeypatch):
    (tmp_path / "s.json").write_text(json.dumps({"name": "s", "expectations": [
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "x", "min_value": 0, "max_value": 1}}]}))
    monkeypatch.setenv("BIOTUNE_EXPECTATIONS", str(tmp_path))
    source = storage.lake_path("landing", "s", "data.csv")
    storage.write_text(source, "x\n5\n")
    frame = pd.DataFrame({"x": [5.0], "origin": [f"https://u:{SECRET}@host/file.csv"]})
    outcome = validation.run_suite(frame, "s", where=f"https://u:{SECRET}@host/file.csv",
                                   report_dir=str(tmp_path / "reports"))
    assert SECRET not in Path(outcome.report_html).read_text()
    moved = storage.quarantine(source, reason=f"pulled from https://u:{SECRET}@host/file.csv")
    reason = (Path(moved).parent / "REASON.json").read_text()
    assert SECRET not in reason and "u:***@host" in reason


def test_storage_errors_from_a_credentialed_endpoint_are_redacted(monkeypatch):
    pytest.importorskip("boto3")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://minio:{SECRET}@:not-a-port")
    with pytest.raises(StorageError) as err:
        storage.exists("s3://bucket/key.parquet")
    assert SECRET not in str(err.value)
