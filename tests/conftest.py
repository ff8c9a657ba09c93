"""Every test session gets its own BIOTUNE_HOME (lake, MLflow store, Airflow home)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="biotune-test-"))
# Never the user's state: `make test` runs with the Makefile's exports (the demo's Airflow home,
# whose metadata DB may hold queued runs), so every location is overridden, not defaulted.
_LOCATIONS = ("BIOTUNE_LAKE", "BIOTUNE_SPECS", "BIOTUNE_EXPECTATIONS", "BIOTUNE_PRETRAINED", "BIOTUNE_DRIFT_DB",
              "BIOTUNE_MLFLOW_ARTIFACTS", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
for _var in [v for v in os.environ if v in _LOCATIONS or v.startswith("AIRFLOW__DATABASE__")]:
    os.environ.pop(_var)
os.environ["BIOTUNE_HOME"] = str(_SESSION_HOME)
os.environ["AIRFLOW_HOME"] = str(_SESSION_HOME / "airflow")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh BIOTUNE_HOME for one test: its own lake and MLflow store."""
    monkeypatch.setenv("BIOTUNE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("BIOTUNE_LAKE", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path / "home"


@pytest.fixture(scope="session")
def airflow_db():
    """`airflow db migrate` once per session in the session's AIRFLOW_HOME (SQLite)."""
    Path(os.environ["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    airflow = Path(sys.executable).with_name("airflow")
    out = subprocess.run([str(airflow), "db", "migrate"], capture_output=True, text=True, env=os.environ.copy())
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    sys.path.insert(0, str(ROOT / "plugins"))
    return os.environ["AIRFLOW_HOME"]
