"""Model specs: one YAML file per registered model in models/.

A spec says what a model is (family, task, architecture), how it trains, what it must
reach to be promoted (gate), how drift is measured and when to retrain. Unknown fields
and wrong types fail naming the file and the field, so a typo never silently changes policy.

Everything that can be checked before training is checked when a spec loads: the gate
metric is one the task type computes (:data:`METRICS_BY_TASK_TYPE`), validation + test
fractions leave a training set, drift ``critical >= threshold``. :func:`check_all` adds what
needs the whole folder: duplicate names, a file name that differs from its ``name:``, a
``retraining.dag_id`` with no DAG file. Spec files are read as UTF-8 with a safe loader that
refuses YAML alias bombs (a few anchors are fine; exponential expansion is not).
"""

from __future__ import annotations

import ast
import difflib
import os
from pathlib import Path
from typing import Any, Iterable, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from biotune import settings
from biotune.errors import MissingInputError, SpecError

# Metric names a gate may use, per task type (what the shared evaluation computes). A
# generation family declares its own through register_metrics("generation", [...]).
METRICS_BY_TASK_TYPE: dict[str, set[str]] = {
    "binary": {"auc", "pr_auc", "brier", "f1", "sensitivity", "specificity", "accuracy"},
    "multiclass": {"accuracy", "macro_f1"},
    "generation": set(),
}
DEFAULT_TASK_TYPE = "binary"  # specs written before task_type existed are binary classifiers
MAX_SPEC_BYTES = 256 * 1024
MAX_YAML_NODES = 20_000  # nodes after alias expansion; a real spec has a few hundred
MAX_YAML_ALIASES = 50


def register_metrics(task_type: str, names: Iterable[str]) -> None:
    """Declare more metric names a gate of ``task_type`` may use (e.g. a generation family's)."""
    METRICS_BY_TASK_TYPE.setdefault(task_type, set()).update(str(n) for n in names)


def gate_metric_problem(metric: str, task_type: str | None) -> str | None:
    """Why ``metric`` cannot gate a model of ``task_type`` (None when it can).

    A task type with no declared metrics (a generation family not registered yet) is not
    judged here; the family's registration makes it checkable."""
    task_type = task_type or DEFAULT_TASK_TYPE
    known = METRICS_BY_TASK_TYPE.get(task_type)
    if known is None:
        return f"unknown task type {task_type!r} (known: {', '.join(sorted(METRICS_BY_TASK_TYPE))})"
    if not known or metric in known:
        return None
    close = [m for m in sorted(known) if m == metric.lower()] or difflib.get_close_matches(metric, sorted(known), n=1)
    return (f"gate.metric {metric!r} is not a metric a {task_type} model is evaluated on"
            + (f" (did you mean {close[0]!r}?)" if close else "") + f"; use one of {', '.join(sorted(known))}")


class _SpecLoader(yaml.SafeLoader):
    """SafeLoader that refuses documents whose aliases expand beyond a spec's plausible size
    (a "billion laughs" bomb loads instantly and explodes later, when the params are copied)."""

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self._aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise _YamlBomb(f"more than {MAX_YAML_ALIASES} YAML aliases (*name)")
        return super().compose_node(parent, index)

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None:
            _expanded_size(node, {}, set())
        return node


class _YamlBomb(Exception):
    pass


def _expanded_size(node, memo: dict, active: set) -> int:
    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:
        raise _YamlBomb("a recursive YAML alias (a node that contains itself)")
    active.add(key)
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, memo, active) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, memo, active) + _expanded_size(v, memo, active) for k, v in node.value)
    active.discard(key)
    if size > MAX_YAML_NODES:
        raise _YamlBomb(f"aliases that expand to more than {MAX_YAML_NODES:,} YAML nodes")
    memo[key] = size
    return size


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Architecture(_Strict):
    kind: str  # an architecture the family registers (biotune.family)
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

    @model_validator(mode="after")
    def _fractions_leave_a_training_set(self) -> "Training":
        total = self.validation_fraction + self.test_fraction
        if total >= 1:
            raise ValueError(f"validation_fraction + test_fraction = {total:g} leaves no training data; "
                             "keep their sum below 1 (e.g. 0.2 + 0.2)")
        return self


