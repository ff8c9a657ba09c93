"""The distributed topology of docker-compose.yaml as local processes on 127.0.0.1.

    python scripts/stack.py up   [--home DIR] [--suffix S]   # start everything, print the UI URL and password
    python scripts/stack.py down [--home DIR] [--keep-db]    # stop exactly what `up` started, drop its databases
    python scripts/stack.py status | env                     # what runs where / the environment to talk to it

Topology (the same settings as the compose stack):
  PostgreSQL (the machine's server): databases biotune_airflow_<suffix>, biotune_mlflow_<suffix>,
      biotune_data_<suffix> (drift history), created as user postgres and dropped by `down`;
  Redis (the machine's server): a dedicated db number and a queue named biotune_<suffix>, so several
      stacks can share one Redis;
  moto_server: an S3-compatible store with a bucket, IAM-enforced credentials (a wrong key is refused);
  MLflow server: PostgreSQL backend, artifacts proxied to s3://<bucket>/mlflow, basic auth (users in
      biotune_mlflow_auth_<suffix>; admin password generated into <home>/stack/mlflow-auth/, 0600);
  Airflow 3 with CeleryExecutor: api-server, scheduler, dag-processor, triggerer, a Celery worker.
The lake is s3://<bucket>/lake. Ports are chosen free at start; PIDs, ports and secrets are in
<home>/stack/state.json and the logs in <home>/stack/logs/.

Also a library: ``Stack(home).up()``, ``.env()``, ``.stop("airflow-worker", signal.SIGKILL)``,
``.start("airflow-worker")``, ``.down()`` (the integration tests use it).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import localproc  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PG_HOST = os.environ.get("BIOTUNE_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("BIOTUNE_PG_PORT", "5432"))
PG_USER = os.environ.get("BIOTUNE_PG_USER", "postgres")
REDIS_HOST = os.environ.get("BIOTUNE_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("BIOTUNE_REDIS_PORT", "6379"))
REGION = "us-east-1"

AIRFLOW_COMPONENTS = ["airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                      "airflow-worker"]
ORDER = ["s3", "mlflow", *AIRFLOW_COMPONENTS]


class StackError(RuntimeError):
    pass


free_port = localproc.free_port


def _pg(dbname: str = "postgres"):
    import psycopg2

    conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname, connect_timeout=5)
    conn.autocommit = True
    return conn


def services_reachable() -> str | None:
    """None when PostgreSQL and Redis answer, else the reason (for pytest.skip)."""
    try:
        _pg().close()
    except Exception as exc:  # noqa: BLE001
        return f"PostgreSQL at {PG_HOST}:{PG_PORT} (user {PG_USER}) is unreachable: {exc}"
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=3) as s:
            s.sendall(b"PING\r\n")
            if not s.recv(64).startswith(b"+PONG"):
                return f"Redis at {REDIS_HOST}:{REDIS_PORT} did not answer PING"
    except OSError as exc:
        return f"Redis at {REDIS_HOST}:{REDIS_PORT} is unreachable: {exc}"
    return None


def _wait(what: str, check, timeout: float, proc_alive=None, log: Path | None = None) -> None:
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # noqa: BLE001
            last = exc
        if proc_alive is not None and not proc_alive():
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise StackError(f"{what} exited during start-up; log {log}:\n{tail}")
        time.sleep(1)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise StackError(f"{what} not ready after {timeout:.0f}s (last error: {last}); log {log}:\n{tail}")


def _http_ok(url: str, timeout: float = 3) -> bool:
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback only)
        return 200 <= resp.status < 300


class Stack:
    def __init__(self, home: str | os.PathLike | None = None, suffix: str | None = None):
        base = Path(home or os.environ.get("BIOTUNE_HOME") or ROOT / ".biotune").resolve()
        self.dir = base / "stack"
        self.state_file = self.dir / "state.json"
        self.logs = self.dir / "logs"
        self.state: dict = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
        if not self.state:
            self.state = self._plan(suffix or secrets.token_hex(3))
        self.state["databases"].setdefault("mlflow_auth", f"biotune_mlflow_auth_{self.state['suffix']}")  # older states

    # ---------------------------------------------------------------- plan and environment
    def _plan(self, suffix: str) -> dict:
        from cryptography.fernet import Fernet

        suffix = "".join(c for c in suffix.lower() if c.isalnum())[:20] or secrets.token_hex(3)
        return {
            "suffix": suffix,
            "databases": {k: f"biotune_{k}_{suffix}" for k in ("airflow", "mlflow", "mlflow_auth", "data")},
            "redis_db": 1 + zlib.crc32(suffix.encode()) % 15,
            "queue": f"biotune_{suffix}",
            "bucket": f"biotune-{suffix}",
            "ports": {},
            "pids": {},
            "admin_user": "admin",
            "admin_password": secrets.token_urlsafe(12),
            "fernet_key": Fernet.generate_key().decode(),
            "jwt_secret": secrets.token_urlsafe(32),
            "api_secret_key": secrets.token_urlsafe(32),
            "s3_access_key": None,
            "s3_secret_key": None,
        }

    def _save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2))
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.state_file)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.state['ports']['api']}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.state['ports']['mlflow']}"

    @functools.cached_property
    def mlflow_auth(self) -> dict[str, str]:
        """The MLflow server's admin (generated once, 0600) and its user store in PostgreSQL."""
        return localproc.mlflow_auth(self.dir / "mlflow-auth", self.pg_uri("mlflow_auth"))

    @property
    def s3_url(self) -> str:
        return f"http://127.0.0.1:{self.state['ports']['s3']}"

    @property
    def lake(self) -> str:
        return f"s3://{self.state['bucket']}/lake"

    def pg_uri(self, key: str, driver: str = "postgresql+psycopg2") -> str:
        return f"{driver}://{PG_USER}@{PG_HOST}:{PG_PORT}/{self.state['databases'][key]}"

    def s3_env(self) -> dict[str, str]:
        s = self.state
        return {"AWS_ACCESS_KEY_ID": s["s3_access_key"] or "", "AWS_SECRET_ACCESS_KEY": s["s3_secret_key"] or "",
                "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": self.s3_url,
                "MLFLOW_S3_ENDPOINT_URL": self.s3_url}

    def env(self) -> dict[str, str]:
        """The environment every component (and a client such as a test) gets."""
        s, p = self.state, self.state["ports"]
        airflow_home = self.dir / "airflow"
        return {
            **self.s3_env(),
            "BIOTUNE_HOME": str(self.dir),
            "BIOTUNE_LAKE": self.lake,
            "BIOTUNE_DRIFT_DB": self.pg_uri("data"),
            "BIOTUNE_MLFLOW_ARTIFACTS": "mlflow-artifacts:/experiments",
            "BIOTUNE_MLFLOW_UI_URL": self.mlflow_url,
            **localproc.mlflow_client_env(self.mlflow_url, self.mlflow_auth),  # the server refuses anonymous calls
            "MLFLOW_ENABLE_TELEMETRY": "false",
            # Artifacts go through the MLflow server both ways: no presigned S3 URLs, which moto's IAM
            # auth refuses and which would name an endpoint a client may not reach.
            "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD": "false",
            "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "false",
            "DO_NOT_TRACK": "1",
            "GIT_PYTHON_REFRESH": "quiet",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT / "include"), os.environ.get("PYTHONPATH")) if p),
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__FERNET_KEY": s["fernet_key"],
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            "AIRFLOW__CORE__AUTH_MANAGER":
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{s['admin_user']}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.dir / "passwords.json"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.pg_uri("airflow"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": self.pg_uri("airflow", "postgresql+asyncpg"),
            "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{s['redis_db']}",
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.pg_uri("airflow"),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": os.environ.get("BIOTUNE_WORKER_CONCURRENCY", "2"),
            "AIRFLOW__CELERY__POOL": os.environ.get("BIOTUNE_CELERY_POOL", "prefork"),
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": s["queue"],
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(p["api"]),
            "AIRFLOW__API__BASE_URL": self.api_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": s["api_secret_key"],
            "AIRFLOW__API_AUTH__JWT_SECRET": s["jwt_secret"],
            "AIRFLOW__API_AUTH__JWT_ISSUER": f"biotune-{s['suffix']}",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(p["worker_logs"]),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(p["trigger_logs"]),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT":
                os.environ.get("BIOTUNE_HEARTBEAT_TIMEOUT", "60"),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        }

    PASS_THROUGH = ("BIOTUNE_SPECS", "BIOTUNE_EXPECTATIONS", "BIOTUNE_PRETRAINED")

    def _component_env(self, name: str | None = None) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("AIRFLOW", "BIOTUNE_", "MLFLOW_", "AWS_")) or k in self.PASS_THROUGH}
        server = localproc.mlflow_server_env(self.mlflow_auth) if name == "mlflow" else {}
        return {**keep, **self.env(), **server}

    def commands(self) -> dict[str, list[str]]:
        p, s = self.state["ports"], self.state
        airflow = str(BIN / "airflow")
        return {
            "s3": [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(p["s3"])],
            "mlflow": localproc.mlflow_server_command(str(BIN / "mlflow"), p["mlflow"], self.pg_uri("mlflow"),
                                                      "--serve-artifacts", "--artifacts-destination",
                                                      f"s3://{s['bucket']}/mlflow"),
            "airflow-api-server": [airflow, "api-server", "--host", "127.0.0.1", "--port", str(p["api"])],
            "airflow-scheduler": [airflow, "scheduler"],
            "airflow-dag-processor": [airflow, "dag-processor"],
            # The log servers bind every interface (hard-coded in Airflow): skipped here, the api-server
            # reads the task logs from the shared AIRFLOW_HOME/logs instead.
            "airflow-triggerer": [airflow, "triggerer", "--skip-serve-logs"],
            "airflow-worker": [airflow, "celery", "worker", "-q", s["queue"], "-H", f"biotune-worker-{s['suffix']}@%h",
                               "--pid", str(self.dir / "airflow-worker.pid"), "--without-mingle", "--without-gossip",
                               "--skip-serve-logs"],
        }

    # ---------------------------------------------------------------- processes
    def _alive(self, name: str) -> bool:
        pid = self.state["pids"].get(name)
        if not pid:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        try:  # a zombie child of this process counts as dead
            return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
        except OSError:
            return False

    def start(self, name: str) -> int:
        if self._alive(name):
            return self.state["pids"][name]
        self.logs.mkdir(parents=True, exist_ok=True)
        if name == "airflow-worker":
            (self.dir / "airflow-worker.pid").unlink(missing_ok=True)
        log_path = self.logs / f"{name}.log"
        self.state.setdefault("log_offsets", {})[name] = log_path.stat().st_size if log_path.exists() else 0
        log = open(log_path, "ab")
        proc = subprocess.Popen(self.commands()[name], env=self._component_env(name), cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.state["pids"][name] = proc.pid
        self._save()
        self._children = getattr(self, "_children", {})
        self._children[name] = proc
        return proc.pid

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        """Stop one component: its process group (we started it as a session leader), by PID."""
        pid = self.state["pids"].get(name)
        if not pid:
            return
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.time() + timeout
        while time.time() < deadline and self._group_alive(pid):
            self._reap(name)
            time.sleep(0.3)
        if self._group_alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            time.sleep(0.5)
        self._reap(name)
        self.state["pids"].pop(name, None)
        self._save()

    def _reap(self, name: str) -> None:
        proc = getattr(self, "_children", {}).get(name)
        if proc is not None:
            proc.poll()

    _group_alive = staticmethod(localproc.group_alive)

    # ---------------------------------------------------------------- lifecycle
    def up(self, timeout: float = 240, progress=print) -> dict:
        if any(self._alive(n) for n in ORDER):
            raise StackError(f"a stack is already running from {self.state_file}; run `down` first")
        self.state["ports"] = {k: free_port() for k in ("api", "mlflow", "s3", "worker_logs", "trigger_logs")}
        self._save()
        try:
            self._create_databases(progress)
            self._start_s3(progress)
            self._start_mlflow(timeout, progress)
            self._migrate(progress)
            self._start_airflow(timeout, progress)
        except BaseException:
            progress("start-up failed; stopping what was started")
            self.down(progress=lambda *_: None)
            raise
        return self.info()

    def _create_databases(self, progress) -> None:
        conn = _pg()
        try:
            with conn.cursor() as cur:
                for db in self.state["databases"].values():
                    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
                    if cur.fetchone() is None:
                        cur.execute(f'CREATE DATABASE "{db}"')
        finally:
            conn.close()
        progress(f"PostgreSQL databases: {', '.join(self.state['databases'].values())}")

    def _start_s3(self, progress) -> None:
        import boto3
        import urllib.request

        self.start("s3")
        log = self.logs / "s3.log"
        _wait("moto_server", lambda: socket.create_connection(("127.0.0.1", self.state["ports"]["s3"]), 1).close()
              or True, 60, lambda: self._alive("s3"), log)
        # Bootstrap without auth, then turn IAM auth on: from now only the generated key works.
        boot = dict(endpoint_url=self.s3_url, region_name=REGION, aws_access_key_id="bootstrap",
                    aws_secret_access_key="bootstrap")
        iam = boto3.client("iam", **boot)
        iam.create_user(UserName="biotune")
        iam.put_user_policy(UserName="biotune", PolicyName="s3-all", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="biotune")["AccessKey"]
        boto3.client("s3", **boot).create_bucket(Bucket=self.state["bucket"])
        req = urllib.request.Request(f"{self.s3_url}/moto-api/reset-auth", data=b"0", method="POST",
                                     headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(req, timeout=10).read()  # noqa: S310 (loopback)
        self.state["s3_access_key"], self.state["s3_secret_key"] = key["AccessKeyId"], key["SecretAccessKey"]
        self._save()
        progress(f"S3 (moto_server): {self.s3_url}  bucket s3://{self.state['bucket']} (IAM auth enforced)")

    def _start_mlflow(self, timeout, progress) -> None:
        self.start("mlflow")
        _wait("MLflow server", lambda: _http_ok(f"{self.mlflow_url}/health"), timeout,
              lambda: self._alive("mlflow"), self.logs / "mlflow.log")
        progress(f"MLflow: {self.mlflow_url}  (PostgreSQL {self.state['databases']['mlflow']}, "
                 f"artifacts s3://{self.state['bucket']}/mlflow, basic auth: {self.mlflow_auth['file']})")

    def _migrate(self, progress) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        (self.dir / "airflow").mkdir(parents=True, exist_ok=True)
        pw = self.dir / "passwords.json"
        pw.write_text(json.dumps({self.state["admin_user"]: self.state["admin_password"]}) + "\n")
        os.chmod(pw, 0o600)
        with open(self.logs / "airflow-db-migrate.log", "wb") as log:
            code = subprocess.call([str(BIN / "airflow"), "db", "migrate"], env=self._component_env(), cwd=ROOT,
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if code:
            tail = (self.logs / "airflow-db-migrate.log").read_text(errors="replace")[-3000:]
            raise StackError(f"airflow db migrate failed ({code}):\n{tail}")
        progress(f"Airflow metadata migrated: PostgreSQL {self.state['databases']['airflow']}")

    def _start_airflow(self, timeout, progress) -> None:
        for name in AIRFLOW_COMPONENTS:
            self.start(name)
        api_log = self.logs / "airflow-api-server.log"
        _wait("Airflow api-server", lambda: _http_ok(f"{self.api_url}/api/v2/monitor/health"), timeout,
              lambda: self._alive("airflow-api-server"), api_log)

        def healthy() -> bool:
            import urllib.request

            for name in AIRFLOW_COMPONENTS:
                if not self._alive(name):
                    raise StackError(f"{name} exited; log {self.logs / (name + '.log')}:\n"
                                     + (self.logs / f"{name}.log").read_text(errors="replace")[-3000:])
            with urllib.request.urlopen(f"{self.api_url}/api/v2/monitor/health", timeout=5) as r:  # noqa: S310
                health = json.load(r)
            parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
            return all((health.get(k) or {}).get("status") == "healthy" for k in parts) and self.worker_ready()

        _wait("Airflow scheduler, triggerer, dag-processor and Celery worker", healthy, timeout)
        progress(f"Airflow (CeleryExecutor, queue {self.state['queue']}, Redis db {self.state['redis_db']}): "
                 f"{self.api_url}")

    def worker_ready(self) -> bool:
        """The Celery worker started last has logged `ready.`."""
        log = self.logs / "airflow-worker.log"
        if not log.exists():
            return False
        with open(log, "rb") as fh:
            fh.seek(self.state.get("log_offsets", {}).get("airflow-worker", 0))
            return b" ready." in fh.read()

    def restart_worker(self, timeout: float = 120) -> None:
        self.start("airflow-worker")
        _wait("Celery worker", self.worker_ready, timeout, lambda: self._alive("airflow-worker"),
              self.logs / "airflow-worker.log")

    def down(self, drop: bool = True, progress=print) -> None:
        for name in reversed(ORDER):
            if self.state["pids"].get(name):
                self.stop(name)
                progress(f"stopped {name}")
        if drop:
            self._drop_databases(progress)
            self._clean_redis()
        if drop and self.state_file.exists():
            self.state_file.unlink()
        if drop:  # its user store was dropped with the databases
            import shutil

            shutil.rmtree(self.dir / "mlflow-auth", ignore_errors=True)

    def _drop_databases(self, progress) -> None:
        try:
            conn = _pg()
        except Exception as exc:  # noqa: BLE001
            progress(f"cannot reach PostgreSQL to drop the databases: {exc}")
            return
        try:
            with conn.cursor() as cur:
                for db in self.state["databases"].values():
                    cur.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        finally:
            conn.close()
        progress(f"dropped {', '.join(self.state['databases'].values())}")

    def _clean_redis(self) -> None:
        """Delete only this stack's keys in its Redis db (another stack may share the db): its queue, its
        binding, and the unacked messages of its queue (left when a worker was killed mid-task)."""
        q = self.state["queue"]
        try:
            import redis

            r = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=self.state["redis_db"], socket_timeout=5)
            r.delete(q, f"_kombu.binding.{q}")
            for tag, payload in r.hscan_iter("unacked"):
                if q.encode() in payload:
                    r.hdel("unacked", tag)
                    r.zrem("unacked_index", tag)
            r.close()
        except Exception:  # noqa: BLE001 (best effort: Redis gone, or redis-py missing)
            pass

    def info(self) -> dict:
        return {"ui": self.api_url, "user": self.state["admin_user"], "password": self.state["admin_password"],
                "mlflow": self.mlflow_url, "mlflow_user": self.mlflow_auth["username"],
                "mlflow_password": self.mlflow_auth["password"], "s3": self.s3_url, "lake": self.lake,
                "databases": self.state["databases"], "redis_db": self.state["redis_db"],
                "queue": self.state["queue"], "pids": self.state["pids"], "logs": str(self.logs)}

    def status(self) -> dict:
        return {name: {"pid": self.state["pids"].get(name), "alive": self._alive(name)} for name in ORDER}

    # ---------------------------------------------------------------- clients
    def token(self) -> str:
        import requests

        r = requests.post(f"{self.api_url}/auth/token", json={"username": self.state["admin_user"],
                                                               "password": self.state["admin_password"]}, timeout=30)
        r.raise_for_status()
        return r.json()["access_token"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    parser.add_argument("--home", default=None, help="BIOTUNE_HOME (state goes to HOME/stack)")
    parser.add_argument("--suffix", default=None, help="database/queue suffix (default: random)")
    parser.add_argument("--keep-db", action="store_true", help="down: keep the databases and state")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args(argv)
    stack = Stack(args.home, args.suffix)
    if args.command == "up":
        reason = services_reachable()
        if reason:
            print(f"cannot start the stack: {reason}", file=sys.stderr)
            return 2
        try:
            info = stack.up(timeout=args.timeout)
        except StackError as exc:
            print(f"stack-up failed: {exc}", file=sys.stderr)
            return 1
        print()
        print(f"Airflow UI:  {info['ui']}   user: {info['user']}   password: {info['password']}")
        print(f"MLflow UI:   {info['mlflow']}   user: {info['mlflow_user']}   password: {info['mlflow_password']}")
        print(f"S3 (moto):   {info['s3']}   lake: {info['lake']}")
        print(f"state: {stack.state_file}   logs: {info['logs']}   stop with: make stack-down")
        print(f"client environment: eval \"$({BIN / 'python'} {Path(__file__).resolve()} env "
              f"--home {stack.dir.parent})\"")
    elif args.command == "down":
        if not stack.state_file.exists():
            print(f"no stack state at {stack.state_file}: nothing to stop")
            return 0
        stack.down(drop=not args.keep_db)
    elif args.command == "status":
        if not stack.state_file.exists():
            print("no stack running")
            return 1
        print(json.dumps({**stack.info(), "processes": stack.status()}, indent=2))
    elif args.command == "env":
        if not stack.state_file.exists():
            print(f"no stack state at {stack.state_file}", file=sys.stderr)
            return 1
        import shlex

        for k, v in stack.env().items():
            print(f"export {k}={shlex.quote(v)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
