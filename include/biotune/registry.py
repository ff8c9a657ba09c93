"""MLflow registry: log a training run, register a version, gate it, move ``champion``.

Aliases ``champion`` and ``challenger`` replace the deprecated stages. Registering is
idempotent per Airflow run: a version carries the tag ``dag_run_id`` and a retried task finds
it instead of adding another. Promotion moves one alias (a single atomic call) after writing
the previous champion into a tag, so a failure between steps never leaves two champions.
"""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from biotune import policy, settings
from biotune.errors import RegistryError
from biotune.specs import ModelSpec

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"


@dataclass
class Version:
    name: str
    version: str
    run_id: str
    model_uri: str
    aliases: list[str]
    metrics: dict[str, float]
    tags: dict[str, str]

    def as_dict(self) -> dict:
        return asdict(self)


def configure() -> "Any":
    """Point MLflow at the configured store and check it answers; return a client."""
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = settings.tracking_uri()
    if uri.startswith("sqlite:///"):
        _create_sqlite_store_once(uri)
    elif uri.startswith("http"):
        _check_server(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


_READY_STORES: set[str] = set()


def _create_sqlite_store_once(uri: str) -> None:
    """Create (migrate) an embedded SQLite store under a file lock: parallel tasks opening a
    fresh store at once otherwise collide in MLflow's migrations and leave it broken."""
    if uri in _READY_STORES:
        return
    import fcntl

    from mlflow.tracking import MlflowClient

    path = Path(uri[len("sqlite:///"):])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / ".mlflow-init.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        MlflowClient(tracking_uri=uri, registry_uri=uri).search_registered_models(max_results=1)
    _READY_STORES.add(uri)


def _check_server(uri: str) -> None:
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=5).raise_for_status()
    except Exception as exc:
        raise RegistryError(
            f"the MLflow server at {uri} does not answer ({type(exc).__name__})",
            where="MLFLOW_TRACKING_URI",
            fix="start the MLflow server (make up / make stack-up) or correct MLFLOW_TRACKING_URI; "
                "the task will retry",
        ) from exc


@contextmanager
def _registry_call(what: str):
    """Turn MLflow/network failures into RegistryError so tasks fail with one clear message."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except RegistryError:
        raise
    except (MlflowException, ConnectionError, OSError) as exc:
        raise RegistryError(f"MLflow failed while trying to {what}: {exc}", where=settings.tracking_uri(),
                            fix="check the MLflow server and retry; nothing was half-registered") from exc


def experiment_id(name: str) -> str:

    client = configure()
    with _registry_call(f"open experiment {name}"):
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        location = settings.artifact_root().rstrip("/") + "/" + name
        return client.create_experiment(name, artifact_location=location)


def _spec_tags(spec: ModelSpec) -> dict[str, str]:
    return {"biotune.family": spec.family, "biotune.task": spec.task, "biotune.arch": spec.architecture.kind}


def log_training_run(
    spec: ModelSpec,
    *,
    dag_run_id: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    log_model: Callable[[], Any],
    dataset: Any | None = None,
    dataset_source: str = "",
    plots: dict[str, str] | None = None,
    artifacts: dict[str, str] | None = None,
) -> tuple[str, str]:
    """One MLflow run: params, metrics, the dataset (``log_input``, with digest), the spec, plots,
    extra artifacts and the model (``log_model`` is called inside the run and returns a ModelInfo).
    Returns (run_id, model_uri). Health data never goes into params or tags: only settings and counts.
    """
    import mlflow

    exp_id = experiment_id(f"biotune/{spec.name}")
    with _registry_call(f"log the training run of {spec.name}"):
        with mlflow.start_run(experiment_id=exp_id, run_name=f"{spec.name} {dag_run_id}",
                              tags={"dag_run_id": dag_run_id, "biotune.model": spec.name, **_spec_tags(spec)}) as run:
            mlflow.log_params(params)
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
            mlflow.log_dict(spec.public_dict(), "spec.json")
            if dataset is not None:
                ds = mlflow.data.from_pandas(dataset, source=dataset_source or None, name=f"{spec.name}-training")
                mlflow.log_input(ds, context="training")
            for name, path in (plots or {}).items():
                mlflow.log_artifact(path, artifact_path="plots")
            for subdir, path in (artifacts or {}).items():
                mlflow.log_artifact(path, artifact_path=subdir)
            info = log_model()
            return run.info.run_id, info.model_uri


def find_version(name: str, dag_run_id: str) -> Version | None:
    client = configure()
    with _registry_call(f"look up {name} for run {dag_run_id}"):
        try:
            found = client.search_model_versions(f"name = '{name}' and tags.dag_run_id = '{dag_run_id}'")
        except Exception:  # stores that cannot filter on tags: filter here
            found = [v for v in client.search_model_versions(f"name = '{name}'")
                     if v.tags.get("dag_run_id") == dag_run_id]
    return _version(client, found[0]) if found else None


def register(spec: ModelSpec, *, run_id: str, model_uri: str, dag_run_id: str) -> Version:
    """Register the run's model as a new version with alias ``challenger`` (once per dag_run_id)."""
    client = configure()
    existing = find_version(spec.name, dag_run_id)
    if existing is not None:
        log.info("%s version %s already registered for %s: reusing it", spec.name, existing.version, dag_run_id)
        return existing
    with _registry_call(f"register {spec.name}"):
        try:
            client.get_registered_model(spec.name)
        except Exception:
            client.create_registered_model(spec.name, tags=_spec_tags(spec), description=spec.description)
        # MLflow 3 logged models live at models:/m-<id>; a tracking server insists on the id
        model_id = model_uri[len("models:/"):] if model_uri.startswith("models:/m-") else None
        mv = client.create_model_version(spec.name, source=model_uri, run_id=run_id,
                                         tags={"dag_run_id": dag_run_id}, model_id=model_id)
        _wait_ready(client, spec.name, mv.version)
        client.set_registered_model_alias(spec.name, CHALLENGER, mv.version)
        return _version(client, client.get_model_version(spec.name, mv.version))