class Gate(_Strict):
    metric: str = "auc"
    higher_is_better: bool = True
    min_absolute: float = 0.5
    min_improvement: float = 0.0
    # other metrics that must reach a minimum too (e.g. glucose: format_rate 0.95, safety_rate 1.0)
    minimums: dict[str, float] = Field(default_factory=dict)
    # "required": after the automatic gate passes, a person approves the promotion in the Airflow UI
    approval: Literal["none", "required"] = "none"
    approval_timeout_hours: float = Field(72.0, gt=0)


class Drift(_Strict):
    method: Literal["quantile", "evidently"] = "quantile"
    bins: int = Field(10, ge=2)
    threshold: float = Field(0.2, gt=0)  # a feature counts as drifted at or above this
    critical: float = Field(0.25, gt=0)  # alert at or above this
    features: list[str] | None = None  # None: every feature the model was trained on
    # below this many rows a batch is "too small to judge": recorded, never drift, never an alert
    min_rows: int = Field(30, ge=1)

    @model_validator(mode="after")
    def _critical_not_below_threshold(self) -> "Drift":
        if self.critical < self.threshold:
            raise ValueError(f"critical ({self.critical:g}) is below threshold ({self.threshold:g}): an alert "
                             "would fire on a feature that does not count as drifted; set critical >= threshold")
        return self


class Retraining(_Strict):
    min_drifted_features: int = Field(3, ge=1)
    consecutive_batches: int = Field(3, ge=1)
    min_confidence: float = Field(0.6, ge=0, le=1)
    max_error_rate_increase: float = Field(0.05, ge=0)
    min_new_labels: int = Field(200, ge=0)
    min_classes: int | None = None
    min_days_since_last: int = Field(14, ge=0)
    dag_id: str | None = None  # None: the family's fine-tune DAG
    # a retrain's training split: this share of labelled production rows (since the champion's
    # training), the rest original training rows; 0 keeps production rows out of training (they
    # still join validation and test)
    new_data_share: float = Field(0.7, ge=0, le=1)


class ModelSpec(_Strict):
    name: str
    family: str = Field(pattern=r"^[a-z][a-z0-9_]*$")  # a registered family (biotune.family)
    task: str
    task_type: Literal["binary", "multiclass", "generation"] = "binary"
    # population: one model for everyone; person: one model per person (registered as <name>--<person>)
    scope: Literal["population", "person"] = "population"
    classes: list[str] | None = None  # multiclass: class names in the model's output order
    description: str = ""
    architecture: Architecture
    training: Training = Training()
    gate: Gate = Gate()
    drift: Drift = Drift()
    retraining: Retraining = Retraining()
    source: Path | None = None  # the file it came from; set by the loader

    @model_validator(mode="after")
    def _name_follows_convention(self) -> "ModelSpec":
        expected = f"{self.family}-{self.task}-"
        if not self.name.startswith(expected):
            raise ValueError(f"name must be '<family>-<task>-<arch>', i.e. start with '{expected}'")
        return self

    @model_validator(mode="after")
    def _gate_metric_is_computed(self) -> "ModelSpec":
        task_type = getattr(self, "task_type", None)
        problems = [gate_metric_problem(self.gate.metric, task_type)]
        for name in (getattr(self.gate, "minimums", None) or {}):  # other metrics the gate requires
            problem = gate_metric_problem(name, task_type)
            problems.append(problem.replace("gate.metric", "gate.minimums key", 1) if problem else None)
        problems = [p for p in problems if p]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def public_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"source"})


