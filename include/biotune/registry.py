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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from biotune import policy, settings
from biotune.errors import RegistryError
from biotune.specs import ModelSpec

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
WARNINGS_TAG = "biotune.warnings"  # a run tag: a JSON list of warnings for people (log_training_run)


@dataclass
class Version:
    name: str
    version: str
    run_id: str
    model_uri: str
    aliases: list[str]
    metrics: dict[str, float]
    tags: dict[str, str]
    warnings: list[str] = field(default_factory=list)  # the run's (e.g. a small test set with a val/test gap)

    def as_dict(self) -> dict:
        return asdict(self)


class RegistryConfigError(RegistryError):
    """MLFLOW_TRACKING_URI names a store biotune cannot use: fix the setting, retrying will not help."""

    bad_input = True


SUPPORTED_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "file", "databricks")


def configure() -> "Any":
    """Point MLflow at the configured store and check it answers; return a client. Every failure is a
    RegistryError naming MLFLOW_TRACKING_URI (credentials redacted), never a raw traceback."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    settings.apply_mlflow_connection()
    uri = settings.tracking_uri()
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower() if ":" in uri else "file"
    if scheme not in SUPPORTED_SCHEMES:
        raise RegistryConfigError(f"MLflow cannot keep a registry at {uri!r} (scheme {scheme!r})",
                                  where="MLFLOW_TRACKING_URI",
                                  fix="use sqlite:///<path>, http(s)://<mlflow server> or a SQL database URL "
                                      "such as postgresql+psycopg2://<host>/<database>")
    try:
        if uri.startswith("sqlite:///"):
            _create_sqlite_store_once(uri)
        elif uri.startswith("http"):
            _check_server(uri)
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        if scheme in ("postgresql", "mysql", "mssql", "http", "https") and uri not in _READY_STORES:
            # a closed port, a missing driver or (server with auth) missing credentials shows here
            client.search_registered_models(max_results=1)
            _READY_STORES.add(uri)
        return client
    except RegistryError:
        raise
    except MlflowException as exc:
        if _http_status(exc) not in (401, 403):
            raise _unreachable(uri, exc) from exc
        user = os.environ.get("MLFLOW_TRACKING_USERNAME")
        raise RegistryConfigError(
            f"the MLflow server at {uri} refused {'user ' + repr(user) if user else 'an anonymous client'} "
            f"(HTTP {_http_status(exc)})", where="MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD",
            fix="set both to an MLflow user allowed to edit models (make up's admin is in "
                "$BIOTUNE_HOME/mlflow/auth/credentials.json), or in Airflow give the login to the "
                f"connection {settings.mlflow_conn_id()}") from exc
    except ModuleNotFoundError as exc:
        raise RegistryConfigError(f"the MLflow store at {uri} needs the Python module {exc.name!r}",
                                  where="MLFLOW_TRACKING_URI",
                                  fix="name the installed driver in the URL (postgresql+psycopg2://...) "
                                      "or install the module") from exc
    except Exception as exc:  # the store is unreachable or unwritable: an infrastructure fault, retried
        raise _unreachable(uri, exc) from exc


def _unreachable(uri: str, exc: Exception) -> RegistryError:
    return RegistryError(f"cannot open the MLflow store at {uri}: {type(exc).__name__}: {exc}",
                         where="MLFLOW_TRACKING_URI",
                         fix="check that the database or folder exists, is writable and answers; the task will retry")


def _http_status(exc: Exception) -> int | None:
    try:
        return int(exc.get_http_status_code())
    except (AttributeError, TypeError, ValueError):
        return None


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
def registry_call(what: str):
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
    with registry_call(f"open experiment {name}"):
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        location = settings.artifact_root().rstrip("/") + "/" + name
        return client.create_experiment(name, artifact_location=location)


_registry_call = registry_call  # the name older callers use


def _spec_tags(spec: ModelSpec) -> dict[str, str]:
    return {"biotune.family": spec.family, "biotune.task": spec.task, "biotune.arch": spec.architecture.kind,
            "biotune.task_type": spec.task_type, "biotune.scope": spec.scope}


PERSON_SEPARATOR = "--"


def registered_name(spec: ModelSpec, person: str | None = None) -> str:
    """The registered model name: the spec's name for a population model, ``<spec>--<person>`` for
    one person's model (``person`` is a pseudonym, never a real id)."""
    if spec.scope == "person":
        if not person:
            raise RegistryError(f"{spec.name} is a per-person model: name the person", where=spec.name,
                                fix="pass the person's pseudonym")
        return f"{spec.name}{PERSON_SEPARATOR}{person}"
    return spec.name


