"""Registry against a real MLflow SQLite store: register, gate, promote, rollback, idempotency."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from biotune import registry
from biotune.errors import RegistryError
from biotune.specs import ModelSpec


def _spec(min_absolute=0.6, min_improvement=0.01):
    return ModelSpec(
        name="mood-depression-xgb", family="mood", task="depression",
        architecture={"kind": "xgboost"}, gate={"metric": "auc", "min_absolute": min_absolute,
                                              "min_improvement": min_improvement},
        retraining={"dag_id": "mood_population_finetune"},
    )


def _train_and_register(spec, dag_run_id, auc):
    x = np.random.default_rng(0).normal(size=(40, 3))
    y = (x[:, 0] > 0).astype(int)
    model = LogisticRegression().fit(x, y)

    def log_model():
        return mlflow.sklearn.log_model(model, name="model", input_example=x[:2])

    run_id, uri = registry.log_training_run(spec, dag_run_id=dag_run_id, params={"C": 1.0},
                                            metrics={"auc": auc}, log_model=log_model)
    return registry.register(spec, run_id=run_id, model_uri=uri, dag_run_id=dag_run_id)


def test_first_version_promoted_on_min_absolute_only(home):
    spec = _spec()
    v1 = _train_and_register(spec, "run-1", 0.7)
    assert "challenger" in registry.get_alias(spec.name, "challenger").aliases
    result = registry.gate_and_promote(spec, v1, 0.7, None)
    assert result["promoted"] and registry.champion(spec.name).version == v1.version


def test_gate_rejects_below_minimum_and_records_reasons(home):
    spec = _spec(min_absolute=0.8)
    v1 = _train_and_register(spec, "run-low", 0.7)
    result = registry.gate_and_promote(spec, v1, 0.7, None)
    assert not result["promoted"]
    assert registry.champion(spec.name) is None
    tags = registry.get_alias(spec.name, "challenger").tags
    assert tags["gate_decision"] == "rejected" and "misses the minimum" in tags["gate_reasons"]


def test_must_beat_champion_by_min_improvement_then_rollback(home):
    spec = _spec()
    v1 = _train_and_register(spec, "run-1", 0.70)
    registry.gate_and_promote(spec, v1, 0.70, None)
    v2 = _train_and_register(spec, "run-2", 0.705)
    assert not registry.gate_and_promote(spec, v2, 0.705, 0.70)["promoted"]
    assert registry.champion(spec.name).version == v1.version
    v3 = _train_and_register(spec, "run-3", 0.75)
    assert registry.gate_and_promote(spec, v3, 0.75, 0.70)["promoted"]
    assert registry.champion(spec.name).version == v3.version
    back = registry.rollback(spec.name)
    assert back == {"name": spec.name, "from": v3.version, "to": v1.version}
    assert registry.champion(spec.name).version == v1.version
    listed = {row["name"]: row for row in registry.list_models()}
    assert listed[spec.name]["champion"]["version"] == v1.version
    assert listed[spec.name]["latest_version"] == 3


def test_register_is_idempotent_per_dag_run(home):
    spec = _spec()
    first = _train_and_register(spec, "same-run", 0.7)
    again = _train_and_register(spec, "same-run", 0.7)
    assert again.version == first.version
    client = registry.configure()
    assert len(client.search_model_versions(f"name = '{spec.name}'")) == 1
    registry.gate_and_promote(spec, first, 0.7, None)
    assert registry.gate_and_promote(spec, again, 0.7, None)["promoted"]  # re-run of promote: no-op


def test_rollback_without_champion_is_clear(home):
    with pytest.raises(RegistryError, match="no champion"):
        registry.rollback("mood-depression-xgb")


def test_missing_server_is_a_clear_registry_error(home, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    with pytest.raises(RegistryError, match="does not answer") as err:
        registry.configure()
    assert "MLFLOW_TRACKING_URI" in str(err.value)