def _read_yaml(path: Path):
    if path.is_dir():
        raise SpecError(f"{path.name} is a folder, not a spec file", where=str(path),
                        fix="a spec is one YAML file; rename or move the folder out of the specs folder")
    try:
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError(f"spec file is {size:,} bytes (a spec is a few KB; at most {MAX_SPEC_BYTES:,})",
                            where=str(path), fix="keep data out of specs; point to files instead")
        data = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read the spec: {exc.strerror or exc}", where=str(path),
                        fix="check the file's permissions (and that it is not a broken symlink)") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SpecError(f"spec is not UTF-8 text (byte {exc.start}, line {line}: {data[exc.start:exc.start + 1]!r})",
                        where=f"{path}:{line}", fix="save the file as UTF-8") from exc
    try:
        return yaml.load(text, Loader=_SpecLoader)  # noqa: S506 (a SafeLoader subclass)
    except _YamlBomb as exc:
        raise SpecError(f"spec refused: {exc}", where=str(path),
                        fix="write the values out instead of expanding YAML anchors (&name / *name)") from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"spec is not valid YAML: {exc}", where=str(path), fix="fix the YAML syntax") from exc
    except RecursionError as exc:
        raise SpecError("spec is nested too deeply", where=str(path), fix="flatten the YAML") from exc


def load_spec(path: str | Path) -> ModelSpec:
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise MissingInputError(f"no spec file {path.name}", where=str(path),
                                fix=f"add {path.name} to {settings.specs_dir()}")
    raw = _read_yaml(path)
    if not isinstance(raw, dict):
        raise SpecError("spec must be a YAML mapping" + (" (the file is empty)" if raw is None else ""),
                        where=str(path), fix="see models/README.md for the fields")
    try:
        return ModelSpec(**raw, source=path)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{field}: {msg}" if field else msg)
        raise SpecError(
            "invalid spec: " + "; ".join(problems), where=str(path),
            fix="correct or remove the named field(s); see models/README.md for the schema",
        ) from exc
    except TypeError as exc:  # keys that are not strings (e.g. "1: x") reach the model as **kwargs
        raise SpecError(f"invalid spec: {exc}", where=str(path), fix="field names must be text") from exc


def _spec_files(directory: Path) -> list[Path]:
    if not directory.exists():
        raise MissingInputError(f"the specs folder {directory} does not exist", where=str(directory),
                                fix="create it with one <name>.yaml per model, or set BIOTUNE_SPECS to the folder "
                                    "that holds them")
    if not directory.is_dir():
        raise SpecError(f"the specs folder {directory} is a file, not a folder", where=str(directory),
                        fix="set BIOTUNE_SPECS to the folder holding the <name>.yaml files")
    files = sorted(directory.glob("*.yaml"))
    if not files:
        others = sorted(p.name for p in directory.glob("*.yml"))
        raise MissingInputError(f"the specs folder {directory} holds no *.yaml spec", where=str(directory),
                                fix=("rename " + ", ".join(others) + " to .yaml" if others else
                                     "add one <name>.yaml per model (see models/README.md)"))
    return files


def all_specs(directory: str | Path | None = None) -> list[ModelSpec]:
    """Every spec of the folder; a missing or empty folder, a duplicate ``name:`` or a file not
    named after its model raise (get_spec would otherwise return the wrong model)."""
    directory = Path(directory or settings.specs_dir())
    specs = [load_spec(p) for p in _spec_files(directory)]
    problems = _folder_problems(specs)
    if problems:
        raise SpecError("specs disagree with their files: " + "; ".join(problems), where=str(directory),
                        fix="one model per file, the file named <name>.yaml, every name used once")
    return specs


def _folder_problems(specs: list[ModelSpec]) -> list[str]:
    problems = []
    by_name: dict[str, list[str]] = {}
    for spec in specs:
        by_name.setdefault(spec.name, []).append(spec.source.name if spec.source else "?")
        if spec.source is not None and spec.source.stem != spec.name:
            problems.append(f"{spec.source.name} holds model {spec.name!r} (rename the file to {spec.name}.yaml "
                            f"or fix its name:)")
    problems += [f"name {name!r} is used by {len(files)} files ({', '.join(files)})"
                 for name, files in by_name.items() if len(files) > 1]
    return problems