def _wait_ready(client, name: str, version: str, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = client.get_model_version(name, version).status
        if status == "READY":
            return
        if status == "FAILED_REGISTRATION":
            raise RegistryError(f"{name} version {version} failed to register", where=settings.tracking_uri(),
                                fix="see the MLflow server log")
        time.sleep(0.5)
    raise RegistryError(f"{name} version {version} not ready after {timeout:.0f}s", where=settings.tracking_uri(),
                        fix="check the MLflow server")


def _version(client, mv) -> Version:
    metrics: dict[str, float] = {}
    if mv.run_id:
        try:
            metrics = dict(client.get_run(mv.run_id).data.metrics)
        except Exception:
            metrics = {}
    return Version(name=mv.name, version=str(mv.version), run_id=mv.run_id or "", model_uri=mv.source,
                   aliases=list(getattr(mv, "aliases", []) or []), metrics=metrics, tags=dict(mv.tags or {}))


def get_alias(name: str, alias: str) -> Version | None:
    from mlflow.exceptions import MlflowException

    client = configure()
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", "")) or "not found" in str(exc).lower() \
                or "does not exist" in str(exc).lower():
            return None
        raise RegistryError(f"cannot read alias {alias} of {name}: {exc}", where=settings.tracking_uri(),
                            fix="check the MLflow server") from exc
    return _version(client, mv)


def champion(name: str) -> Version | None:
    return get_alias(name, CHAMPION)


def gate_and_promote(spec: ModelSpec, version: Version, challenger_value: float,
                     champion_value: float | None) -> dict:
    """Apply ``policy.gate`` and, when it says yes, move ``champion`` to ``version``.

    ``champion_value`` is the current champion's metric on the same held-out data (None when
    there is no champion). The decision and its reasons are written to the version's tags
    either way, so the MLflow UI shows why a version was or was not promoted.
    """
    client = configure()
    current = champion(spec.name)
    if current is not None and current.version == version.version:
        return {"promoted": True, "version": version.version, "reasons": ["already champion (re-run)"],
                "previous": current.tags.get("previous_champion")}
    decision = policy.gate(spec.gate, challenger_value, champion_value if current is not None else None)
    with _registry_call(f"record the gate decision for {spec.name} v{version.version}"):
        client.set_model_version_tag(spec.name, version.version, "gate_decision",
                                     "promoted" if decision.yes else "rejected")
        client.set_model_version_tag(spec.name, version.version, "gate_reasons", json.dumps(decision.reasons))
        client.set_model_version_tag(spec.name, version.version, f"gate_{spec.gate.metric}", f"{challenger_value:.6f}")
        if decision.yes:
            if current is not None:
                client.set_model_version_tag(spec.name, version.version, "previous_champion", current.version)
            client.set_registered_model_alias(spec.name, CHAMPION, version.version)
    log.info("%s v%s %s: %s", spec.name, version.version, "PROMOTED" if decision.yes else "not promoted",
             "; ".join(decision.reasons))
    return {"promoted": decision.yes, "version": version.version, "reasons": decision.reasons,
            "previous": current.version if current else None}


def rollback(name: str) -> dict:
    """Move ``champion`` back to the version it replaced (recorded at promotion)."""
    client = configure()
    current = champion(name)
    if current is None:
        raise RegistryError(f"{name} has no champion to roll back", where=name,
                            fix="run the fine-tuning DAG first, or check the name with `biotune registry list`")
    previous = current.tags.get("previous_champion")
    if not previous:
        raise RegistryError(f"{name} v{current.version} has no previous champion recorded", where=name,
                            fix="promote an earlier version by hand in the MLflow UI (set alias 'champion')")
    with _registry_call(f"roll back {name}"):
        client.set_model_version_tag(name, current.version, "rolled_back", "true")
        client.set_registered_model_alias(name, CHAMPION, previous)
    return {"name": name, "from": current.version, "to": previous}


def list_models() -> list[dict]:
    """Every registered model with its champion and challenger and their metrics."""
    client = configure()
    rows = []
    with _registry_call("list registered models"):
        for rm in client.search_registered_models(max_results=1000):
            row: dict[str, Any] = {"name": rm.name, "latest_version": None, "champion": None, "challenger": None}
            versions = client.search_model_versions(f"name = '{rm.name}'")
            row["latest_version"] = max((int(v.version) for v in versions), default=None)
            for alias in (CHAMPION, CHALLENGER):
                v = get_alias(rm.name, alias)
                if v is not None:
                    row[alias] = {"version": v.version, "run_id": v.run_id, "metrics": v.metrics,
                                  "gate_decision": v.tags.get("gate_decision")}
            rows.append(row)
    return sorted(rows, key=lambda r: r["name"])


def download_run_artifact(run_id: str, path: str) -> str:
    import mlflow

    configure()
    with _registry_call(f"download {path} of run {run_id}"):
        return mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path)


