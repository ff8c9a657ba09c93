"""MLflow's basic-auth app as `make up` and the stack start it (scripts/localproc.py): a real server on
127.0.0.1 with a SQLite store. biotune registers and promotes through it with the generated credentials;
an anonymous client cannot move `champion` (401) and the alias stays where it was."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import localproc  # noqa: E402

from biotune import registry  # noqa: E402
from biotune.specs import ModelSpec  # noqa: E402

CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("mlflow-auth")
    auth = localproc.mlflow_auth(home / "auth")
    port = localproc.free_port()
    url = f"http://127.0.0.1:{port}"
    import os

    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")},
           **localproc.mlflow_server_env(auth)}
    cmd = localproc.mlflow_server_command(str(Path(sys.executable).with_name("mlflow")), port,
                                          f"sqlite:///{home / 'mlflow.db'}",
                                          "--artifacts-destination", (home / "artifacts").as_uri())
    log = home / "mlflow.log"
    proc = localproc.spawn(cmd, env, log)
    try:
        waited = localproc.wait_until("MLflow server", lambda: localproc.http_ok(f"{url}/health"), 120,
                                      {"mlflow": proc}, log)
        print(f"MLflow basic-auth server up in {waited:.1f}s")
        yield {"url": url, "auth": auth, "home": home}
    finally:
        localproc.stop({"mlflow": proc.pid})


@pytest.fixture
def as_admin(server, home, monkeypatch):
    for k, v in localproc.mlflow_client_env(server["url"], server["auth"]).items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("BIOTUNE_MLFLOW_ARTIFACTS", "mlflow-artifacts:/experiments")
    return server


def _anonymous(monkeypatch):
    for k in CREDENTIALS:
        monkeypatch.delenv(k, raising=False)


def _log_run(spec: ModelSpec) -> tuple[str, str]:
    x = np.random.default_rng(0).normal(size=(30, 2))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    # pip_requirements given: MLflow's inference of them (a subprocess importing the model) costs seconds
    return registry.log_training_run(
        spec, dag_run_id="auth-1", params={"C": 1.0}, metrics={"auc": 0.7},
        log_model=lambda: mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"]))


def test_secrets_are_private_and_reused(server):
    cred = Path(server["auth"]["file"])
    assert stat.S_IMODE(cred.stat().st_mode) == 0o600
    assert stat.S_IMODE(cred.parent.stat().st_mode) == 0o700
    assert server["auth"]["password"] not in Path(server["auth"]["ini"]).read_text()
    assert localproc.mlflow_auth(cred.parent)["password"] == server["auth"]["password"]  # not regenerated


def assert_anonymous_cannot_move_champion(url: str, credentials: dict[str, str], monkeypatch,
                                          name: str = "mood-depression-xgb") -> None:
    """Register v1 (champion) and v2 with ``credentials``; an anonymous client's move of `champion` to
    v2 gets 401 and moves nothing; the authenticated client's move works. Also used by test_stack."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from biotune.errors import RegistryError

    for k, v in credentials.items():
        monkeypatch.setenv(k, v)
    task = name.split("-")[1]
    spec = ModelSpec(name=name, family="mood", task=task, architecture={"kind": "xgboost"},
                     gate={"metric": "auc", "min_absolute": 0.5, "min_improvement": 0.0},
                     retraining={"dag_id": "mood_population_finetune"})
    run_id, uri = _log_run(spec)  # through the server, with the credentials
    v1 = registry.register(spec, run_id=run_id, model_uri=uri, dag_run_id="auth-1")
    registry.promote_version(spec.name, v1.version)
    v2 = registry.register(spec, run_id=run_id, model_uri=uri, dag_run_id="auth-2")
    assert registry.champion(spec.name).version == v1.version

    _anonymous(monkeypatch)
    with pytest.raises(MlflowException) as refused:
        MlflowClient(tracking_uri=url, registry_uri=url).set_registered_model_alias(spec.name, "champion",
                                                                                    v2.version)
    assert "401" in str(refused.value)
    registry._READY_STORES.discard(url)  # biotune's own client, anonymous: a typed error naming the settings
    with pytest.raises(RegistryError) as err:
        registry.configure()
    assert "MLFLOW_TRACKING_USERNAME" in str(err.value) and err.value.bad_input

    for k, v in credentials.items():
        monkeypatch.setenv(k, v)
    assert registry.champion(spec.name).version == v1.version  # the anonymous call moved nothing
    MlflowClient(tracking_uri=url, registry_uri=url).set_registered_model_alias(spec.name, "champion", v2.version)
    assert registry.champion(spec.name).version == v2.version


def test_anonymous_alias_move_is_refused(as_admin, monkeypatch):
    assert_anonymous_cannot_move_champion(
        as_admin["url"], localproc.mlflow_client_env(as_admin["url"], as_admin["auth"]), monkeypatch)


def test_wrong_password_is_refused(as_admin, monkeypatch):
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-password")
    url = as_admin["url"]
    with pytest.raises(MlflowException, match="401"):
        MlflowClient(tracking_uri=url, registry_uri=url).search_registered_models(max_results=1)
