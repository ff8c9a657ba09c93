"""One API over the lake on local disk or S3 (boto3).

Paths are strings: a local path or ``s3://bucket/key``. Writes are atomic: local writes go
to a temp file in the same directory and are renamed; S3 PUTs are atomic by nature.
``quarantine`` moves a bad input aside with a reason file beside it; it never deletes.

Local temp files are named ``.<name>.biotune-tmp-<host>-<pid>-<random><suffix>`` so a run
killed mid-write leaves a file anyone can recognise; the next write into the same folder
removes such files once they are older than ``BIOTUNE_TMP_MAX_AGE`` seconds (default 6 h)
and their process is gone. Files are created with the process umask applied to 0666 (0644
with the usual umask), like any file a user copies into the lake.

Faults of the medium (disk full, file too large, read-only or forbidden folder, a symlink
loop) raise typed errors with what / where / fix instead of a raw ``OSError``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import functools
import json
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Iterator

from biotune import settings
from biotune.errors import BiotuneError, InputFormatError, MissingInputError, StorageError

TMP_TAG = ".biotune-tmp-"
_TMP_NAME = re.compile(r"^\..+\.biotune-tmp-(?P<host>[A-Za-z0-9]*)-(?P<pid>\d+)-[A-Za-z0-9_]+")
DEFAULT_TMP_MAX_AGE = 6 * 3600


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

    session = boto3.session.Session()
    creds = session.get_credentials()
    if creds is None:
        raise StorageError(
            "no S3 credentials found for the lake",
            where=f"BIOTUNE_LAKE={settings.lake()}",
            fix="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL for a "
            "non-AWS object store) in the environment or an Airflow connection",
        )
    frozen = creds.get_frozen_credentials()
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
    # one client per process and configuration: making a client loads botocore's service model
    # (~0.1-0.5 s), which every lake call paid before
    return _client(os.getpid(), endpoint, session.region_name, frozen.access_key, frozen.secret_key, frozen.token)


@functools.lru_cache(maxsize=8)
def _client(_pid: int, endpoint: str | None, region: str | None, key: str, secret: str, token: str | None):
    import boto3

    session = boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret, aws_session_token=token,
                                    region_name=region)
    try:
        return session.client("s3", endpoint_url=endpoint)
    except ValueError as exc:  # a malformed AWS_ENDPOINT_URL
        raise StorageError(f"cannot use the S3 endpoint: {exc}", where=f"AWS_ENDPOINT_URL={endpoint}",
                           fix="set AWS_ENDPOINT_URL to the object store's URL, e.g. http://minio:9000") from exc


def _raise_s3(exc, uri: str):
    """Raise the typed error for a botocore ClientError on ``uri``."""
    code = str(exc.response.get("Error", {}).get("Code", ""))
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"):
        raise StorageError(
            f"S3 refused the credentials ({code})", where=uri,
            fix="check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for this bucket",
        ) from exc
    if code in ("NoSuchKey", "404", "NotFound"):
        raise MissingInputError(f"no object at {uri}", where=uri, fix="check the path") from exc
    if code == "NoSuchBucket":
        raise StorageError(f"the bucket of {uri} does not exist", where=uri,
                           fix="create the bucket, or fix BIOTUNE_LAKE") from exc
    raise StorageError(f"S3 error {code}: {exc}", where=uri, fix="see the S3 error above") from exc


def _s3_call_raw(fn, uri: str, *args, **kwargs):
    """Call boto3; connection problems become StorageError, ClientError propagates."""
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

    try:
        return fn(*args, **kwargs)
    except ClientError:
        raise
    except EndpointConnectionError as exc:
        raise StorageError(
            "cannot reach the S3 endpoint", where=uri,
            fix="check AWS_ENDPOINT_URL and that the object store is running",
        ) from exc
    except BotoCoreError as exc:  # bad parameters, bad endpoint URL, timeouts...
        raise StorageError(f"S3 call failed: {type(exc).__name__}: {exc}", where=uri,
                           fix="check BIOTUNE_LAKE (s3://bucket/prefix) and AWS_ENDPOINT_URL") from exc


def _s3_call(fn, uri: str, *args, **kwargs):
    from botocore.exceptions import ClientError

    try:
        return _s3_call_raw(fn, uri, *args, **kwargs)
    except ClientError as exc:
        _raise_s3(exc, uri)


def exists(uri: str) -> bool:
    """Is there a file (local) or an object with exactly this key (S3)?

    On S3 this is an exact key match: ``batch.parquet.uploading`` does not make
    ``batch.parquet`` exist. A "folder" (a key prefix) is :func:`exists_prefix`. Locally a
    directory counts; a symlink loop raises InputFormatError instead of answering False.
    """
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        if not key or key.endswith("/"):
            return exists_prefix(uri)
        from botocore.exceptions import ClientError

        try:
            _s3_call_raw(_s3().head_object, uri, Bucket=bucket, Key=key)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                return False
            _raise_s3(exc, uri)
        return True
    return _stat(uri) is not None


def exists_prefix(uri: str) -> bool:
    """Is there at least one object under ``uri/`` (S3), or a directory at ``uri`` (local)?"""
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        prefix = key.rstrip("/") + "/" if key else ""
        resp = _s3_call(_s3().list_objects_v2, uri, Bucket=bucket, Prefix=prefix, MaxKeys=1)
        return resp.get("KeyCount", 0) > 0
    st = _stat(uri)
    return st is not None and Path(uri).is_dir()


def _stat(uri: str):
    """``os.stat`` of a local path, None when nothing is there; a symlink loop or a
    permission problem is said as such, never as "does not exist"."""
    try:
        return os.stat(uri)
    except FileNotFoundError:
        if os.path.islink(uri):
            raise InputFormatError(f"{uri} is a symbolic link to a missing target ({os.readlink(uri)})",
                                   where=uri, fix="point the link at the real file, or copy the file itself") from None
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputFormatError(f"{uri} is a symbolic link loop (a link that points back to itself)",
                                   where=uri, fix="replace the link with the real file") from exc
        if exc.errno == errno.ENOTDIR:
            return None
        raise os_error(exc, uri, "read") from exc


def os_error(exc: OSError, uri: str, action: str = "write") -> BiotuneError:
    """The typed error for an ``OSError`` met while reading or writing ``uri``."""
    code = exc.errno
    name = errno.errorcode.get(code, str(code)) if code is not None else type(exc).__name__
    detail = f"{exc.strerror or exc} [{name}]"
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return StorageError(f"cannot {action} {uri}: the disk or quota is full ({detail})", where=uri,
                            fix=f"free space on the volume holding {Path(uri).parent} (df -h), or point "
                                "BIOTUNE_LAKE at a larger volume, then re-run the task")
    if code == errno.EFBIG:
        return StorageError(f"cannot {action} {uri}: the file is larger than this file system or the "
                            f"process file-size limit allows ({detail})", where=uri,
                            fix="check `ulimit -f` for the worker and the volume's maximum file size "
                                "(e.g. FAT32 stops at 4 GB); use another volume for BIOTUNE_LAKE")
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return StorageError(f"cannot {action} {uri}: the location is read-only or not writable by this "
                            f"process ({detail})", where=uri,
                            fix=f"give the worker's user write access to {Path(uri).parent} (or remount it "
                                "read-write), or point BIOTUNE_LAKE at a writable folder")
    if code == errno.ELOOP:
        return InputFormatError(f"{uri} is a symbolic link loop", where=uri, fix="replace the link with the real file")
    if code == errno.EISDIR:
        return InputFormatError(f"{uri} is a directory, not a file", where=uri,
                                fix="give the path of the file inside it")
    if code == errno.ENOENT and action != "write":
        return MissingInputError(f"no file at {uri}", where=uri, fix="check the path or run the step that writes it")
    return StorageError(f"cannot {action} {uri}: {detail}", where=uri,
                        fix="check that the lake volume is mounted and healthy, then re-run the task")


# ------------------------------------------------------------------------------- temp files

def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask would race other threads)
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32]


def _tmp_max_age() -> float:
    try:
        return float(os.environ.get("BIOTUNE_TMP_MAX_AGE", DEFAULT_TMP_MAX_AGE))
    except ValueError:
        return float(DEFAULT_TMP_MAX_AGE)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def sweep_temp_files(directory: str, max_age: float | None = None) -> list[str]:
    """Remove biotune temp files left in ``directory`` by killed runs; return their paths.

    A temp file goes when it is older than ``max_age`` seconds (``BIOTUNE_TMP_MAX_AGE``,
    default 6 h) and, when it was made on this host, its process is gone. Best effort: a
    file another process removes first, or that cannot be removed, is left alone.
    """
    max_age = _tmp_max_age() if max_age is None else max_age
    removed: list[str] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    now, host = time.time(), _host()
    for entry in entries:
        m = _TMP_NAME.match(entry.name)
        if not m:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if now - st.st_mtime < max_age:
            continue
        if m.group("host") == host and _pid_alive(int(m.group("pid"))) and int(m.group("pid")) != os.getpid():
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(entry.path)
        except OSError:
            continue
    return removed


def _mkstemp(path: Path, suffix: str) -> tuple[int, str]:
    """A temp file beside ``path`` (recognisable name, umask-respecting mode); sweeps stale ones."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error(exc, str(path.parent), "create the folder") from exc
    sweep_temp_files(str(path.parent))
    prefix = f".{path.name}{TMP_TAG}{_host()}-{os.getpid()}-"
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix or ".tmp")
        os.fchmod(fd, 0o666 & ~_umask())
    except OSError as exc:
        raise os_error(exc, str(path)) from exc
    return fd, tmp


