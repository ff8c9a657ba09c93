"""mood_personal_calibration end to end with dag.test(): generated persons -> import -> labels ->
calibration -> per-person registry versions (champion or recorded fallback) -> prediction."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from dagtest import load_dag, task_states

pytestmark = pytest.mark.slow
TASK = "depressive"


@pytest.fixture
def world(home, airflow_db, tmp_path, monkeypatch):
    from biotune.mood.pat import PATConfig
    from biotune.mood.personal import crypto, labels, population, store
    from biotune.mood.personal.daily import features_for
    from biotune.mood.personal.dataset import DailyTable, person_days, series_digest
    from biotune.mood.personal.health import import_health
    from biotune.mood.personal.names import SLEEP_FEATURE_NAMES
    from biotune.mood.personal.synth_files import generate_persons

    monkeypatch.setenv(crypto.ENV_KEY, crypto.new_key())
    persons = generate_persons(5, tmp_path / "persons", days=110, seed=21, filler=0.0)
    series = {}
    for p in persons:
        s, e, r = import_health(p["export_zip"])
        store.write_import(p["person_id"], s, e, r)
        series[p["person_id"]] = s
    tables = {}
    for (pid, s), f in zip(series.items(), features_for(list(series.values()))):
        tables[pid] = DailyTable(np.array(f.index, dtype="datetime64[D]"), f[SLEEP_FEATURE_NAMES].to_numpy(float),
                                 f["valid"].to_numpy(bool), series_digest(s))
        store.write_file(pid, "daily.npz.enc", tables[pid].to_npz())
    pids = list(series)
    # population: three persons, labels read straight from their files (they are not calibrated here)
    from biotune.mood.personal.pooled import _labels

    days = [person_days(crypto.pseudonym(pid), TASK, series[pid], tables[pid],
                        _labels(tmp_path / "persons" / pid / "labels.csv")) for pid in pids[:3]]
    tiny = PATConfig("tiny", patch_size=144, num_layers=1, num_heads=2, embed_dim=32, key_dim=16, ff_dim=64)
    pm = population.train_population(days, TASK, pat_config=tiny, pat_epochs=2, val_every=3, version="gen-v1")
    population.save(pm, population.default_dir(TASK))
    # the clinician's labels for the two other persons
    for pid in pids[3:]:
        labels.add_rows(list(csv.DictReader(open(tmp_path / "persons" / pid / "labels.csv"))), require_known=True)
    return pids, pm


def test_calibration_dag_registers_each_person_and_serves(world):
    from biotune import registry
    from biotune.mood.personal import crypto, jobs, predict
    from biotune.mood.personal.population import default_dir

    pids, pm = world
    dag = load_dag("mood_personal_calibration")
    run = dag.test(run_conf={"person": "", "tasks": TASK, "population": ""})
    assert str(run.state) == "success", task_states(run)
    assert task_states(run)["calibrate"] == ["success", "success"]

    table = {r["person"]: r for r in jobs.serving_table(tasks=[TASK])}
    pops = {TASK: predict.load_populations([TASK])[TASK]}
    assert pops[TASK].fingerprint == pm.fingerprint and default_dir(TASK)
    for pid in pids[3:]:
        key = crypto.pseudonym(pid)
        name = f"mood_personal-{TASK}-personal--{key}"
        version = registry.find_version(name, run.run_id)
        assert version is not None and pid not in name
        assert version.tags["gate_decision"] in ("promoted", "rejected") and version.tags["gate_reasons"]
        served = table[key]["serving"]
        assert (registry.champion(name) is not None) == (served == "personal")
        client = registry.configure()
        params = client.get_run(version.run_id).data.params
        assert params["population_version"] == "gen-v1" and pid not in str(params)
        arts = [a.path for a in client.list_artifacts(version.run_id, "calibration")]
        assert any(a.endswith("outcome.json.enc") for a in arts)
        (p,) = predict.predict(pid, pops)
        assert p.served_by == served and 0 <= p.probability <= 1

    # persons without labels were not calibrated; nothing new since: the next run has no work
    assert table[crypto.pseudonym(pids[0])]["serving"].startswith("population (not calibrated)")
    again = dag.test(run_conf={"person": "", "tasks": TASK, "population": ""})
    assert str(again.state) == "success"
    assert jobs.persons_to_calibrate(None, [TASK]) == []
