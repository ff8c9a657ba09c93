"""Batch scoring per person: each person-day of a mood_personal batch served by the model that serves
that person (``MoodPersonalFamily.serve_batch``, called by ``scoring.score_batch``).

For the population model ``mood_personal-<task>-xgb`` whose champion scores the day, a row is served by
the person's own champion ``mood_personal-<task>-personal--<pseudonym>`` when it is *current*: it was
calibrated on the population version that is champion now (its run's ``population_version`` is
``mood_personal-<task>-xgb v<champion>`` and its outcome's population fingerprint is that version's
weights). An adapter is tied to the population it was trained on: a stale one is never combined with
another, the population serves and the reason says which version it was calibrated on.

A batch carries the 36 features only (no activity week), so the personal side is its continued
booster with the person's Platt calibrator for XGBoost and the person's threshold: what
``biotune mood predict --person P`` serves on a day without an activity week. The model is the
registered version's own files (the ``calibration`` artifacts, Fernet-encrypted, checked against
the digests in its outcome), not the person's store, which a later calibration may have rewritten.
Ids are pseudonyms throughout (pooled.batch_person_ids maps raw ids when the batch is read).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from biotune.errors import InputFormatError

PERSONAL = "personal"
NO_MODEL = "fallback: no personal model"


@dataclass
class PersonalModel:
    name: str
    version: str
    booster: object                 # xgbnp.Forest
    calibrator: np.ndarray          # Platt params [n_boot + 1, 2]
    threshold: float
    population_fingerprint: str

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"

    def predict(self, x: np.ndarray) -> np.ndarray:
        from biotune.mood.personal import platt

        return platt.apply(self.calibrator, self.booster.predict_proba(x))[0]


_cache: dict[tuple[str, str], PersonalModel] = {}


def person_spec(population_spec):
    """The per-person spec of a population model (``mood_personal-<task>-personal``), or None."""
    from biotune.specs import all_specs

    return next((s for s in all_specs() if s.family == population_spec.family and s.task == population_spec.task
                 and s.scope == "person"), None)


def personal_champions(person_spec) -> dict[str, str]:
    """{pseudonym: champion version} of every registered ``<person spec>--<pseudonym>`` with a
    champion: one search instead of one lookup per row."""
    from biotune import registry

    client = registry.configure()
    prefix = person_spec.name + registry.PERSON_SEPARATOR
    with registry.registry_call(f"list the per-person models of {person_spec.name}"):
        found = client.search_registered_models(filter_string=f"name LIKE '{prefix}%'")
        models = list(found)
        while getattr(found, "token", None):
            found = client.search_registered_models(filter_string=f"name LIKE '{prefix}%'", page_token=found.token)
            models.extend(found)
    out = {}
    for m in models:
        if not m.name.startswith(prefix):      # LIKE's "_" matches any character
            continue
        aliases = getattr(m, "aliases", None) or {}
        version = aliases.get(registry.CHAMPION) if isinstance(aliases, dict) else None
        if version is not None:
            out[registry.spec_name_of(m.name)[1]] = str(version)
    return out


def population_fingerprint(model_name: str, version: str) -> str:
    """The fingerprint a population bundle built from this registered XGBoost version carries
    (population.compute_fingerprint of the XGBoost alone, as jobs._bundle_from_champion builds it)."""
    import tempfile

    import mlflow.artifacts
    from xgboost import XGBClassifier

    from biotune import registry
    from biotune.mood.personal.population import xgb_fingerprint

    registry.configure()
    with tempfile.TemporaryDirectory() as tmp, registry.registry_call(f"download {model_name} v{version}"):
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{model_name}/{version}", dst_path=tmp)
        found = sorted(Path(local).rglob("model.json"))
        if not found:
            return ""
        xgb = XGBClassifier()
        xgb.load_model(str(found[0]))
        return hashlib.sha256(xgb_fingerprint(xgb.get_booster()).encode()).hexdigest()[:20]


def load_personal(name: str, version: str) -> PersonalModel:
    """The registered personal version's booster, XGBoost calibrator and threshold, from its own
    encrypted calibration artifacts (digests checked against its outcome)."""
    key = (name, version)
    if key in _cache:
        return _cache[key]
    from biotune import registry
    from biotune.mood.personal import crypto
    from biotune.mood.personal.calibrate import OUTCOME, XGB
    from biotune.mood.personal.population import calibrator_key
    from biotune.mood.personal.xgbnp import Forest

    client = registry.configure()
    with registry.registry_call(f"read {name} v{version}"):
        run_id = client.get_model_version(name, version).run_id
    folder = Path(registry.download_run_artifact(run_id, "calibration"))
    where = f"{name} v{version}: calibration/"

    def read(file: str) -> bytes:
        path = folder / file
        if not path.exists():
            raise InputFormatError(f"{name} v{version} has no calibration/{file}", where=where + file,
                                   fix="re-run mood_personal_calibration for this person")
        return crypto.decrypt(path.read_bytes(), where=where + file)

    outcome = json.loads(read(OUTCOME))
    data = read(XGB)
    if hashlib.sha256(data).hexdigest() != outcome.get("artifacts", {}).get("xgb"):
        raise InputFormatError(f"{name} v{version}: the stored booster does not match its calibration outcome",
                               where=where + XGB, fix="re-run mood_personal_calibration for this person")
    cal = outcome.get("calibrators", {}).get(calibrator_key(["xgb"]))
    if outcome.get("decision") != PERSONAL or cal is None:
        raise InputFormatError(f"{name} v{version} is champion but its outcome is not a personal XGBoost model",
                               where=where + OUTCOME, fix="re-run mood_personal_calibration for this person")
    model = PersonalModel(name, str(version), Forest.from_json(data, where=where + XGB), np.asarray(cal, np.float64),
                          float(outcome["threshold"]), str(outcome.get("population_fingerprint", "")))
    _cache.clear()  # memory stays flat: one person's model at a time is all a batch needs
    _cache[key] = model
    return model


def serve_batch(spec, batch, champion, features):
    """Per row of ``batch``: who serves it and why, and the personal rows' calibrated P(1) and
    thresholds (a ``family.Served``). ``features`` is the batch's model input (the 36 features,
    row-aligned).
    """
    from biotune import registry
    from biotune.family import Served

    pop_label = f"{spec.name} v{champion.version}"
    pspec = person_spec(spec)
    champions = personal_champions(pspec)
    ids = [str(i) for i in batch.ids]
    served_by = [pop_label] * len(ids)
    reasons = [NO_MODEL] * len(ids)
    rows, outputs, thresholds = [], [], []
    client = registry.configure() if champions else None
    fingerprint = None
    x = np.asarray(features, dtype=np.float64)
    for i, person in enumerate(ids):
        version = champions.get(person)
        if version is None:
            continue
        name = registry.registered_name(pspec, person)
        with registry.registry_call(f"read {name} v{version}"):
            run_id = client.get_model_version(name, version).run_id
            calibrated_on = client.get_run(run_id).data.params.get("population_version", "unknown")
        if calibrated_on != pop_label:
            reasons[i] = f"fallback: calibrated on population {calibrated_on}, champion is v{champion.version}"
            continue
        model = load_personal(name, version)
        if fingerprint is None:
            fingerprint = population_fingerprint(spec.name, champion.version)
        if model.population_fingerprint != fingerprint:  # same version name, other weights: never mixed
            reasons[i] = (f"fallback: calibrated on other weights than population v{champion.version} "
                          f"({model.population_fingerprint[:8]} vs {fingerprint[:8]}): re-calibrate")
            continue
        served_by[i], reasons[i] = model.label, PERSONAL
        rows.append(i)
        outputs.append(float(model.predict(x[i:i + 1])[0]))
        thresholds.append(model.threshold)
    return Served(served_by, reasons, np.asarray(rows, dtype=np.int64), np.asarray(outputs, dtype=np.float64),
                  np.asarray(thresholds, dtype=np.float64))
