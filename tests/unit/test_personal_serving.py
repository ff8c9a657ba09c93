"""Batch scoring of mood_personal serves each person-day by the model that serves that person.

Real registry (the test's own MLflow store), generated rows: population champions of
mood_personal-depressive-xgb trained and published through the shared steps, per-person versions
calibrated from a champion's bundle and recorded by the calibration job's own ``record``.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from biotune.mood.personal.names import SLEEP_FEATURE_NAMES

TASK = "depressive"
MODEL = f"mood_personal-{TASK}-xgb"
DAY = "2026-10-01"


def _population_rows(seed: int, persons: int = 24, days: int = 25) -> pd.DataFrame:
    """Pooled person-days whose episode tomorrow follows feature 0 (the population's signal)."""
    rng = np.random.default_rng(seed)
    n = persons * days
    x = rng.uniform(size=(n, len(SLEEP_FEATURE_NAMES)))      # inside every range the batch suite checks
    y = (x[:, 0] + 0.15 * rng.normal(size=n) > 0.6).astype(float)
    frame = pd.DataFrame(x, columns=SLEEP_FEATURE_NAMES)
    person = np.repeat([f"s-{seed:02d}{i:03d}" for i in range(persons)], days)
    split = np.repeat(np.array(["train", "train", "train", "val", "test"] * persons)[:persons], days)
    frame.insert(0, "split", split)
    frame.insert(0, "date", "2026-01-01")
    frame.insert(0, "person_id", person)
    for task in ("depressive", "manic", "hypomanic"):
        frame[task] = y
    return frame


def _publish_population(run_id: str, seed: int) -> str:
    from biotune import registry, steps, storage

    uri = storage.write_parquet(_population_rows(seed), storage.lake_path("tmp", run_id, "features.parquet"))
    dataset = {"uri": uri, "features": uri}
    evaluated = steps.evaluate(steps.train(MODEL, dataset, None, run_id), dataset, run_id)
    published = registry.publish(evaluated, run_id)
    if not published["promoted"]:  # a second champion: moved by hand, as an approval or a rollback would
        registry.promote_version(MODEL, published["version"])
    return str(published["version"])


def _calibrate_and_record(person: str, population_dir: str, base: str, seed: int) -> dict:
    """The person's days (their episodes follow feature 5, which the population ignores), calibrated
    from the bundle in ``population_dir``, written to their store and recorded in the registry."""
    from biotune.mood.personal import calibrate, crypto, jobs, population, store
    from biotune.mood.personal.dataset import PersonDays

    key = crypto.pseudonym(person)
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(90, len(SLEEP_FEATURE_NAMES)))
    y = (x[:, 5] > 0.55).astype(int)
    days = PersonDays(key, TASK, np.arange("2026-01-01", 90, dtype="datetime64[D]"), x, None, y)
    outcome, artifacts = calibrate.calibrate_days(days, population.load(population_dir),
                                                  policy=jobs.person_spec(TASK).training.params, seed=seed)
    assert outcome.decision == "personal", outcome.reasons
    # stored as calibrate_person stores it: the files first, the outcome (naming their digests) last
    outcome.artifacts = {k: hashlib.sha256(v).hexdigest() for k, v in artifacts.items()}
    store.write_file(key, calibrate.calibration_file(TASK, calibrate.XGB), artifacts["xgb"], base)
    store.write_file(key, calibrate.calibration_file(TASK, calibrate.OUTCOME),
                     json.dumps(outcome.as_dict(), default=str).encode(), base)
    return jobs.record(jobs.summary(outcome), f"calibrate__{key}_{seed}", base=base)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Population v1 -> bob calibrated on v1 -> population v2 champion -> alice calibrated on v2."""
    from biotune import monitoring
    from biotune.mood.personal import crypto, jobs

    root = tmp_path_factory.mktemp("serving")
    mp = pytest.MonkeyPatch()
    mp.setenv("BIOTUNE_HOME", str(root / "home"))
    for var in ("BIOTUNE_LAKE", "MLFLOW_TRACKING_URI", "BIOTUNE_DRIFT_DB"):
        mp.delenv(var, raising=False)
    mp.setenv(crypto.ENV_KEY, crypto.new_key())
    base = str(root / "store")
    v1 = _publish_population("population_v1", seed=1)
    bob = _calibrate_and_record("bob", jobs.ensure_population(TASK, str(root / "pop_v1"))["dir"], base, seed=2)
    v2 = _publish_population("population_v2", seed=3)
    bundle_v2 = jobs.ensure_population(TASK, str(root / "pop_v2"))
    alice = _calibrate_and_record("alice", bundle_v2["dir"], base, seed=4)
    yield {"root": root, "base": base, "v1": v1, "v2": v2, "alice": alice, "bob": bob, "bundle_v2": bundle_v2}
    monitoring.dispose()
    mp.undo()


def _land_batch(day: str, ids: list[str], seed: int = 9) -> pd.DataFrame:
    from biotune.family import get_family
    from biotune.mood.personal import pooled

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.uniform(size=(len(ids), len(SLEEP_FEATURE_NAMES))), columns=SLEEP_FEATURE_NAMES)
    frame.insert(0, "person_id", ids)
    frame["depressive"] = (frame[SLEEP_FEATURE_NAMES[0]] > 0.6).astype(float)
    pooled.write_batch(frame, get_family("mood_personal").batch_uri(day))
    return frame


def test_each_person_day_is_served_by_the_model_that_serves_the_person(world):
    from biotune import registry, scoring, storage
    from biotune.mood.personal import crypto, predict, serving
    from biotune.mood.personal.population import load_serving
    from biotune.specs import get_spec

    assert world["alice"]["serving"] == "personal" and world["bob"]["serving"] == "personal"
    assert registry.champion(MODEL).version == world["v2"] != world["v1"]
    others = [f"s-demo{i:04d}" for i in range(60)]           # anonymous demo ids: never a stored person
    ids = ["alice", "bob", "carol", *others]                # raw ids: pseudonymised when read
    sent = _land_batch(DAY, ids)
    assert scoring.validate_batch("mood_personal", DAY)["status"] == "ok"
    scored = scoring.score_batch(MODEL, DAY, run_id="t")
    written = storage.read_parquet(scored.predictions_uri)
    alice, bob, carol = crypto.pseudonyms(["alice", "bob", "carol"])
    assert list(written["person_id"][:3]) == [alice, bob, carol]
    assert not set(written["person_id"]) & {"alice", "bob", "carol"}        # raw ids never written
    by = dict(zip(written["person_id"], zip(written["served_by"], written["serving_reason"])))
    assert by[alice] == (f"mood_personal-{TASK}-personal--{alice} v{world['alice']['version']}", "personal")
    assert by[bob] == (f"{MODEL} v{world['v2']}", f"fallback: calibrated on population {MODEL} v{world['v1']}, "
                                                  f"champion is v{world['v2']}")
    assert by[carol] == (f"{MODEL} v{world['v2']}", "fallback: no personal model")
    assert {by[o] for o in others} == {(f"{MODEL} v{world['v2']}", "fallback: no personal model")}
    assert scored.extra["served"] == {"personal": 1, "fallback: no personal model": 1 + len(others),
                                      f"fallback: calibrated on population {MODEL} v{world['v1']}, "
                                      f"champion is v{world['v2']}": 1}

    # the population's rows are the champion's outputs; alice's is what `biotune mood predict` serves her
    champion = scoring.load_champion(MODEL, world["v2"]).predict(sent[SLEEP_FEATURE_NAMES])
    assert np.allclose(written["champion_proba"], champion) and np.allclose(written["proba"][1:], champion[1:])
    served = predict.predict_day(alice, TASK, load_serving(world["bundle_v2"]["dir"]),
                                 sent.loc[0, SLEEP_FEATURE_NAMES].to_numpy(float), None, base=world["base"])
    assert served.served_by == "personal"
    assert written["proba"][0] == pytest.approx(served.probability, abs=1e-4)
    assert written["prediction"][0] == int(served.probability >= served.threshold)
    assert written["proba"][0] != pytest.approx(champion[0], abs=1e-3)
    assert (written["model_version"] == world["v2"]).all()

    # drift and the retraining rule keep measuring the population champion on every row
    row = scoring.monitor_model(get_spec(MODEL), DAY, run_id="t", report=False)
    assert row["status"] == "ok" and row["n_rows"] == len(ids) >= get_spec(MODEL).drift.min_rows, row
    reread = scoring.scored_batch(MODEL, DAY, version=registry.champion(MODEL))
    assert reread.extra.get("reused") and np.allclose(reread.proba, champion)
    assert serving.personal_champions(serving.person_spec(get_spec(MODEL))) == {
        alice: world["alice"]["version"], bob: world["bob"]["version"]}


def test_a_batch_with_raw_ids_needs_the_personal_key(world, monkeypatch):
    from biotune.errors import BiotuneError
    from biotune.family import get_family
    from biotune.mood.personal import crypto

    _land_batch("2026-10-02", ["alice", "s-demo0001"])
    monkeypatch.delenv(crypto.ENV_KEY)
    with pytest.raises(crypto.PersonalKeyError, match="no key for personal data") as err:
        get_family("mood_personal").read_batch(get_family("mood_personal").batch_uri("2026-10-02"))
    assert isinstance(err.value, BiotuneError) and err.value.bad_input
