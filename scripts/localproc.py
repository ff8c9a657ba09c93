"""Airflow's components and an authenticated MLflow server as local processes on 127.0.0.1.

Shared by ``make up`` (scripts/up.py), the distributed stack (scripts/stack.py) and the integration
tests (tests/integration/airflowproc.py), so that each starts them the same way:

- Airflow 3 as its separate components, never ``airflow standalone``: the log servers that
  standalone starts listen on every interface (hard-coded in Airflow), so the scheduler and the
  triggerer run with ``--skip-serve-logs`` and the api-server reads task logs from AIRFLOW_HOME/logs.
- MLflow with its basic-auth app: anonymous requests get 401, so nobody on the host can move the
  ``champion`` alias without the admin password generated here (0600, under the home).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_ok(url: str, timeout: float = 3) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (loopback)
            return 200 <= r.status < 300
    except OSError:
        return False


# ---------------------------------------------------------------- Airflow
def airflow_commands(airflow: str, port: int) -> dict[str, list[str]]:
    """The four components of an Airflow 3 deployment with a Local executor, none serving logs."""
    return {
        "api-server": [airflow, "api-server", "--host", "127.0.0.1", "--port", str(port)],
        "scheduler": [airflow, "scheduler", "--skip-serve-logs"],
        "dag-processor": [airflow, "dag-processor"],
        "triggerer": [airflow, "triggerer", "--skip-serve-logs"],
    }


def admin_password(airflow_home: Path) -> str | None:
    """The password SimpleAuthManager generated for ``admin`` (written by the api-server at start)."""
    path = airflow_home / "simple_auth_manager_passwords.json.generated"
    try:
        return json.loads(path.read_text()).get("admin")
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- processes
def spawn(cmd: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> subprocess.Popen:
    """Start ``cmd`` as the leader of its own session (so stopping it stops its children too),
    output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot): with the PID, names exactly one process even
    after the PID is reused or the process retitles itself."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def wait_until(what: str, check, timeout: float, procs: dict[str, subprocess.Popen], logs: Path) -> float:
    """Poll ``check`` until true; fail at once, naming the log, when one of ``procs`` exits. Returns the
    seconds waited."""
    start = time.time()
    while time.time() - start < timeout:
        if check():
            return time.time() - start
        dead = [n for n, p in procs.items() if p.poll() is not None]
        if dead:
            raise RuntimeError(f"{', '.join(dead)} exited while waiting for {what}; logs in {logs}")
        time.sleep(1)
    raise RuntimeError(f"{what} not ready after {timeout:.0f}s; logs in {logs}")


def descendants(pid: int) -> list[tuple[int, str]]:
    """Every process below ``pid`` in the process tree, each with its start time (so a PID reused
    later is never signalled)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        started = start_time(child)
        if started is not None:
            found.append((child, started))
        todo.extend(children.get(child, []))
    return found


def stop(pids: dict[str, int], timeout: float = 30) -> list[str]:
    """SIGTERM the process group of each PID (each was started as a session leader by ``spawn``),
    wait, SIGKILL what is left. Only these PIDs and the processes they started: nothing is looked up
    by name. Descendants are listed before any signal because some leave the group (Airflow's task
    processes start their own session) and are re-parented to init once their parent is gone.
    Returns the stopped."""
    below = [d for pid in pids.values() for d in descendants(pid)]
    stopped = []
    for name, pid in pids.items():
        try:
            os.killpg(pid, signal.SIGTERM)
            stopped.append(name)
        except ProcessLookupError:
            pass
    deadline = time.time() + timeout
    for pid in pids.values():
        while time.time() < deadline and group_alive(pid):
            _reap(pid)
            time.sleep(0.3)
        if group_alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _reap(pid)
    strays = [(pid, started) for pid, started in below if start_time(pid) == started and alive(pid)]
    for pid, _ in strays:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for pid, started in strays:
        while time.time() < deadline + 10 and start_time(pid) == started and alive(pid):
            time.sleep(0.3)
        if start_time(pid) == started and alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return stopped


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def group_alive(pgid: int) -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


# ---------------------------------------------------------------- MLflow with basic auth
MLFLOW_ADMIN = "admin"


def mlflow_auth(directory: Path, database_uri: str | None = None) -> dict[str, str]:
    """The MLflow server's auth settings under ``directory`` (mode 0700), created on first use and
    reused afterwards: ``credentials.json`` (0600: admin user and password, the Flask secret key)
    and ``basic_auth.ini`` (no secret in it). The user store is ``database_uri`` or a SQLite file
    beside them. Returns {"username", "password", "secret_key", "ini", "file"}."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    cred_file = directory / "credentials.json"
    if cred_file.exists():
        creds = json.loads(cred_file.read_text())
    else:
        creds = {"username": MLFLOW_ADMIN, "password": secrets.token_urlsafe(18),
                 "secret_key": secrets.token_urlsafe(32)}
        fd = os.open(cred_file.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(creds, fh)
        os.replace(cred_file.with_suffix(".tmp"), cred_file)
    os.chmod(cred_file, 0o600)
    ini = directory / "basic_auth.ini"
    # default_permission applies to users an admin adds later: they may read, not move aliases.
    # The credential cache spares a PBKDF2 hash per request (one worker: no staleness between workers).
    ini.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {database_uri or 'sqlite:///' + str(directory / 'basic_auth.db')}\n"
        f"admin_username = {creds['username']}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "auth_cache_ttl_seconds = 60\n")
    return {**creds, "ini": str(ini), "file": str(cred_file)}


def mlflow_server_env(auth: dict[str, str]) -> dict[str, str]:
    """What the server process needs for the basic-auth app (the admin password only bootstraps the
    user store on first start; afterwards the stored hash is what counts)."""
    return {"MLFLOW_AUTH_CONFIG_PATH": auth["ini"], "MLFLOW_AUTH_ADMIN_PASSWORD": auth["password"],
            "MLFLOW_FLASK_SERVER_SECRET_KEY": auth["secret_key"], **MLFLOW_SERVER_QUIET}


# MLflow 3's job runner (GenAI judges and scorers; biotune uses none) starts seven huey consumers
# beside the server: on a small machine that is most of the server's start-up time and memory.
MLFLOW_SERVER_QUIET = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def mlflow_client_env(url: str, auth: dict[str, str]) -> dict[str, str]:
    """What a client (an Airflow task, a shell) needs: the MLflow client reads these by itself."""
    return {"MLFLOW_TRACKING_URI": url, "MLFLOW_TRACKING_USERNAME": auth["username"],
            "MLFLOW_TRACKING_PASSWORD": auth["password"]}


def mlflow_server_command(mlflow: str, port: int, backend_store_uri: str, *extra: str) -> list[str]:
    return [mlflow, "server", "--app-name", "basic-auth", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--backend-store-uri", backend_store_uri,
            "--allowed-hosts", f"127.0.0.1:{port},localhost:{port}", *extra]