def spec_name_of(registered: str) -> tuple[str, str | None]:
    """(spec name, person or None) of a registered model name."""
    spec_name, sep, person = registered.partition(PERSON_SEPARATOR)
    return spec_name, (person if sep else None)


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
    history: dict[str, list[float]] | None = None,
    warnings: list[str] | None = None,
    registered: str | None = None,
    inputs: list[tuple[Any, str, str]] | None = None,
    dag_params: dict | None = None,
) -> tuple[str, str]:
    """One MLflow run: params, metrics, the dataset (``log_input``, with digest), the spec, plots,
    extra artifacts and the model (``log_model`` is called inside the run and returns a ModelInfo).
    Returns (run_id, model_uri). Health data never goes into params or tags: only settings and counts.
    """
    import mlflow

    name = registered or spec.name
    exp_id = experiment_id(f"biotune/{name}")
    with registry_call(f"log the training run of {name}"):
        with mlflow.start_run(experiment_id=exp_id, run_name=f"{name} {dag_run_id}",
                              tags={"dag_run_id": dag_run_id, "biotune.model": name, **_spec_tags(spec)}) as run:
            mlflow.log_params(params)
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
            for key, values in (history or {}).items():  # per-epoch curves: the MLflow UI draws them
                name = key if key.startswith("epoch_") else f"epoch_{key}"  # never the final metric's name
                for step, value in enumerate(values):
                    mlflow.log_metric(name, float(value), step=step)
            if warnings:
                mlflow.set_tag(WARNINGS_TAG, json.dumps(warnings))
            mlflow.log_dict(spec.public_dict(), "spec.json")
            if dag_params:
                mlflow.log_dict(dag_params, DAG_PARAMS)
            if dataset is not None:
                ds = mlflow.data.from_pandas(dataset, source=dataset_source or None, name=f"{spec.name}-training")
                mlflow.log_input(ds, context="training")
            for frame, source, input_name in inputs or []:  # a retrain's production batches
                mlflow.log_input(mlflow.data.from_pandas(frame, source=source, name=input_name), context="production")
            for name, path in (plots or {}).items():
                mlflow.log_artifact(path, artifact_path="plots")
            for subdir, path in (artifacts or {}).items():
                if Path(path).is_dir():
                    mlflow.log_artifacts(path, artifact_path=subdir)
                else:
                    mlflow.log_artifact(path, artifact_path=subdir)
            info = log_model()
            return run.info.run_id, info.model_uri


def find_version(name: str, dag_run_id: str) -> Version | None:
    from mlflow.exceptions import MlflowException

    client = configure()
    with registry_call(f"look up {name} for run {dag_run_id}"):
        try:
            found = client.search_model_versions(f"name = '{name}' and tags.dag_run_id = '{dag_run_id}'")
        except MlflowException:  # stores that cannot filter on tags: filter here
            found = [v for v in client.search_model_versions(f"name = '{name}'")
                     if v.tags.get("dag_run_id") == dag_run_id]
    return _version(client, found[0]) if found else None


def register(spec: ModelSpec, *, run_id: str, model_uri: str, dag_run_id: str, name: str | None = None) -> Version:
    """Register the run's model as a new version with alias ``challenger`` (once per dag_run_id)."""
    from mlflow.exceptions import MlflowException

    client = configure()
    name = name or spec.name
    existing = find_version(name, dag_run_id)
    if existing is not None:
        log.info("%s version %s already registered for %s: reusing it", name, existing.version, dag_run_id)
        return existing
    with registry_call(f"register {name}"):
        try:
            client.get_registered_model(name)
        except MlflowException:
            client.create_registered_model(name, tags=_spec_tags(spec), description=spec.description)
        # MLflow 3 logged models live at models:/m-<id>; a tracking server insists on the id
        model_id = model_uri[len("models:/"):] if model_uri.startswith("models:/m-") else None
        mv = client.create_model_version(name, source=model_uri, run_id=run_id,
                                         tags={"dag_run_id": dag_run_id}, model_id=model_id)
        _wait_ready(client, name, mv.version)
        client.set_registered_model_alias(name, CHALLENGER, mv.version)
        return _version(client, client.get_model_version(name, mv.version))


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
    warnings: list[str] = []
    if mv.run_id:
        with registry_call(f"read the metrics of {mv.name} v{mv.version}"):
            data = client.get_run(mv.run_id).data
        metrics = dict(data.metrics)
        try:
            warnings = [str(w) for w in json.loads(data.tags.get(WARNINGS_TAG) or "[]")]
        except (ValueError, TypeError):  # a hand-edited tag: shown as it is
            warnings = [data.tags[WARNINGS_TAG]]
    return Version(name=mv.name, version=str(mv.version), run_id=mv.run_id or "", model_uri=mv.source,
                   aliases=list(getattr(mv, "aliases", []) or []), metrics=metrics, tags=dict(mv.tags or {}),
                   warnings=warnings)


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