def get_spec(name: str, directory: str | Path | None = None) -> ModelSpec:
    directory = Path(directory or settings.specs_dir())
    path = directory / f"{name}.yaml"
    if path.exists():
        spec = load_spec(path)
        if spec.name != name:
            raise SpecError(f"{path.name} holds model {spec.name!r}, not {name!r}", where=str(path),
                            fix=f"fix its name: to {name}, or rename the file to {spec.name}.yaml")
        return spec
    for spec in all_specs(directory):
        if spec.name == name:
            return spec
    raise MissingInputError(f"no spec named {name}", where=str(directory),
                            fix=f"add {name}.yaml to {directory}")


# --------------------------------------------------------------------------- folder checks

def default_dags_dir() -> Path:
    """The DAG folder (AIRFLOW__CORE__DAGS_FOLDER, else the repository's dags/)."""
    return Path(os.environ.get("AIRFLOW__CORE__DAGS_FOLDER") or settings.REPO_ROOT / "dags")


def dag_ids(directory: str | Path) -> dict[str, str]:
    """``{dag_id: file name}`` of the DAG files in ``directory``, read without importing them
    (no Airflow needed): any call with a literal ``dag_id=`` (``@dag(dag_id=...)``,
    ``DAG(dag_id=...)``, a DAG builder such as ``finetune_dag("mood", dag_id=...)``),
    ``DAG("id")``, and ``@dag`` functions without a dag_id (their function name)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise MissingInputError(f"the DAG folder {directory} does not exist", where=str(directory),
                                fix="set AIRFLOW__CORE__DAGS_FOLDER (or pass dags_dir) to the folder of DAG files")
    found: dict[str, str] = {}
    for path in sorted(directory.glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue  # a broken DAG file is the DAG-integrity test's business
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for dec in node.decorator_list:
                    fn = dec.func if isinstance(dec, ast.Call) else dec
                    name = fn.id if isinstance(fn, ast.Name) else getattr(fn, "attr", "")
                    if name == "dag" and not (isinstance(dec, ast.Call) and _dag_id_arg(dec)):
                        found.setdefault(node.name, path.name)
            elif isinstance(node, ast.Call):
                fn = node.func
                name = fn.id if isinstance(fn, ast.Name) else getattr(fn, "attr", "")
                explicit = _dag_id_arg(node, positional=name == "DAG")
                if explicit:
                    found.setdefault(explicit, path.name)
    return found


def _dag_id_arg(call: ast.Call, positional: bool = False) -> str | None:
    for kw in call.keywords:
        if kw.arg == "dag_id" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
            return kw.value.value
    if positional and call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def check_all(specs_dir: str | Path | None = None, dags_dir: str | Path | None = None) -> list[ModelSpec]:
    """Check every spec of a folder before anything trains; return them, or raise one SpecError
    listing every problem found (each file's own errors, duplicate names, file names that differ
    from ``name:``, retraining DAGs with no DAG file). For ``biotune spec check``."""
    directory = Path(specs_dir or settings.specs_dir())
    files = _spec_files(directory)
    specs, problems = [], []
    for path in files:
        try:
            specs.append(load_spec(path))
        except SpecError as exc:
            problems.append(f"{path.name}: {exc.what}")
    problems += _folder_problems(specs)
    dag_folder = Path(dags_dir or default_dags_dir())
    known = dag_ids(dag_folder)
    for spec in specs:
        dag_id = spec.retraining.dag_id
        if dag_id is not None and dag_id not in known:  # None: the family's own fine-tune DAG
            close = difflib.get_close_matches(dag_id, sorted(known), n=1)
            problems.append(f"{spec.source.name if spec.source else spec.name}: retraining.dag_id {dag_id!r} is not "
                            f"a DAG in {dag_folder}" + (f" (did you mean {close[0]!r}?)" if close else "")
                            + f"; DAGs there: {', '.join(sorted(known)) or 'none'}")
    if problems:
        raise SpecError(f"{len(problems)} problem(s) in the specs of {directory}:\n" +
                        "\n".join(f"  - {p}" for p in problems), where=str(directory),
                        fix="fix each file named above, then run `biotune spec check` again")
    return specs
