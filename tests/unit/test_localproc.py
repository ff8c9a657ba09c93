"""make down / the test fixtures stop what they started, including processes that left the group.

Airflow's task processes start their own session, so stopping the scheduler's process group left a
running task alive (re-parented to init) after `make down`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from localproc import alive, descendants, spawn, start_time, stop  # noqa: E402

# a parent that starts a child in a new session (as an Airflow task process does), then waits
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
print(child.pid, flush=True)
time.sleep(120)
"""


def test_stop_ends_a_descendant_that_left_the_process_group(tmp_path):
    log = tmp_path / "parent.log"
    parent = spawn([sys.executable, "-c", PARENT], env={"PATH": "/usr/bin:/bin"}, log=log)
    deadline = time.time() + 20
    while time.time() < deadline and not log.read_text().strip():
        time.sleep(0.1)
    child = int(log.read_text().split()[0])
    try:
        assert (child, start_time(child)) in descendants(parent.pid)
        assert subprocess.run(["ps", "-o", "sid=", "-p", str(child)], capture_output=True, text=True).stdout.strip() \
            == str(child), "the child should lead its own session (outside the parent's group)"
        assert stop({"parent": parent.pid}, timeout=10) == ["parent"]
        assert not alive(parent.pid)
        assert not alive(child), "a process the stopped one started survived the stop"
    finally:
        for pid in (child, parent.pid):
            if alive(pid):
                subprocess.run(["kill", "-9", str(pid)], check=False)
