"""One API over the lake on local disk or S3 (boto3).

Paths are strings: a local path or ``s3://bucket/key``. Writes are atomic: local writes go
to a temp file in the same directory and are renamed; S3 PUTs are atomic by nature.
``quarantine`` moves a bad input aside with a reason file beside it; it never deletes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from biotune import settings
from biotune.errors import MissingInputError, StorageError


def is_s3(uri: str) -> bool:
    return str(uri).startswith("s3://")


def join(base: str, *parts: str) -> str:
    base = str(base)
    if is_s3(base):
        return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])
    return str(Path(base, *parts))


def lake_path(*parts: str) -> str:
    """A path inside the lake, e.g. ``lake_path("landing", "nhanes", "2013-2014")``."""
    return join(settings.lake(), *parts)


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key


def _s3():
    import boto3
    from botocore.exceptions import NoCredentialsError  # noqa: F401  (import check)

    session = boto3.session.Session()
    if session.get_credentials() is None:
        raise StorageError(
            "no S3 credentials found for the lake",
            where=f"BIOTUNE_LAKE={settings.lake()}",
            fix="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL for a "
            "non-AWS object store) in the environment or an Airflow connection",
        )
    return session.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)


def _s3_call(fn, uri: str, *args, **kwargs):
    from botocore.exceptions import ClientError, EndpointConnectionError

    try:
        return fn(*args, **kwargs)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"):
            raise StorageError(
                f"S3 refused the credentials ({code})", where=uri,
                fix="check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for this bucket",
            ) from exc
        if code in ("NoSuchKey", "404"):
            raise MissingInputError(f"no object at {uri}", where=uri, fix="check the path") from exc
        raise StorageError(f"S3 error {code}: {exc}", where=uri, fix="see the S3 error above") from exc
    except EndpointConnectionError as exc:
        raise StorageError(
            "cannot reach the S3 endpoint", where=uri,
            fix="check AWS_ENDPOINT_URL and that the object store is running",
        ) from exc


def exists(uri: str) -> bool:
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        client = _s3()
        resp = _s3_call(client.list_objects_v2, uri, Bucket=bucket, Prefix=key, MaxKeys=1)
        return resp.get("KeyCount", 0) > 0
    return Path(uri).exists()


def write_bytes(uri: str, data: bytes) -> str:
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        _s3_call(_s3().put_object, uri, Bucket=bucket, Key=key, Body=data)
        return uri
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return str(path)


def read_bytes(uri: str) -> bytes:
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        return _s3_call(_s3().get_object, uri, Bucket=bucket, Key=key)["Body"].read()
    path = Path(uri)
    if not path.exists():
        raise MissingInputError(f"no file at {uri}", where=uri, fix="check the path or run the step that writes it")
    return path.read_bytes()


def write_text(uri: str, text: str) -> str:
    return write_bytes(uri, text.encode("utf-8"))


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def write_json(uri: str, obj) -> str:
    return write_text(uri, json.dumps(obj, indent=2, sort_keys=True, default=str))


def read_json(uri: str):
    return json.loads(read_text(uri))


@contextlib.contextmanager
def atomic_local_path(uri: str, suffix: str = "") -> Iterator[str]:
    """Yield a local temp path to write to; on success it becomes ``uri`` (local or S3)."""
    if is_s3(uri):
        with tempfile.TemporaryDirectory() as tmpdir:
            tmp = str(Path(tmpdir) / ("out" + suffix))
            yield tmp
            upload_file(tmp, uri)
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix or ".tmp")
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def upload_file(local: str, uri: str) -> str:
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        _s3_call(_s3().upload_file, uri, local, bucket, key)
        return uri
    return write_bytes(uri, Path(local).read_bytes())


@contextlib.contextmanager
def local_copy(uri: str) -> Iterator[str]:
    """A local path holding the object at ``uri`` (the file itself when local)."""
    if not is_s3(uri):
        if not Path(uri).exists():
            raise MissingInputError(f"no file at {uri}", where=uri, fix="check the path or run the step that writes it")
        yield uri
        return
    with tempfile.TemporaryDirectory() as tmpdir:
        local = str(Path(tmpdir) / Path(uri).name)
        bucket, key = _split_s3(uri)
        _s3_call(_s3().download_file, uri, bucket, key, local)
        yield local


def listdir(uri: str) -> list[str]:
    """Names directly under a directory/prefix, sorted."""
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        prefix = key.rstrip("/") + "/"
        paginator = _s3().get_paginator("list_objects_v2")
        names: set[str] = set()
        for page in _s3_call(lambda: list(paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")), uri):
            names.update(p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", []))
            names.update(o["Key"][len(prefix):] for o in page.get("Contents", []))
        return sorted(n for n in names if n)
    path = Path(uri)
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []


def write_parquet(df, uri: str) -> str:
    with atomic_local_path(uri, suffix=".parquet") as tmp:
        df.to_parquet(tmp, index=False)
    return uri


def read_parquet(uri: str, columns: list[str] | None = None):
    import pandas as pd

    with local_copy(uri) as local:
        return pd.read_parquet(local, columns=columns)


def quarantine(uri: str, reason: str, run_id: str = "") -> str:
    """Move a bad input (file or directory) to ``<lake>/quarantine/<stamp>/`` with a reason file.

    Returns the new location. The input is moved, never deleted or altered.
    """
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    label = "".join(c if c.isalnum() or c in "-_." else "_" for c in (run_id or "manual"))
    dest_dir = lake_path("quarantine", f"{stamp}_{label}")
    name = Path(str(uri).rstrip("/")).name
    dest = join(dest_dir, name)
    if is_s3(uri):
        client = _s3()
        src_bucket, src_key = _split_s3(uri)
        dst_bucket, dst_key = _split_s3(dest)
        keys = [src_key]
        listing = _s3_call(client.list_objects_v2, uri, Bucket=src_bucket, Prefix=src_key.rstrip("/") + "/")
        if listing.get("KeyCount", 0):
            keys = [o["Key"] for o in listing["Contents"]]
        for key in keys:
            target = dst_key + key[len(src_key):]
            _s3_call(client.copy_object, uri, Bucket=dst_bucket, Key=target,
                     CopySource={"Bucket": src_bucket, "Key": key})
            _s3_call(client.delete_object, uri, Bucket=src_bucket, Key=key)
    else:
        if not Path(uri).exists():
            raise MissingInputError(f"cannot quarantine {uri}: it does not exist", where=uri,
                                    fix="check the path")
        Path(dest_dir).mkdir(parents=True, exist_ok=True)
        shutil.move(str(uri), dest)
    write_json(join(dest_dir, "REASON.json"), {
        "source": str(uri), "quarantined_at": stamp, "run_id": run_id, "reason": reason,
    })
    return dest


def upload_dir(local_dir: str, uri: str) -> str:
    """Copy every file of a local directory (recursively) under ``uri``."""
    root = Path(local_dir)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        upload_file(str(path), join(uri, *path.relative_to(root).parts))
    return uri


def download_dir(uri: str, local_dir: str) -> str:
    """Copy the files under ``uri`` (recursively) into ``local_dir``."""
    dest = Path(local_dir)
    dest.mkdir(parents=True, exist_ok=True)
    if not is_s3(uri):
        shutil.copytree(uri, dest, dirs_exist_ok=True)
        return str(dest)
    for name in listdir(uri):
        child = join(uri, name)
        if _is_prefix(child):
            download_dir(child, str(dest / name))
        else:
            with local_copy(child) as local:
                shutil.copyfile(local, dest / name)
    return str(dest)


def _is_prefix(uri: str) -> bool:
    bucket, key = _split_s3(uri)
    resp = _s3_call(_s3().list_objects_v2, uri, Bucket=bucket, Prefix=key.rstrip("/") + "/", MaxKeys=1)
    return resp.get("KeyCount", 0) > 0
