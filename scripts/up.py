"""`make up` / `make down`: the embedded default as long-running services on 127.0.0.1.

    python scripts/up.py up     # MLflow (basic auth) + Airflow api-server, scheduler, dag-processor, triggerer
    python scripts/up.py down   # stop exactly the PIDs `up` recorded
    python scripts/up.py env    # the exports for a shell to use the MLflow server as the admin

Run by the Makefile, which exports BIOTUNE_HOME, AIRFLOW_HOME and the AIRFLOW__* settings. Each
component runs in its own session with a pid file and a log under $BIOTUNE_HOME/run. The MLflow admin
password is generated on first start into $BIOTUNE_HOME/mlflow/auth/credentials.json (0600) and given
to the Airflow components as MLFLOW_TRACKING_USERNAME/PASSWORD, so their tasks register and promote
through the server; the store stays the SQLite file `make demo` uses directly.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import localproc  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
COMPONENTS = ("mlflow", "api-server", "scheduler", "dag-processor", "triggerer")


def _home() -> Path:
    return Path(os.environ.get("BIOTUNE_HOME") or ROOT / ".biotune").resolve()


def _run_dir() -> Path:
    return _home() / "run"


def _airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME") or _home() / "airflow").resolve()


def _ports() -> tuple[int, int]:
    return int(os.environ.get("AIRFLOW__API__PORT", "8080")), int(os.environ.get("MLFLOW_PORT", "5000"))


def _mlflow_auth() -> dict[str, str]:
    return localproc.mlflow_auth(_home() / "mlflow" / "auth")


def _env(mlflow_url: str, auth: dict[str, str], api_port: int, parallelism: int) -> dict[str, str]:
    base = f"http://127.0.0.1:{api_port}"
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT / "include"), os.environ.get("PYTHONPATH")) if p),
        "AIRFLOW_HOME": str(_airflow_home()),
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": os.environ.get("AIRFLOW__API__BASE_URL") or base,
        "AIRFLOW__API__WORKERS": os.environ.get("AIRFLOW__API__WORKERS", "1"),
        "BIOTUNE_MLFLOW_UI_URL": mlflow_url,
        **localproc.mlflow_client_env(mlflow_url, auth),
    }


def _pid_file(name: str) -> Path:
    return _run_dir() / f"{name}.pid"


def _recorded() -> dict[str, int]:
    """The PIDs `up` recorded that are still the processes it started (same start time: a reused PID
    is left alone); stale pid files are removed."""
    pids = {}
    for name in COMPONENTS:
        f = _pid_file(name)
        if not f.exists():
            continue
        pid, _, started = f.read_text().strip().partition(" ")
        if pid.isdigit() and started and localproc.start_time(int(pid)) == started and localproc.alive(int(pid)):
            pids[name] = int(pid)
        else:
            f.unlink()
    return pids


def _health(base: str) -> dict:
    try:
        with urllib.request.urlopen(f"{base}/api/v2/monitor/health", timeout=5) as r:  # noqa: S310 (loopback)
            return json.load(r)
    except (OSError, ValueError):
        return {}


def up(parallelism: int, timeout: float) -> int:
    running = _recorded()
    if running:
        print(f"already running: {', '.join(f'{n} ({p})' for n, p in running.items())}; run `make down` first",
              file=sys.stderr)
        return 1
    api_port, mlflow_port = _ports()
    mlflow_url, base = f"http://127.0.0.1:{mlflow_port}", f"http://127.0.0.1:{api_port}"
    auth = _mlflow_auth()
    env = _env(mlflow_url, auth, api_port, parallelism)
    run = _run_dir()
    run.mkdir(parents=True, exist_ok=True)
    mlflow_dir = _home() / "mlflow"
    commands = {
        "mlflow": localproc.mlflow_server_command(
            str(BIN / "mlflow"), mlflow_port, f"sqlite:///{mlflow_dir / 'mlflow.db'}",
            "--default-artifact-root", (mlflow_dir / "artifacts").as_uri(),
            "--artifacts-destination", (mlflow_dir / "artifacts").as_uri()),
        **localproc.airflow_commands(str(BIN / "airflow"), api_port),
    }
    start = time.time()
    procs = {}

    def launch(name: str) -> None:
        proc_env = {**env, **localproc.mlflow_server_env(auth)} if name == "mlflow" else env
        procs[name] = localproc.spawn(commands[name], proc_env, run / f"{name}.log", cwd=ROOT)
        _pid_file(name).write_text(f"{procs[name].pid} {localproc.start_time(procs[name].pid)}\n")

    parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
    try:
        for name in ("mlflow", "api-server", "dag-processor", "triggerer"):
            launch(name)
        print(f"waiting for MLflow on {mlflow_url} and Airflow on {base} ...", flush=True)
        localproc.wait_until("the MLflow server", lambda: localproc.http_ok(f"{mlflow_url}/health"), timeout,
                             procs, run)
        launch("scheduler")  # only now: the unpaused DAGs' first tasks need the MLflow server
        localproc.wait_until("Airflow (api-server, scheduler, dag-processor, triggerer)",
                             lambda: all((_health(base).get(k) or {}).get("status") == "healthy" for k in parts),
                             timeout, procs, run)
    except (RuntimeError, KeyboardInterrupt) as exc:
        print(f"make up failed: {exc}", file=sys.stderr)
        localproc.stop({n: p.pid for n, p in procs.items()})
        for name in procs:
            _pid_file(name).unlink(missing_ok=True)
        return 1
    password = localproc.admin_password(_airflow_home()) or f"(see {run / 'api-server.log'})"
    print(f"up in {time.time() - start:.0f}s (parallelism {parallelism})")
    print(f"Airflow UI: {base}  user: admin  password: {password}")
    print(f"MLflow UI:  {mlflow_url}  user: {auth['username']}  password: {auth['password']}  (kept in {auth['file']})")
    print(f"  a shell that should use it: eval \"$(BIOTUNE_HOME={_home()} MLFLOW_PORT={mlflow_port} "
          f"{BIN / 'python'} {Path(__file__).resolve()} env)\"")
    print(f"logs and pid files: {run}/; stop with make down")
    return 0


def down() -> int:
    pids = _recorded()
    for name in localproc.stop(pids):
        print(f"stopped {name} ({pids[name]})")
    for name in pids:
        _pid_file(name).unlink(missing_ok=True)
    if not pids:
        print(f"nothing recorded in {_run_dir()} is running")
    return 0


def env() -> int:
    _, mlflow_port = _ports()
    for k, v in localproc.mlflow_client_env(f"http://127.0.0.1:{mlflow_port}", _mlflow_auth()).items():
        print(f"export {k}={shlex.quote(v)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "env"])
    parser.add_argument("--parallelism", type=int, default=int(os.environ.get("UP_PARALLELISM") or os.cpu_count() or 2),
                        help="Airflow task slots (default: UP_PARALLELISM, else the machine's cores)")
    parser.add_argument("--timeout", type=float, default=240)
    args = parser.parse_args(argv)
    if args.command == "up":
        return up(args.parallelism, args.timeout)
    return down() if args.command == "down" else env()


if __name__ == "__main__":
    sys.exit(main())
