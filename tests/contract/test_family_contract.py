"""The family contract, checked the same way for every registered family (and the toy family that
exists only in the tests): generated training data to a champion through the shared steps, a
generated batch scored and measured for drift, a corrupt batch quarantined with no model touched.

A new family gets these checks for free: it only has to register itself (biotune/<family>/family.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from biotune.family import families

ROOT = Path(__file__).resolve().parents[2]
# the training size and run params each family's contract run uses: small, but enough for its gate
SIZES = {"mood": (300, {"epochs": 1, "pretrain_epochs": 1}), "toy": (400, {}),
         "eeg": (12, {"epochs": 5, "pretrain_epochs": 1}),  # eeg: participants (one minute of EEG each)
         "activity": (500, {"model_size": "small", "source_epochs": 3, "epochs": 3}),
         "glucose": (12, {"epochs": 2, "pretrain_epochs": 1})}  # glucose: patients
FAMILIES = sorted(families())


def _specs_for(family: str, directory: Path) -> Path:
    """This family's specs only (plus the toy spec), one per architecture and scope, gated at 0: the
    contract checks the mechanism through each architecture on tiny runs; whether every model learns
    is the family's own tests' business (e.g. the mood DAG test trains all four)."""
    import toyfamily

    directory.mkdir(parents=True, exist_ok=True)
    specs = [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "models").glob("*.yaml"))] + [dict(toyfamily.SPEC)]
    seen = set()
    for spec in specs:
        kind = (spec["architecture"]["kind"], spec.get("scope", "population"))
        if spec["family"] == family and kind not in seen:
            seen.add(kind)
            spec["gate"].update(min_absolute=0.0, minimums={}, approval="none")
            (directory / f"{spec['name']}.yaml").write_text(yaml.safe_dump(spec))
    return directory


def test_every_family_is_discovered():
    assert {"mood", "toy"} <= set(FAMILIES)
    for name, fam in families().items():
        assert fam.name == name and fam.fine_tune_dag_id and fam.architectures, name


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_family_contract(family, home, tmp_path, monkeypatch):
    from biotune import monitoring, registry, scoring, steps, storage
    from biotune.errors import BiotuneError
    from biotune.family import get_family
    from biotune.specs import get_spec

    monkeypatch.setenv("BIOTUNE_SPECS", str(_specs_for(family, tmp_path / "specs")))
    monkeypatch.setenv("BIOTUNE_PRETRAINED", str(tmp_path / "no-weights"))
    fam = get_family(family)
    size, params = SIZES.get(family, (300, {}))
    params = {**fam.demo_training_data(str(tmp_path / "landing"), size, seed=3), **params}
    run_id = "manual__contract"

    # training data -> champion, each model through the shared steps
    from biotune import validation

    for source in fam.sources(params):
        assert validation.validate_file(source["path"], source["suite"], source.get("reader", "parquet")).success
    dataset = steps.prepare(family, params, run_id)
    prepared = steps.prepare_architectures(dataset, run_id, params)
    names = steps.model_names(family)
    assert names
    for name in names:
        evaluated = steps.evaluate(steps.train(name, dataset, prepared, run_id, params), dataset, run_id)
        assert evaluated["challenger_value"] is not None
        assert f"test_{get_spec(name).gate.metric}" in evaluated["metrics"]
        published = registry.publish(evaluated, run_id)
        assert published["promoted"], published
        again = registry.publish(evaluated, run_id)  # a re-run registers nothing new
        assert again["version"] == published["version"]
        assert registry.champion(name).tags["dag_run_id"] == run_id

    # a batch scored and measured for drift
    day = "2026-10-01"
    fam.demo_batch(day, 60, seed=5)
    assert scoring.validate_batch(family, day, run_id="t")["status"] == "ok"
    for name in names:
        scored = scoring.score_batch(name, day, run_id="t")
        predictions = storage.read_parquet(scored.predictions_uri)
        assert len(predictions) == 60 and fam.id_column in predictions.columns
        # every row says which model served it and why; no person has a model of their own here
        champion = registry.champion(name)
        assert set(predictions["served_by"]) == {f"{name} v{champion.version}"}, name
        assert predictions["serving_reason"].str.len().gt(0).all()
        row = scoring.monitor_model(get_spec(name), day, run_id="t", report=False)
        assert row["status"] == "ok", row
        assert row["n_rows"] == 60 and row["max_psi"] is not None and row["psi"]
        # measured on the model's own drift features: exactly those of the reference logged with it
        logged = fam.reference_features(monitoring.reference_frame(registry.champion(name).run_id, name))
        expected = set(get_spec(name).drift.features or map(str, logged.columns))  # the spec may pick some
        measured = set(row["psi"]) | set(row.get("not_computable") or {})  # e.g. a feature constant in 60 rows
        assert measured == expected <= set(map(str, logged.columns)), (name, sorted(measured))
    monitoring.dispose()

    # a retrain learns from labelled production batches: their rows join the splits through the
    # contract (read_batch, batch_inputs, batch_labels), and the mixed inputs are what the model takes
    from biotune import production

    for i, later in enumerate(("2026-10-04", "2026-10-05")):
        fam.demo_batch(later, 60, seed=7 + i, shifted=True)
    dataset["production"] = production.collect(fam, "2026-10-05", "t", since="2026-10-03")
    assert [b["date"] for b in dataset["production"]["batches"]] == ["2026-10-04", "2026-10-05"], \
        f"{family}'s demo batches carry no labels: a retrain would have nothing new to learn from"
    for name in names:
        spec = get_spec(name)
        train, train_counts = steps.split(spec, fam, dataset, "train")
        test, test_counts = steps.split(spec, fam, dataset, "test")
        assert train_counts["production"] + test_counts["production"] > 0, name
        assert len(train) == train_counts["original_used"] + train_counts["production"]
        assert len(np.asarray(scoring.load_champion(name).predict(test.x), dtype=object)) == len(test)

    # a corrupt batch: typed error, quarantined, no model touched
    bad_day = "2026-10-02"
    path = fam.batch_uri(bad_day)
    storage.write_bytes(path, b"this is not a batch file")
    before = {n: registry.champion(n).version for n in names}
    with pytest.raises(BiotuneError):
        scoring.validate_batch(family, bad_day, run_id="t")
    assert not storage.exists(path)
    assert list(Path(storage.lake_path("quarantine")).rglob(fam.batch_file))
    assert {n: registry.champion(n).version for n in names} == before


@pytest.mark.slow
def test_a_family_dag_is_one_builder_call(home, airflow_db, tmp_path, monkeypatch):
    """The toy family's whole DAG file is a docstring and one builder call; it runs end to end."""
    from airflow.dag_processing.dagbag import DagBag

    from biotune import registry
    from biotune.family import get_family

    here = Path(__file__).resolve().parent
    monkeypatch.setenv("BIOTUNE_SPECS", str(_specs_for("toy", tmp_path / "specs")))
    # dag.test() runs DAGs its bundles hold: this DAG lives with the tests, so it gets a bundle of its own
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps([
        {"name": "biotune-contract-tests", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
         "kwargs": {"path": str(here / "dags"), "refresh_interval": 0}}]))
    bag = DagBag(dag_folder=str(here / "dags" / "toy_finetune.py"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags["toy_finetune"]
    assert len((here / "dags" / "toy_finetune.py").read_text().splitlines()) <= 12
    params = get_family("toy").demo_training_data(str(tmp_path / "landing"), 400, seed=1)
    run = dag.test(run_conf=params)
    assert str(run.state) == "success"
    assert registry.champion("toy-y-logreg") is not None

    typo = dag.test(run_conf={**params, "sourec": "x"})  # unknown conf keys are refused
    assert str(typo.state) == "failed"
