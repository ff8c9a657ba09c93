"""The ``mood_personal_calibration`` job, one function per DAG task (same from the CLI and tests).

1. ``persons_to_calibrate``: one person (by hand) or every stored person whose labels changed
   since their last calibration of a task; jobs are (pseudonym, task) pairs.
2. ``ensure_population``: the population bundle a task calibrates from (population.py): the
   folder given, or the lake's; when there is none but ``mood_personal-<task>-xgb`` has a
   champion in the registry, a bundle is built from it (XGBoost only: the person's PAT adapter
   needs a population PAT, which then comes from ``population.train_population``).
3. ``calibrate``: calibrate.calibrate_person; returns a small pseudonymous summary (XCom).
4. ``record``: the per-person registry scope: a version of ``mood_personal-<task>-personal``
   registered as ``<spec>--<pseudonym>`` with the metrics on the person's later days, the
   decision and its reasons in tags, and the person's calibration files as artifacts (they stay
   Fernet-encrypted); ``champion`` moves to it only when the personal models won the gate.
5. ``serving_table``: per person and task, which model serves and why (for the UI).
No health values go into params or tags; ids are pseudonyms.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path

from biotune.errors import MissingInputError

TASKS = ("depressive", "manic", "hypomanic")


def person_spec(task: str):
    from biotune.specs import get_spec

    return get_spec(f"mood_personal-{task}-personal")


def _parse_stamp(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)


def persons_to_calibrate(person: str | None = None, tasks=TASKS, *, base: str | None = None,
                         labels_uri: str | None = None) -> list[dict]:
    from biotune.mood.personal import calibrate, crypto, labels, store

    known = store.known_persons(base)
    if person:
        key = crypto.pseudonym(person)
        if key not in known:
            raise MissingInputError(f"unknown person {key}: no imported data", where="params.person",
                                    fix="import the person's data first (biotune mood import-health)")
        return [{"person": key, "task": t} for t in tasks]
    jobs = []
    for key in known:
        changed = labels.last_change(key, uri=labels_uri)
        if changed is None:
            continue
        for t in tasks:
            outcome = calibrate.read_outcome(key, t, base)
            done = _parse_stamp(outcome.get("calibrated_at")) if outcome else None
            if done is None or changed > done:
                jobs.append({"person": key, "task": t})
    return jobs


def population_folder(task: str, population: str | None = None) -> str:
    from biotune import storage
    from biotune.mood.personal.population import default_dir

    return storage.join(population, task) if population else default_dir(task)


def ensure_population(task: str, population: str | None = None) -> dict:
    """{task, dir, version, fingerprint} of the bundle to calibrate from (see the module doc)."""
    from biotune import storage

    folder = population_folder(task, population)
    if not storage.exists(storage.join(folder, "population.json")):
        built = _bundle_from_champion(task, folder)
        if built is None:
            raise MissingInputError(
                f"no population models for {task} at {folder} and no champion of mood_personal-{task}-xgb",
                where=folder, fix="run mood_personal_population (or import mood_ml's pickles with biotune registry "
                                  "import), or write a bundle with population.train_population + population.save")
    meta = json.loads(Path(folder, "population.json").read_text())
    return {"task": task, "dir": folder, "version": meta["version"], "fingerprint": meta["fingerprint"]}


def _bundle_from_champion(task: str, folder: str) -> str | None:
    from biotune import registry
    from biotune.mood.personal import platt
    from biotune.mood.personal.population import PopulationModels, save

    name = f"mood_personal-{task}-xgb"
    champ = registry.champion(name)
    if champ is None:
        return None
    import mlflow.artifacts
    from xgboost import XGBClassifier

    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}@champion", dst_path=tmp)
        found = sorted(Path(local).rglob("model.json"))
        if not found:
            return None
        xgb = XGBClassifier()
        xgb.load_model(str(found[0]))
    pm = PopulationModels(task, xgb, None, None, f"{name} v{champ.version}", {"xgb": platt.identity().tolist()},
                          {"xgb": 1.0}, float(champ.tags.get("threshold", 0.5) or 0.5))
    return save(pm, folder)


def calibrate(job: dict, population_dir: str, *, base: str | None = None, labels_uri: str | None = None,
              **kwargs) -> dict:
    from biotune.mood.personal import calibrate as cal
    from biotune.mood.personal import population as pop

    spec = person_spec(job["task"])
    outcome = cal.calibrate_person(job["person"], job["task"], pop.load(population_dir), base=base,
                                   policy={**spec.training.params, "personal_min_auc": spec.gate.min_absolute},
                                   labels_uri=labels_uri, **kwargs)
    return summary(outcome)


def summary(outcome) -> dict:
    """A calibration outcome as ``record`` takes it: pseudonym, decision, reasons, AUCs (XCom-sized)."""
    m = outcome.metrics
    return {"person": outcome.person, "task": outcome.task, "decision": outcome.decision, "reasons": outcome.reasons,
            "population_version": outcome.population_version, "n_days": outcome.n_days,
            "population_auc": m.get("population", {}).get("auc"), "personal_auc": m.get("personal", {}).get("auc"),
            "population_fpr": m.get("population", {}).get("fpr"), "personal_fpr": m.get("personal", {}).get("fpr"),
            "seconds": outcome.seconds.get("total"), "adapter_bytes": outcome.adapter_bytes,
            "calibrated_at": outcome.calibrated_at}


def record(summary: dict, dag_run_id: str, *, base: str | None = None) -> dict:
    """Register the person's calibration as a version of ``<spec>--<pseudonym>`` (see the module doc)."""
    from types import SimpleNamespace

    from biotune import registry, storage
    from biotune.mood.personal import store

    spec = person_spec(summary["task"])
    name = registry.registered_name(spec, summary["person"])
    version = registry.find_version(name, dag_run_id)
    if version is None:
        folder = storage.join(store.person_dir(summary["person"], base), "calibration", summary["task"])
        metrics = {k: float(v) for k, v in (("test_auc", summary["personal_auc"]),
                                            ("population_test_auc", summary["population_auc"]),
                                            ("test_fpr", summary["personal_fpr"]),
                                            ("population_test_fpr", summary["population_fpr"])) if v is not None}
        with tempfile.TemporaryDirectory() as tmp:
            storage.download_dir(folder, tmp)            # Fernet tokens: encrypted in MLflow too

            def log_model():
                import mlflow

                return SimpleNamespace(model_uri=f"runs:/{mlflow.active_run().info.run_id}/calibration")

            run_id, model_uri = registry.log_training_run(
                spec, dag_run_id=dag_run_id, registered=name, metrics=metrics, log_model=log_model,
                params={"n_days": summary["n_days"], "decision": summary["decision"],
                        "population_version": summary["population_version"],
                        "adapter_bytes": summary["adapter_bytes"], "seconds": summary["seconds"]},
                artifacts={"calibration": tmp})
        version = registry.register(spec, run_id=run_id, model_uri=model_uri, dag_run_id=dag_run_id, name=name)
    client = registry.configure()
    verdict = "promoted" if summary["decision"] == "personal" else "rejected"
    client.set_model_version_tag(name, version.version, "gate_decision", verdict)
    client.set_model_version_tag(name, version.version, "gate_reasons", json.dumps(summary["reasons"]))
    if verdict == "promoted":
        registry.promote_version(name, version.version)
    return {"model": name, "version": version.version, "decision": summary["decision"],
            "serving": "personal" if verdict == "promoted" else "population", "reason": summary["reasons"][-1]}


def serving_table(*, base: str | None = None, tasks=TASKS) -> list[dict]:
    """Per stored person and task: which model serves and why (pseudonyms only)."""
    from biotune.mood.personal import calibrate, store

    rows = []
    for key in store.known_persons(base):
        for t in tasks:
            o = calibrate.read_outcome(key, t, base)
            rows.append({"person": key, "task": t,
                         "serving": "population (not calibrated)" if o is None else o["decision"],
                         "reason": "" if o is None else o["reasons"][-1],
                         "population_version": None if o is None else o["population_version"],
                         "calibrated_at": None if o is None else o["calibrated_at"]})
    return rows