def _replace(tmp: str, path: Path) -> None:
    try:
        os.replace(tmp, path)
    except OSError as exc:
        raise os_error(exc, str(path)) from exc


def write_bytes(uri: str, data: bytes) -> str:
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        _s3_call(_s3().put_object, uri, Bucket=bucket, Key=key, Body=data)
        return uri
    path = Path(uri)
    fd, tmp = _mkstemp(path, ".tmp")
    try:
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        except OSError as exc:
            raise os_error(exc, str(path)) from exc
        _replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return str(path)


def read_bytes(uri: str) -> bytes:
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        return _s3_call(_s3().get_object, uri, Bucket=bucket, Key=key)["Body"].read()
    _require_file(uri)
    try:
        return Path(uri).read_bytes()
    except OSError as exc:
        raise os_error(exc, uri, "read") from exc


def _require_file(uri: str) -> None:
    st = _stat(uri)
    if st is None:
        raise MissingInputError(f"no file at {uri}", where=uri, fix="check the path or run the step that writes it")
    if Path(uri).is_dir():
        raise InputFormatError(f"{uri} is a directory, not a file", where=uri,
                               fix="give the path of the file inside it")


def write_text(uri: str, text: str) -> str:
    return write_bytes(uri, text.encode("utf-8"))


def read_text(uri: str) -> str:
    data = read_bytes(uri)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputFormatError(f"{uri} is not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r})",
                               where=uri, fix="save the file as UTF-8") from exc


