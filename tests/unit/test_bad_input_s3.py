"""Bad input class: partial or look-alike objects on S3 (issue 10, item 7).

"Is this day's batch landed" is an exact key match: a partial upload (``batch.parquet.uploading``),
a longer name or a "folder" of that name never makes ``batch.parquet`` look landed.
"""

from __future__ import annotations

import pandas as pd
import pytest

from biotune import storage
from biotune.errors import MissingInputError, StorageError

moto = pytest.importorskip("moto")


@pytest.fixture
def lake(monkeypatch):
    for var, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_DEFAULT_REGION": "us-east-1", "BIOTUNE_LAKE": "s3://lake/biotune"}.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with moto.mock_aws():
        import boto3

        client = boto3.client("s3")
        client.create_bucket(Bucket="lake")
        yield client


@pytest.mark.parametrize("other", ["batch.parquet.uploading", "batch.parquet.tmp", "batch.parquet_part0",
                                   "batch.parquet/part-0.parquet", "batch.parquet.1700000000.partial"])
def test_a_partial_upload_does_not_make_the_batch_look_landed(lake, other):
    day = storage.lake_path("landing", "mood", "2026-03-01")
    lake.put_object(Bucket="lake", Key=f"biotune/landing/mood/2026-03-01/{other}", Body=b"PAR1 half")
    batch = storage.join(day, "batch.parquet")
    assert storage.exists(batch) is False
    with pytest.raises(MissingInputError):
        storage.read_bytes(batch)
    assert storage.exists(storage.join(day, other))
    assert storage.exists_prefix(day)


def test_the_landed_batch_is_found_exactly(lake):
    batch = storage.lake_path("landing", "mood", "2026-03-02", "batch.parquet")
    storage.write_parquet(pd.DataFrame({"a": [1]}), batch)
    assert storage.exists(batch)
    assert not storage.exists(batch[: -len(".parquet")])  # a prefix of the key is not the key
    assert not storage.exists_prefix(batch)  # an object is not a folder
    assert storage.exists_prefix(storage.lake_path("landing", "mood"))
    assert not storage.exists_prefix(storage.lake_path("landing", "activity"))


def test_folder_uris_ask_for_a_prefix(lake):
    lake.put_object(Bucket="lake", Key="biotune/reports/x.html", Body=b"x")
    assert storage.exists(storage.lake_path("reports") + "/")
    assert not storage.exists(storage.lake_path("nothing") + "/")


def test_a_missing_bucket_is_a_storage_error(lake, monkeypatch):
    with pytest.raises(StorageError, match="does not exist") as err:
        storage.read_bytes("s3://no-such-bucket/x.parquet")
    assert not err.value.bad_input  # infrastructure: retried, not failed fast


def test_quarantine_of_a_partial_upload_moves_only_that_object(lake):
    day = storage.lake_path("landing", "mood", "2026-03-03")
    storage.write_bytes(storage.join(day, "batch.parquet"), b"complete")
    storage.write_bytes(storage.join(day, "batch.parquet.uploading"), b"partial")
    moved = storage.quarantine(storage.join(day, "batch.parquet.uploading"), "partial upload")
    assert storage.read_bytes(moved) == b"partial"
    assert storage.read_bytes(storage.join(day, "batch.parquet")) == b"complete"
    assert not storage.exists(storage.join(day, "batch.parquet.uploading"))
