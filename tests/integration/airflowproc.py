"""Airflow as `make up` runs it (SQLite, LocalExecutor, SimpleAuthManager with a generated password),
its components started one by one in a temporary home, none with a log server (they would listen on
every interface): the commands and the process handling are scripts/localproc.py's, shared with
`make up`. Used by the browser and approval tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from localproc import admin_password, airflow_commands, free_port, http_ok, spawn, stop, wait_until  # noqa: E402


@contextlib.contextmanager
def airflow_processes(home: Path, extra_env: dict[str, str] | None = None, log=print):
    """Start api-server, scheduler, dag-processor and triggerer on 127.0.0.1; yield
    {"base", "password", "home", "logs", "env"}; stop exactly those processes (by PID) on exit."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    airflow_home = home / "airflow"
    airflow_home.mkdir(parents=True, exist_ok=True)
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW", "BIOTUNE_", "MLFLOW_", "AWS_"))
            or k in ("BIOTUNE_SPECS", "BIOTUNE_EXPECTATIONS", "BIOTUNE_PRETRAINED")}
    env = {
        **keep,
        "BIOTUNE_HOME": str(home),
        "BIOTUNE_MLFLOW_UI_URL": "http://127.0.0.1:5000",
        "PYTHONPATH": str(ROOT / "include"),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__AUTH_MANAGER":
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": base,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": os.urandom(24).hex(),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "GIT_PYTHON_REFRESH": "quiet", "TF_CPP_MIN_LOG_LEVEL": "2", "MLFLOW_ENABLE_TELEMETRY": "false",
        **(extra_env or {}),
    }
    airflow = str(Path(sys.executable).with_name("airflow"))
    logs = home / "logs"
    logs.mkdir(exist_ok=True)
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, stdout=open(logs / "db-migrate.log", "wb"),
                   stderr=subprocess.STDOUT)
    # Create the embedded MLflow SQLite store once, as `make up` does by starting its MLflow server: mapped
    # tasks creating it at the same moment race in its migrations ("_alembic_tmp_tags already exists").
    subprocess.run([sys.executable, "-c", "from biotune import registry; registry.configure().search_registered_models()"],
                   env=env, check=True, cwd=ROOT, stdout=open(logs / "mlflow-init.log", "wb"), stderr=subprocess.STDOUT)
    procs: dict[str, subprocess.Popen] = {}

    def _interrupt(signum, frame):  # a SIGTERM (CI time-out, kill) still stops the servers below
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        for name, cmd in airflow_commands(airflow, port).items():
            procs[name] = spawn(cmd, env, logs / f"{name}.log", cwd=ROOT)
        try:
            wait_until("the api-server", lambda: http_ok(f"{base}/api/v2/monitor/health"), 180, procs, logs)
        except RuntimeError as exc:
            raise AssertionError(str(exc)) from None
        password = admin_password(airflow_home)
        assert password, f"no generated admin password in {airflow_home}; logs in {logs}"
        log(f"Airflow up on {base} (generated admin password)")
        yield {"base": base, "password": password, "home": home, "logs": logs, "env": env}
    finally:
        # a stopping component may signal back while we stop it: finish stopping them all first
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop({name: proc.pid for name, proc in procs.items()})  # only what this helper started, by PID
        signal.signal(signal.SIGTERM, previous)


class Api:
    """The Airflow REST API with a token for the admin user."""

    def __init__(self, ui: dict):
        self.ui = ui

    def _headers(self) -> dict:
        import requests

        r = requests.post(f"{self.ui['base']}/auth/token", json={"username": "admin", "password": self.ui["password"]},
                          timeout=30)
        r.raise_for_status()
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    def get(self, path: str, **kw):
        import requests

        return requests.get(f"{self.ui['base']}/api/v2{path}", headers=self._headers(), timeout=30, **kw)

    def post(self, path: str, body: dict):
        import requests

        return requests.post(f"{self.ui['base']}/api/v2{path}", headers=self._headers(), json=body, timeout=30)

    def patch(self, path: str, body: dict):
        import requests

        return requests.patch(f"{self.ui['base']}/api/v2{path}", headers=self._headers(), json=body, timeout=30)

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.get(f"/dags/{dag_id}").ok:
                return
            time.sleep(2)
        raise AssertionError(f"{dag_id} not parsed within {timeout:.0f}s; logs in {self.ui['logs']}")