def registration_date(name: str, version: str):
    """The UTC date a version was registered: its training had finished by then."""
    import datetime as dt

    client = configure()
    with registry_call(f"read {name} v{version}"):
        mv = client.get_model_version(name, str(version))
    return dt.datetime.fromtimestamp(int(mv.creation_timestamp) / 1000, dt.timezone.utc).date()


def gate_and_promote(spec: ModelSpec, version: Version, challenger_value: float,
                     champion_value: float | None, *, others: dict[str, float] | None = None,
                     name: str | None = None, promote: bool = True) -> dict:
    """Apply ``policy.gate`` and, when it says yes (and ``promote``), move ``champion`` to ``version``.

    ``champion_value`` is the current champion's metric on the same held-out data (None when
    there is no champion); ``others`` the challenger's test metrics for the spec's ``minimums``.
    The decision and its reasons are written to the version's tags either way, so the MLflow UI
    shows why a version was or was not promoted. ``promote=False`` (a person must approve first)
    records the passed gate as ``awaiting approval``.
    """
    client = configure()
    name = name or spec.name
    current = champion(name)
    if current is not None and current.version == version.version:
        return {"promoted": True, "version": version.version, "reasons": ["already champion (re-run)"],
                "previous": current.tags.get("previous_champion"), "gate_passed": True}
    decision = policy.gate(spec.gate, challenger_value, champion_value if current is not None else None,
                           others=others)
    verdict = "rejected" if not decision.yes else ("promoted" if promote else "awaiting approval")
    with registry_call(f"record the gate decision for {name} v{version.version}"):
        client.set_model_version_tag(name, version.version, "gate_decision", verdict)
        client.set_model_version_tag(name, version.version, "gate_reasons", json.dumps(decision.reasons))
        if challenger_value is not None:
            client.set_model_version_tag(name, version.version, f"gate_{spec.gate.metric}", f"{challenger_value:.6f}")
    if decision.yes and promote:
        promote_version(name, version.version)
    log.info("%s v%s %s: %s", name, version.version, verdict.upper(), "; ".join(decision.reasons))
    return {"promoted": decision.yes and promote, "version": version.version, "reasons": decision.reasons,
            "previous": current.version if current else None, "gate_passed": decision.yes}


def promote_version(name: str, version: str, *, approved_by: str | None = None) -> None:
    """Move ``champion`` to ``version`` (one atomic alias call, after recording the one it replaces)
    and clear ``challenger`` from it, so a version is never shown as both."""
    client = configure()
    current = champion(name)
    with registry_call(f"promote {name} v{version}"):
        if current is not None and current.version != version:
            client.set_model_version_tag(name, version, "previous_champion", current.version)
        if approved_by:
            client.set_model_version_tag(name, version, "approved_by", approved_by)
        client.set_model_version_tag(name, version, "gate_decision", "promoted")
        client.set_registered_model_alias(name, CHAMPION, version)
    challenger = get_alias(name, CHALLENGER)
    if challenger is not None and challenger.version == version:
        with registry_call(f"clear the challenger alias of {name}"):
            client.delete_registered_model_alias(name, CHALLENGER)


def reject_version(name: str, version: str, reason: str) -> None:
    """Record why a version that passed the gate was not promoted (rejected or not approved in time)."""
    client = configure()
    with registry_call(f"record the rejection of {name} v{version}"):
        client.set_model_version_tag(name, version, "gate_decision", "not approved")
        client.set_model_version_tag(name, version, "approval", reason[:5000])


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
    with registry_call(f"roll back {name}"):
        client.set_model_version_tag(name, current.version, "rolled_back", "true")
        client.set_registered_model_alias(name, CHAMPION, previous)
    return {"name": name, "from": current.version, "to": previous}


def list_models() -> list[dict]:
    """Every registered model with its champion and challenger and their metrics."""
    client = configure()
    rows = []
    with registry_call("list registered models"):
        for rm in client.search_registered_models(max_results=1000):
            row: dict[str, Any] = {"name": rm.name, "latest_version": None, "champion": None, "challenger": None}
            versions = client.search_model_versions(f"name = '{rm.name}'")
            row["latest_version"] = max((int(v.version) for v in versions), default=None)
            for alias in (CHAMPION, CHALLENGER):
                v = get_alias(rm.name, alias)
                if v is not None:
                    row[alias] = {"version": v.version, "run_id": v.run_id, "metrics": v.metrics,
                                  "gate_decision": v.tags.get("gate_decision"), "warnings": v.warnings}
            rows.append(row)
    return sorted(rows, key=lambda r: r["name"])


