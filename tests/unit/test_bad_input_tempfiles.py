"""Fault class: runs killed mid-write (issue 10, item 14).

Temp files have recognisable names and are swept by the next write into the same folder once
old and orphaned; lake files get the umask's mode (0644 by default) like inputs copied in; a
cohort's report always belongs to its parquet (same build id, old report removed first).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from biotune import storage
from biotune.errors import InputFormatError
from biotune.mood import cohort
from biotune.synthetic import nhanes as synth


def _stale(folder: Path, name: str, age: float) -> Path:
    path = folder / name
    path.write_bytes(b"partial write of a killed run")
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def _dead_pid() -> int:
    """A pid no process has (counting down from the kernel's largest)."""
    try:
        pid = int(Path("/proc/sys/kernel/pid_max").read_text()) - 1
    except OSError:
        pid = 32_767
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


def test_temp_names_are_recognisable(tmp_path):
    target = tmp_path / "cohort.parquet"
    with storage.atomic_local_path(str(target), suffix=".parquet") as tmp:
        name = Path(tmp).name
        assert name.startswith(".cohort.parquet.biotune-tmp-") and name.endswith(".parquet")
        assert storage._TMP_NAME.match(name)
        Path(tmp).write_bytes(b"x")
    assert target.read_bytes() == b"x" and not Path(tmp).exists()


def test_stale_temps_of_killed_runs_are_swept_by_the_next_write(tmp_path):
    host, dead, me = storage._host(), _dead_pid(), os.getpid()
    old = storage.DEFAULT_TMP_MAX_AGE + 60
    killed = _stale(tmp_path, f".cohort.parquet.biotune-tmp-{host}-{dead}-abc123.parquet", old)
    elsewhere = _stale(tmp_path, f".x.npy.biotune-tmp-otherhost-{me}-def456.npy", old)  # another machine
    fresh = _stale(tmp_path, f".y.json.biotune-tmp-{host}-{dead}-ghi789.tmp", 60)  # may still be written
    alive = _stale(tmp_path, f".z.json.biotune-tmp-{host}-1-jkl012.tmp", old)  # pid 1 is alive here
    users = _stale(tmp_path, ".notes.tmp", old)  # not ours: never touched
    storage.write_json(str(tmp_path / "report.json"), {"ok": True})
    assert not killed.exists() and not elsewhere.exists()
    assert fresh.exists() and alive.exists() and users.exists()


def test_the_age_limit_is_configurable(tmp_path, monkeypatch):
    stale = _stale(tmp_path, f".a.bin.biotune-tmp-{storage._host()}-{_dead_pid()}-q1w2e3.tmp", 120)
    storage.write_bytes(str(tmp_path / "b.bin"), b"1")
    assert stale.exists()
    monkeypatch.setenv("BIOTUNE_TMP_MAX_AGE", "60")
    storage.write_bytes(str(tmp_path / "b.bin"), b"2")
    assert not stale.exists()


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_lake_files_follow_the_umask_like_copied_inputs(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        a = storage.write_bytes(str(tmp_path / "a.bin"), b"1")
        with storage.atomic_local_path(str(tmp_path / "b.parquet"), suffix=".parquet") as tmp:
            Path(tmp).write_bytes(b"2")
        (tmp_path / "input.csv").write_text("x")
        copied = shutil.copy(tmp_path / "input.csv", tmp_path / "moved.csv")
    finally:
        os.umask(old)
    assert os.stat(a).st_mode & 0o777 == mode
    assert os.stat(tmp_path / "b.parquet").st_mode & 0o777 == mode
    assert os.stat(copied).st_mode & 0o777 == os.stat(a).st_mode & 0o777


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    src = tmp_path_factory.mktemp("nhanes_tmp")
    synth.write_nhanes(src, participants=10, seed=2)
    out = tmp_path_factory.mktemp("cohorts")
    return src, out


def test_cohort_report_belongs_to_its_parquet(built):
    src, out = built
    first = cohort.build_cohort(src, out / "a.parquet", workers=1)
    assert cohort.read_report(first.out_path)["build_id"] == first.build_id
    second = cohort.build_cohort(src, out / "b.parquet", workers=1)
    shutil.copy(second.report_path, first.report_path)  # what a kill between the two writes used to leave
    with pytest.raises(InputFormatError, match="belongs to another build"):
        cohort.read_report(first.out_path)
    assert not [p for p in out.iterdir() if storage.TMP_TAG in p.name]


def test_a_rebuild_removes_the_old_report_before_the_new_parquet_lands(built, monkeypatch):
    src, out = built
    report = cohort.build_cohort(src, out / "c.parquet", workers=1)
    seen = {}
    real = storage._replace

    def replace(tmp, path):  # the moment the new parquet lands: the old report must be gone
        if str(path).endswith("c.parquet"):
            seen["report_present"] = Path(report.report_path).exists()
        return real(tmp, path)

    monkeypatch.setattr(storage, "_replace", replace)
    cohort.build_cohort(src, out / "c.parquet", workers=1)
    assert seen == {"report_present": False}