def write_json(uri: str, obj) -> str:
    return write_text(uri, json.dumps(obj, indent=2, sort_keys=True, default=str))


def read_json(uri: str):
    try:
        return json.loads(read_text(uri))
    except json.JSONDecodeError as exc:
        raise InputFormatError(f"{uri} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                               where=f"{uri}:{exc.lineno}", fix="fix or rewrite the JSON file") from exc


@contextlib.contextmanager
def atomic_local_path(uri: str, suffix: str = "") -> Iterator[str]:
    """Yield a local temp path to write to; on success it becomes ``uri`` (local or S3)."""
    if is_s3(uri):
        with tempfile.TemporaryDirectory(prefix=TMP_TAG.lstrip(".")) as tmpdir:
            tmp = str(Path(tmpdir) / ("out" + suffix))
            try:
                yield tmp
            except OSError as exc:  # the writer's own I/O on the local temp file
                raise os_error(exc, tmp) from exc
            upload_file(tmp, uri)
        return
    path = Path(uri)
    fd, tmp = _mkstemp(path, suffix)
    os.close(fd)
    try:
        try:
            yield tmp
        except OSError as exc:  # disk full, file too large... while the caller wrote the temp file
            raise os_error(exc, str(path)) from exc
        _replace(tmp, path)
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
        _require_file(uri)
        yield uri
        return
    with tempfile.TemporaryDirectory(prefix=TMP_TAG.lstrip(".")) as tmpdir:
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
    if _stat(uri) is None or not Path(uri).is_dir():
        return []
    try:
        return sorted(p.name for p in Path(uri).iterdir())
    except OSError as exc:
        raise os_error(exc, uri, "list") from exc


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

    Returns the new location. The input is moved, never deleted or altered. When the move
    cannot be made (read-only or full quarantine folder, S3 refusing the copy) the input
    stays where it was, nothing half-made is left in quarantine, and StorageError says so.
    """
    from biotune.errors import redact

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    label = "".join(c if c.isalnum() or c in "-_." else "_" for c in (run_id or "manual"))
    dest_dir = lake_path("quarantine", f"{stamp}_{label}")
    name = Path(str(uri).rstrip("/")).name
    dest = join(dest_dir, name)
    record = {"source": str(uri), "quarantined_at": stamp, "run_id": run_id, "reason": redact(reason)}
    if is_s3(uri):
        client = _s3()
        src_bucket, src_key = _split_s3(uri)
        dst_bucket, dst_key = _split_s3(dest)
        keys = [src_key]
        listing = _s3_call(client.list_objects_v2, uri, Bucket=src_bucket, Prefix=src_key.rstrip("/") + "/")
        if listing.get("KeyCount", 0):
            keys = [o["Key"] for o in listing["Contents"]]
        copied: list[str] = []
        try:  # copy everything first, delete the sources only once every copy is there
            for key in keys:
                target = dst_key + key[len(src_key):]
                _s3_call(client.copy_object, uri, Bucket=dst_bucket, Key=target,
                         CopySource={"Bucket": src_bucket, "Key": key})
                copied.append(target)
            write_json(join(dest_dir, "REASON.json"), record)
        except BiotuneError as exc:
            for target in copied:
                with contextlib.suppress(Exception):
                    client.delete_object(Bucket=dst_bucket, Key=target)
            if isinstance(exc, MissingInputError):
                raise
            raise _quarantine_failed(uri, dest_dir, exc) from exc
        for key in keys:
            _s3_call(client.delete_object, uri, Bucket=src_bucket, Key=key)
        return dest
    if not os.path.lexists(uri):  # lexists: a broken link or a link loop is still a thing to move
        raise MissingInputError(f"cannot quarantine {uri}: it does not exist", where=uri,
                                fix="check the path")
    made_dir = False
    try:
        if not Path(dest_dir).is_dir():
            Path(dest_dir).mkdir(parents=True)
            made_dir = True
        write_json(join(dest_dir, "REASON.json"), record)
        shutil.move(str(uri), dest)
    except (OSError, BiotuneError) as exc:
        if os.path.lexists(uri):  # not moved: take back what was made in quarantine
            with contextlib.suppress(OSError):
                Path(dest_dir, "REASON.json").unlink()
            if made_dir:
                with contextlib.suppress(OSError):
                    Path(dest_dir).rmdir()
        cause = exc if isinstance(exc, BiotuneError) else os_error(exc, dest_dir, "write to")
        raise _quarantine_failed(uri, dest_dir, cause) from exc
    return dest


def _quarantine_failed(uri: str, dest_dir: str, cause: BiotuneError) -> StorageError:
    return StorageError(
        f"could not move {uri} to quarantine ({dest_dir}): {cause.what}; the input was left where it is",
        where=str(uri),
        fix=f"{cause.fix}; then move {uri} aside by hand or re-run the task" if cause.fix else
            f"make {lake_path('quarantine')} writable, then move {uri} aside by hand or re-run the task")


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


def safe_name(text: str) -> str:
    """A file-name-safe form of a run id, model or person name (letters, digits, '-', '_', '.')."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(text))


def is_within(uri: str, prefix: str) -> bool:
    """Whether ``uri`` names an object inside ``prefix`` (symlinks and '..' resolved locally; on S3 a
    key under the prefix without '..' segments)."""
    uri, prefix = str(uri), str(prefix)
    if is_s3(prefix) or is_s3(uri):
        return is_s3(uri) and is_s3(prefix) and uri.startswith(prefix.rstrip("/") + "/") and \
            ".." not in uri[len(prefix):].split("/")
    root = os.path.realpath(prefix)
    return os.path.realpath(uri).startswith(root + os.sep)


def write_npy(arr, uri: str) -> str:
    """A float32 array as .npy at ``uri``, atomically (the arrays beside a prepared dataset)."""
    import numpy as np

    with atomic_local_path(uri, suffix=".npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(arr, dtype=np.float32))
    return uri


def read_npy(uri: str):
    import numpy as np

    with local_copy(uri) as local:
        return np.load(local)