def download_run_artifact(run_id: str, path: str) -> str:
    import mlflow

    configure()
    with registry_call(f"download {path} of run {run_id}"):
        return mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path)


os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")


DAG_PARAMS = "dag_params.json"  # the fine-tune run's params, as given (paths and settings)


def training_dag_params(version: Version) -> dict:
    """The params the run that trained ``version`` was given ({} for runs logged before)."""
    client = configure()
    with registry_call(f"list the artifacts of {version.name}'s run {version.run_id}"):
        if DAG_PARAMS not in {a.path for a in client.list_artifacts(version.run_id)}:
            return {}
    return json.loads(Path(download_run_artifact(version.run_id, DAG_PARAMS)).read_text())


def _data_params(candidate: dict) -> dict:
    """What data went in, as run params: row counts per split (original / production) and the
    production window of a retrain."""
    out = {f"data_{k}": v for k, v in (candidate.get("data") or {}).items()}
    production = (candidate.get("dataset") or {}).get("production")
    if production:
        out.update(data_production_since=production.get("since"), data_production_until=production.get("until"),
                   data_production_batches=len(production.get("batches", [])),
                   data_production_excluded=len(production.get("excluded", [])))
    return out


def publish(candidate: dict, dag_run_id: str, *, person: str | None = None) -> dict:
    """Register an evaluated candidate and gate it: the register-gate-promote step of every family.

    ``candidate`` is :func:`biotune.steps.evaluate`'s dict: ``model`` (spec name), ``family``,
    ``kind``, ``artifact`` (the trained files in the lake), ``params``, ``metrics``, ``history``,
    ``plots``, ``dataset``, ``challenger_value`` and ``champion_value`` (both measured on the same
    held-out data). The family's architecture logs the model; the family gives the training
    split's drift features, logged as the reference and the run's dataset. With
    ``gate.approval: required`` a passed gate waits for a person (see :func:`promote_version`).
    """
    import tempfile

    from biotune import storage
    from biotune.family import get_family
    from biotune.specs import get_spec

    spec = get_spec(candidate["model"])
    family = get_family(spec.family)
    arch = family.architecture(spec.architecture.kind)
    name = registered_name(spec, person)
    version = find_version(name, dag_run_id)
    if version is None:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp)
            storage.download_dir(candidate["artifact"], str(local / "model"))
            plots = {}
            if candidate.get("plots"):
                storage.download_dir(candidate["plots"], str(local / "plots"))
                plots = {p.stem: str(p) for p in sorted((local / "plots").glob("*.png"))}
            frame = family.model_reference_frame(spec, candidate["dataset"])
            production = candidate["dataset"].get("production")
            inputs = None
            if production:  # a retrain: its reference and inputs hold the production data it learned from
                from biotune import production as production_data

                frame = production_data.reference_frame(spec, family, production, frame)
                inputs = production_data.batch_inputs(spec, family, production)
            reference = local / "reference" / "features.parquet"
            reference.parent.mkdir()
            frame.to_parquet(reference, index=False)
            if candidate.get("reference_predictions"):
                with storage.local_copy(candidate["reference_predictions"]) as preds:
                    Path(reference.parent / "predictions.parquet").write_bytes(Path(preds).read_bytes())
            source = candidate["dataset"].get("uri") or next(
                (v for v in candidate["dataset"].values() if isinstance(v, str) and "/" in v), "")
            run_id, model_uri = log_training_run(
                spec, dag_run_id=dag_run_id, params={**candidate["params"], **_data_params(candidate)},
                metrics=candidate["metrics"], inputs=inputs, dag_params=candidate["dataset"].get("dag_params"),
                log_model=lambda: arch.log_model(spec, str(local / "model")),
                dataset=frame, dataset_source=source, plots=plots, artifacts={"reference": str(reference.parent)},
                history=candidate.get("history"), warnings=candidate.get("warnings"), registered=name,
            )
        version = register(spec, run_id=run_id, model_uri=model_uri, dag_run_id=dag_run_id, name=name)
    others = {k[len("test_"):]: v for k, v in candidate["metrics"].items() if k.startswith("test_")}
    decision = gate_and_promote(spec, version, candidate["challenger_value"], candidate.get("champion_value"),
                                others=others, name=name, promote=spec.gate.approval != "required")
    return {"model": name, "version": version.version, "run_id": version.run_id, **decision,
            "metric": spec.gate.metric, "challenger_value": candidate["challenger_value"],
            "champion_value": candidate.get("champion_value"),
            "approval": spec.gate.approval, "family": spec.family}