os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")


def publish(candidate: dict, dag_run_id: str) -> dict:
    """Register an evaluated candidate and gate it: the register-gate-promote step of every family.

    ``candidate`` is the evaluate step's dict: ``model`` (spec name), ``family_module`` (a module
    with ``log_model(candidate, local_dir)`` and ``training_frame(candidate)``), ``artifact`` (the
    trained files in the lake), ``params``, ``metrics``, ``plots``, ``dataset``, ``challenger_value``
    and ``champion_value`` (both measured on the same held-out data).
    """
    import importlib
    import tempfile

    from biotune import storage
    from biotune.specs import get_spec

    spec = get_spec(candidate["model"])
    family = importlib.import_module(candidate["family_module"])
    version = find_version(spec.name, dag_run_id)
    if version is None:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp)
            storage.download_dir(candidate["artifact"], str(local / "model"))
            plots = {}
            if candidate.get("plots"):
                storage.download_dir(candidate["plots"], str(local / "plots"))
                plots = {p.stem: str(p) for p in sorted((local / "plots").glob("*.png"))}
            frame = family.training_frame(candidate)
            reference = local / "reference" / "features.parquet"
            reference.parent.mkdir()
            frame.to_parquet(reference, index=False)
            run_id, model_uri = log_training_run(
                spec, dag_run_id=dag_run_id, params=candidate["params"], metrics=candidate["metrics"],
                log_model=lambda: family.log_model(candidate, str(local / "model")),
                dataset=frame, dataset_source=candidate["dataset"], plots=plots,
                artifacts={"reference": str(reference)},
            )
        version = register(spec, run_id=run_id, model_uri=model_uri, dag_run_id=dag_run_id)
    decision = gate_and_promote(spec, version, candidate["challenger_value"], candidate.get("champion_value"))
    return {"model": spec.name, "version": version.version, "run_id": version.run_id, **decision,
            "metric": spec.gate.metric, "challenger_value": candidate["challenger_value"],
            "champion_value": candidate.get("champion_value")}
