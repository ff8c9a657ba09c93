"""Fault class: the medium fails under a bad input or a write (issue 10, items 11, 12).

A quarantine that cannot move the file keeps the validation failure and says the file stayed;
a symlink loop says "symbolic link loop" (not "does not exist"); a full disk, a file-size limit
and a read-only lake are StorageError with what / where / fix, and leave no temp file behind.
"""

from __future__ import annotations

import errno
import json
import os
import resource
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from biotune import storage, validation
from biotune.errors import DataValidationError, InputFormatError, MissingInputError, StorageError
from biotune.xport import xpt_layout


def _unwritable() -> str:
    """A folder no process may create files in, for root too (sysfs refuses mkdir/create)."""
    for base in ("/sys/kernel", "/sys"):
        try:
            os.mkdir(os.path.join(base, "biotune-probe"))
        except OSError as exc:
            if exc.errno in (errno.EPERM, errno.EACCES, errno.EROFS):
                return base
        else:  # pragma: no cover - a writable /sys: clean up and give up
            os.rmdir(os.path.join(base, "biotune-probe"))
    pytest.skip("no unwritable folder on this machine")


@pytest.fixture
def suite(tmp_path, monkeypatch):
    (tmp_path / "demo.json").write_text(json.dumps({"name": "demo", "expectations": [
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "age", "min_value": 0, "max_value": 120}}]}))
    monkeypatch.setenv("BIOTUNE_EXPECTATIONS", str(tmp_path))
    return "demo"


def _no_temp_left(folder) -> bool:
    return not [p for p in Path(folder).iterdir() if storage.TMP_TAG in p.name]


@pytest.mark.parametrize("how", ["read_only_quarantine", "quarantine_is_a_file"])
def test_failed_quarantine_keeps_the_validation_failure_and_the_file(home, suite, tmp_path, how):
    source = storage.lake_path("landing", "demo", "data.csv")
    storage.write_text(source, "age\n30\n150\n")
    qdir = Path(storage.lake_path("quarantine"))
    if how == "read_only_quarantine":
        qdir.symlink_to(_unwritable())
    else:
        qdir.write_text("not a folder")
    with pytest.raises(DataValidationError) as err:
        validation.validate_or_quarantine(pd.read_csv(source), suite, source, run_id="r1",
                                          report_dir=str(tmp_path / "reports"))
    exc = err.value
    assert any("age" in f and "150" in f for f in exc.failures)  # the cause is still there
    assert "could NOT be moved to quarantine" in exc.what and f"still at {source}" in exc.what
    assert Path(source).read_text() == "age\n30\n150\n"  # left in place, unchanged
    assert exc.bad_input and "do not use" in exc.fix


def test_storage_quarantine_failure_is_typed_and_leaves_nothing_half_made(home):
    source = storage.lake_path("landing", "x", "a.bin")
    storage.write_bytes(source, b"abc")
    Path(storage.lake_path("quarantine")).symlink_to(_unwritable())
    with pytest.raises(StorageError, match="left where it is") as err:
        storage.quarantine(source, "bad")
    assert Path(source).read_bytes() == b"abc" and err.value.fix


@pytest.mark.parametrize("call", ["read_bytes", "exists", "local_copy", "xpt_layout", "read_frame", "listdir"])
def test_a_symlink_loop_says_so(tmp_path, call):
    loop = tmp_path / "PAXMIN_H.XPT"
    loop.symlink_to(loop)
    fns = {"read_bytes": lambda: storage.read_bytes(str(loop)), "exists": lambda: storage.exists(str(loop)),
           "local_copy": lambda: storage.local_copy(str(loop)).__enter__(), "xpt_layout": lambda: xpt_layout(loop),
           "read_frame": lambda: validation.read_frame(str(loop), "xpt"), "listdir": lambda: storage.listdir(str(loop))}
    with pytest.raises(InputFormatError, match="symbolic link loop"):
        fns[call]()


def test_a_symlink_loop_can_still_be_quarantined(home):
    loop = Path(storage.lake_path("landing", "loop.parquet"))
    loop.parent.mkdir(parents=True)
    loop.symlink_to(loop)
    moved = storage.quarantine(str(loop), "a link loop")
    assert os.path.islink(moved) and not os.path.lexists(loop)


@pytest.mark.parametrize("kind", ["broken_link", "directory", "missing"])
def test_other_not_a_file_cases_say_what_they_are(tmp_path, kind):
    path = tmp_path / "batch.parquet"
    if kind == "broken_link":
        path.symlink_to(tmp_path / "gone.parquet")
        expected, cls = "symbolic link to a missing target", InputFormatError
    elif kind == "directory":
        path.mkdir()
        expected, cls = "is a directory", InputFormatError
    else:
        expected, cls = "no file at", MissingInputError
    with pytest.raises(cls, match=expected):
        storage.read_bytes(str(path))


def test_file_too_large_is_a_storage_error(tmp_path):
    target = tmp_path / "lake" / "big.parquet"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
    try:
        with pytest.raises(StorageError, match="larger than this file system") as err:
            storage.write_parquet(pd.DataFrame({"x": np.random.default_rng(0).random(100_000)}), str(target))
        with pytest.raises(StorageError, match="EFBIG"):
            storage.write_bytes(str(tmp_path / "lake" / "big.bin"), b"x" * 200_000)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert "ulimit -f" in err.value.fix and err.value.where == str(target)
    assert not target.exists() and _no_temp_left(target.parent)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_disk_full_while_writing_is_a_storage_error(tmp_path, code):
    target = tmp_path / "lake" / "features.npy"
    with pytest.raises(StorageError, match="disk or quota is full") as err:
        with storage.atomic_local_path(str(target), suffix=".npy") as tmp:
            with open(tmp, "wb") as fh:
                fh.write(b"partial")
            raise OSError(code, os.strerror(code), tmp)  # what the kernel says when the volume fills
    assert "df -h" in err.value.fix and not err.value.bad_input
    assert not target.exists() and _no_temp_left(target.parent)


@pytest.mark.parametrize("write", ["write_json", "write_parquet", "quarantine_folder"])
def test_a_read_only_lake_is_a_storage_error(monkeypatch, write):
    monkeypatch.setenv("BIOTUNE_LAKE", os.path.join(_unwritable(), "biotune-lake"))
    with pytest.raises(StorageError, match="read-only or not writable") as err:
        if write == "write_json":
            storage.write_json(storage.lake_path("runs", "r1", "report.json"), {"a": 1})
        elif write == "write_parquet":
            storage.write_parquet(pd.DataFrame({"a": [1]}), storage.lake_path("predictions", "p.parquet"))
        else:
            storage.write_text(storage.lake_path("quarantine", "x", "REASON.json"), "{}")
    assert "BIOTUNE_LAKE" in err.value.fix and err.value.retryable
