"""The monitoring loop's decisions: which champions are watched, their logged references, the
retraining rule evaluated with the facts on record, and the retrain plans. (Measuring a champion
on one date needs the family: that step is :func:`biotune.scoring.monitor_model`.)"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Sequence

from biotune.dates import as_date
from biotune.errors import DataValidationError, DriftError, InputFormatError, MissingInputError, SpecError
from biotune.monitoring.measure import reference_error_rate, reference_predictions
from biotune.monitoring.store import history, record_decision
from biotune.policy import RetrainFacts, retraining_decision
from biotune.specs import ModelSpec

log = logging.getLogger(__name__)

# bad input: recorded as status 'error' (a retry will not fix it); anything else propagates
BAD_INPUT = (DriftError, MissingInputError, DataValidationError, InputFormatError)


def reference_prediction_labels(version):
    """The champion's predicted classes on its test split (``reference/predictions.parquet``, logged
    at publish), else rebuilt from the binary test confusion counts of older versions."""
    import pandas as pd

    from biotune import registry

    client = registry.configure()
    with registry.registry_call(f"list the reference of {version.name} v{version.version}"):
        names = {a.path for a in client.list_artifacts(version.run_id, "reference")}
    if "reference/predictions.parquet" in names:
        local = registry.download_run_artifact(version.run_id, "reference/predictions.parquet")
        return pd.read_parquet(local)["prediction"].to_numpy()
    return reference_predictions(version.metrics)


def champions_by_family(specs: Sequence[ModelSpec] | None = None) -> dict[str, list[str]]:
    """{family: [model names that have a champion]} over the specs in models/."""
    from biotune import registry
    from biotune.specs import all_specs

    out: dict[str, list[str]] = {}
    for spec in specs if specs is not None else all_specs():
        if spec.scope == "person":  # its per-person versions serve within their population model's scoring
            continue
        if registry.champion(spec.name) is not None:
            out.setdefault(spec.family, []).append(spec.name)
        else:
            log.info("%s has no champion: not monitored", spec.name)
    return out


def reference_frame(run_id: str, model: str):
    """The ``reference/features.parquet`` artifact logged with the model's training run."""
    import pandas as pd

    from biotune import registry

    client = registry.configure()
    with registry.registry_call(f"list the artifacts of {model}'s run {run_id}"):
        names = {a.path for a in client.list_artifacts(run_id, "reference")}
    if "reference/features.parquet" not in names:
        raise DriftError(f"{model}'s training run {run_id} logged no reference/features.parquet",
                         where=f"MLflow run {run_id}",
                         fix="drift needs the training features logged with the model: re-run the "
                             "fine-tuning DAG (registry.publish logs them) and promote the new version")
    local = registry.download_run_artifact(run_id, "reference/features.parquet")
    return pd.read_parquet(local)


def last_retrain(as_of, finished: Sequence = ()) -> dt.date | None:
    """The latest retrain that finished on or before ``as_of`` (dates from :func:`retrain_dates`). A
    retrain that was only queued (a 'yes' decision) does not count: it may still fail."""
    as_of = as_date(as_of)
    events = [as_date(d) for d in finished if d is not None and as_date(d) <= as_of]
    return max(events) if events else None


def retrain_dates(name: str) -> list[dt.date]:
    """Each trained, registered version (promoted or not) on the monitoring's own calendar: a retrain
    counts on the day its production data ends (``data_production_until``: the decision's date), any
    other training on its registration date. The decision's date, not the clock: a retrain decided
    for 12-04 and finished on 12-07 has answered the evidence up to 12-04, and a later judgement of
    12-05 or 12-06 (a backfill) counts its labels and days from there, not from before it."""
    from biotune import registry

    client = registry.configure()
    with registry.registry_call(f"list the versions of {name}"):
        versions = client.search_model_versions(f"name = '{name}'")
        learned = {v.version: client.get_run(v.run_id).data.params.get("data_production_until") for v in versions}
    return [as_date(learned[v.version]) if learned[v.version] not in (None, "", "None") else
            dt.datetime.fromtimestamp(int(v.creation_timestamp) / 1000, dt.timezone.utc).date() for v in versions]


def evaluate(spec: ModelSpec, as_of, *, in_flight: bool = False, run_id: str | None = None,
             uri: str | None = None, dag_id: str | None = None) -> dict:
    """Gather the facts for one model, apply :func:`retraining_decision`, record and return it."""
    from biotune import registry

    as_of = as_date(as_of)
    version = registry.champion(spec.name)
    registered = None
    test_error = None
    if version is not None:
        registered = registry.registration_date(spec.name, version.version)
        test_error = reference_error_rate(version.metrics)
    facts = RetrainFacts(as_of=as_of, last_retrain=last_retrain(as_of, retrain_dates(spec.name)),
                         in_flight=in_flight, test_error_rate=test_error, dag_id=dag_id or spec.retraining.dag_id)
    rows = history(spec.name, until=as_of, uri=uri)
    decision = retraining_decision(rows, spec, facts)
    facts_dict = {**facts.as_dict(), "champion_version": version.version if version else None,
                  "champion_registered": registered.isoformat() if registered else None}
    record_decision(spec.name, as_of, decision, facts=facts_dict, dag_id=facts.dag_id, run_id=run_id,
                    uri=uri)
    verdict = "RETRAIN" if decision.yes else "no retrain"
    log.info("%s as of %s: %s\n  %s", spec.name, as_of.isoformat(), verdict, "\n  ".join(decision.reasons))
    return {"model": spec.name, "date": as_of.isoformat(), "yes": decision.yes, "reasons": decision.reasons,
            "dag_id": facts.dag_id, "facts": facts_dict}


def retrain_plans(evaluated: Sequence[dict], *, run_tag: str = "") -> list[dict]:
    """One trigger per fine-tune DAG for the models that said yes (models sharing a DAG retrain in one
    run): kwargs for TriggerDagRunOperator (trigger_dag_id, trigger_run_id, conf with the reasons)."""
    by_dag: dict[str, list[dict]] = {}
    for e in evaluated:
        if e.get("yes"):
            by_dag.setdefault(e["dag_id"], []).append(e)
    plans = []
    for dag_id, items in sorted(by_dag.items()):
        date = max(i["date"] for i in items)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_tag)
        plans.append({
            "trigger_dag_id": dag_id,
            "trigger_run_id": f"retrain__{date}" + (f"__{safe}" if safe else ""),
            "conf": {**champion_params(dag_id, [i["model"] for i in items]),
                     "retrain": {"date": date, "models": {i["model"]: i["reasons"] for i in items},
                                 "triggered_by": "retraining_triggers"}},
        })
    return plans


def champion_params(dag_id: str, models: Sequence[str]) -> dict:
    """The params the champions' training run was given (where its training data is, its
    settings), for a retrain of the family's fine-tune DAG: with the DAG's defaults instead, a
    retrain would look for data the user landed elsewhere. Only the DAG's own form keys."""
    from biotune import registry
    from biotune.family import get_family
    from biotune.specs import get_spec

    for model in models:
        try:
            family = get_family(get_spec(model).family)
        except (SpecError, MissingInputError):  # no spec for it any more: the DAG's defaults serve
            continue
        if dag_id != family.fine_tune_dag_id:
            continue
        version = registry.champion(model)
        if version is None:
            continue
        form = family.dag_params()
        recorded = registry.training_dag_params(version)
        if recorded:
            return {k: v for k, v in recorded.items() if k in form}
    return {}

