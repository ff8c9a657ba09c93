"""Model specs: one YAML file per registered model in models/.

A spec says what a model is (family, task, architecture), how it trains, what it must
reach to be promoted (gate), how drift is measured and when to retrain. Unknown fields
and wrong types fail naming the file and the field, so a typo never silently changes policy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from biotune import settings
from biotune.errors import MissingInputError, SpecError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Architecture(_Strict):
    kind: Literal["pat", "xgboost", "cnn_bilstm", "mamba2", "causal_lm"]
    size: str | None = None  # PAT: S, M or L
    params: dict[str, Any] = Field(default_factory=dict)


class Training(_Strict):
    mode: Literal["full", "linear", "lora", "head_only", "boosting", "sft"] = "full"
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    early_stopping_patience: int = Field(3, ge=1)
    validation_fraction: float = Field(0.2, gt=0, lt=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    seed: int = 0
    params: dict[str, Any] = Field(default_factory=dict)


class Gate(_Strict):
    metric: str = "auc"
    higher_is_better: bool = True
    min_absolute: float = 0.5
    min_improvement: float = 0.0


class Drift(_Strict):
    method: Literal["quantile", "evidently"] = "quantile"
    bins: int = Field(10, ge=2)
    threshold: float = Field(0.2, gt=0)  # a feature counts as drifted at or above this
    critical: float = Field(0.25, gt=0)  # alert at or above this
    features: list[str] | None = None  # None: every feature the model was trained on


class Retraining(_Strict):
    min_drifted_features: int = Field(3, ge=1)
    consecutive_batches: int = Field(3, ge=1)
    min_confidence: float = Field(0.6, ge=0, le=1)
    max_error_rate_increase: float = Field(0.05, ge=0)
    min_new_labels: int = Field(200, ge=0)
    min_classes: int | None = None
    min_days_since_last: int = Field(14, ge=0)
    dag_id: str


class ModelSpec(_Strict):
    name: str
    family: Literal["mood", "activity", "eeg", "glucose"]
    task: str
    description: str = ""
    architecture: Architecture
    training: Training = Training()
    gate: Gate = Gate()
    drift: Drift = Drift()
    retraining: Retraining
    source: Path | None = None  # the file it came from; set by the loader

    @model_validator(mode="after")
    def _name_follows_convention(self) -> "ModelSpec":
        expected = f"{self.family}-{self.task}-"
        if not self.name.startswith(expected):
            raise ValueError(f"name must be '<family>-<task>-<arch>', i.e. start with '{expected}'")
        return self

    def public_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"source"})


def load_spec(path: str | Path) -> ModelSpec:
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"no spec file {path.name}", where=str(path),
                                fix=f"add {path.name} to {settings.specs_dir()}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"spec is not valid YAML: {exc}", where=str(path), fix="fix the YAML syntax") from exc
    if not isinstance(raw, dict):
        raise SpecError("spec must be a YAML mapping", where=str(path), fix="see models/README.md for the fields")
    try:
        return ModelSpec(**raw, source=path)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "(spec)"
            problems.append(f"{field}: {err['msg']}")
        raise SpecError(
            "invalid spec: " + "; ".join(problems), where=str(path),
            fix="correct or remove the named field(s); see models/README.md for the schema",
        ) from exc


def all_specs(directory: str | Path | None = None) -> list[ModelSpec]:
    directory = Path(directory or settings.specs_dir())
    return [load_spec(p) for p in sorted(directory.glob("*.yaml"))]


def get_spec(name: str, directory: str | Path | None = None) -> ModelSpec:
    directory = Path(directory or settings.specs_dir())
    path = directory / f"{name}.yaml"
    if path.exists():
        return load_spec(path)
    for spec in all_specs(directory):
        if spec.name == name:
            return spec
    raise MissingInputError(f"no spec named {name}", where=str(directory),
                            fix=f"add {name}.yaml to {directory}")
