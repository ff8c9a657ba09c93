"""Bad input class: specs that would only fail after training, or never (issue 10, item 5, 12).

Everything that can be checked before training is: gate metric per task type, fractions,
drift thresholds, folder-level problems (duplicates, file names, DAG ids, empty or missing
folder), unreadable files (not UTF-8, a folder named x.yaml) and YAML alias bombs.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from biotune import specs
from biotune.errors import MissingInputError, SpecError

ROOT = Path(__file__).resolve().parents[2]
GOOD = {
    "name": "mood-depression-xgb", "family": "mood", "task": "depression",
    "architecture": {"kind": "xgboost"}, "gate": {"metric": "auc", "min_absolute": 0.6},
    "retraining": {"dag_id": "mood_population_finetune"},
}


def _write(folder: Path, spec: dict, file_name: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (file_name or f"{spec['name']}.yaml")
    path.write_text(yaml.safe_dump(spec))
    return path


def _with(**changes) -> dict:
    spec = yaml.safe_load(yaml.safe_dump(GOOD))
    for dotted, value in changes.items():
        node = spec
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return spec


def test_the_repository_specs_pass_every_check():
    assert len(specs.check_all(ROOT / "models", ROOT / "dags")) >= 4


@pytest.mark.parametrize("metric,hint", [("aucc", "did you mean 'auc'"), ("AUC", "did you mean 'auc'"),
                                         ("rmse", "use one of"), ("macro_f1", "use one of"), ("", "use one of")])
def test_gate_metric_the_task_type_does_not_compute(tmp_path, metric, hint):
    path = _write(tmp_path, _with(gate__metric=metric))
    with pytest.raises(SpecError) as err:
        specs.load_spec(path)
    assert "gate.metric" in str(err.value) and "binary" in str(err.value) and hint in str(err.value)


def test_metric_registry_can_be_extended_for_generation():
    assert specs.gate_metric_problem("macro_f1", "multiclass") is None
    assert "multiclass" in specs.gate_metric_problem("auc", "multiclass")
    assert specs.gate_metric_problem("rouge_l", "generation") is None  # nothing declared: not judged
    specs.register_metrics("generation", ["rouge_l", "bleu"])
    try:
        assert specs.gate_metric_problem("rougel", "generation").endswith("bleu, rouge_l")
    finally:
        specs.METRICS_BY_TASK_TYPE["generation"].clear()
    assert "unknown task type" in specs.gate_metric_problem("auc", "regression")


@pytest.mark.parametrize("val,test", [(0.5, 0.5), (0.7, 0.4), (0.9, 0.1)])
def test_validation_and_test_fractions_that_leave_no_training_set(tmp_path, val, test):
    path = _write(tmp_path, _with(training__validation_fraction=val, training__test_fraction=test))
    with pytest.raises(SpecError, match="training: validation_fraction \\+ test_fraction"):
        specs.load_spec(path)


@pytest.mark.parametrize("threshold,critical", [(0.3, 0.2), (0.25, 0.2499)])
def test_critical_below_threshold(tmp_path, threshold, critical):
    path = _write(tmp_path, _with(drift__threshold=threshold, drift__critical=critical))
    with pytest.raises(SpecError, match="drift: critical .* is below threshold"):
        specs.load_spec(path)


def test_duplicate_names_and_misnamed_files(tmp_path):
    _write(tmp_path, GOOD)
    _write(tmp_path, GOOD, "mood-depression-xgb-copy.yaml")
    with pytest.raises(SpecError) as err:
        specs.all_specs(tmp_path)
    assert "used by 2 files" in str(err.value) and "mood-depression-xgb-copy.yaml holds model" in str(err.value)


def test_get_spec_never_returns_another_model(tmp_path):
    other = _with(name="mood-depression-pat", architecture={"kind": "pat", "size": "S"})
    _write(tmp_path, other, "mood-depression-xgb.yaml")  # the file says xgb, the spec says pat
    with pytest.raises(SpecError, match="holds model 'mood-depression-pat', not 'mood-depression-xgb'"):
        specs.get_spec("mood-depression-xgb", tmp_path)


@pytest.mark.parametrize("dag_id", ["mood_population_finetun", "no_such_dag"])
def test_retraining_dag_that_does_not_exist(tmp_path, dag_id):
    _write(tmp_path, _with(retraining__dag_id=dag_id))
    with pytest.raises(SpecError) as err:
        specs.check_all(tmp_path, ROOT / "dags")
    assert f"retraining.dag_id {dag_id!r} is not a DAG" in str(err.value)
    if dag_id.startswith("mood"):
        assert "did you mean 'mood_population_finetune'" in str(err.value)


def test_dag_ids_are_read_without_airflow(tmp_path):
    (tmp_path / "a.py").write_text("from airflow.sdk import dag\n@dag(dag_id='x_one')\ndef whatever(): ...\n")
    (tmp_path / "b.py").write_text("from airflow.sdk import dag\n@dag(schedule=None)\ndef by_name(): ...\n")
    (tmp_path / "c.py").write_text("from airflow import DAG\nwith DAG('classic') as d: pass\n")
    (tmp_path / "d.py").write_text("def broken(:\n")
    (tmp_path / "e.py").write_text("from biotune_airflow.builders import finetune_dag\n"
                                   "finetune_dag('mood', dag_id='built_one', doc_md=__doc__)\n"
                                   "t = TriggerDagRunOperator(task_id='t', trigger_dag_id='not_declared_here')\n")
    assert specs.dag_ids(tmp_path) == {"x_one": "a.py", "by_name": "b.py", "classic": "c.py", "built_one": "e.py"}


def test_check_all_lists_every_problem_at_once(tmp_path):
    _write(tmp_path, _with(gate__metric="aucc"))
    _write(tmp_path, _with(name="mood-ssri-xgb", task="ssri", drift__threshold=0.5, drift__critical=0.3))
    _write(tmp_path, _with(name="mood-benzodiazepine-xgb", task="benzodiazepine", retraining__dag_id="nope"))
    with pytest.raises(SpecError) as err:
        specs.check_all(tmp_path, ROOT / "dags")
    text = str(err.value)
    assert text.startswith("3 problem(s)") and "aucc" in text and "below threshold" in text and "'nope'" in text


@pytest.mark.parametrize("make", ["missing", "empty", "only_yml", "a_file"])
def test_missing_or_empty_specs_folder_is_a_clear_error(tmp_path, make):
    folder = tmp_path / "models"
    if make == "empty":
        folder.mkdir()
    elif make == "only_yml":
        folder.mkdir()
        (folder / "mood-depression-xgb.yml").write_text(yaml.safe_dump(GOOD))
    elif make == "a_file":
        folder.write_text("not a folder")
    with pytest.raises((MissingInputError, SpecError)) as err:
        specs.all_specs(folder)
    assert str(folder) in str(err.value) and err.value.bad_input
    if make == "only_yml":
        assert "rename mood-depression-xgb.yml to .yaml" in err.value.fix


def test_a_folder_named_like_a_spec(tmp_path):
    (tmp_path / "x.yaml").mkdir()
    with pytest.raises(SpecError, match="x.yaml is a folder, not a spec file"):
        specs.all_specs(tmp_path)


@pytest.mark.parametrize("raw,where", [
    ("name: mood-depression-xgb\ndescription: caf\xe9\n".encode("latin-1"), ":2"),
    (yaml.safe_dump(GOOD).encode("utf-16"), ":1"),
    (b"\xff\xfe\x00garbage", ":1"),
])
def test_spec_that_is_not_utf8(tmp_path, raw, where):
    path = tmp_path / "mood-depression-xgb.yaml"
    path.write_bytes(raw)
    with pytest.raises(SpecError, match="not UTF-8") as err:
        specs.load_spec(path)
    assert err.value.where.endswith(where) and "line" in err.value.what


def test_utf8_with_bom_and_accents_is_fine(tmp_path):
    path = tmp_path / "mood-depression-xgb.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + yaml.safe_dump(_with(description="café"), allow_unicode=True).encode())
    assert specs.load_spec(path).description == "café"


def _bomb(levels: int, width: int) -> str:
    lines = ["name: mood-depression-xgb", "family: mood", "task: depression",
             "retraining: {dag_id: mood_population_finetune}", "architecture:", "  kind: xgboost", "  params:",
             "    l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"    l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("levels,width", [(9, 9), (30, 2), (4, 40)])
def test_yaml_alias_bombs_are_refused_quickly(tmp_path, levels, width):
    path = tmp_path / "mood-depression-xgb.yaml"
    path.write_text(_bomb(levels, width))
    t0 = time.perf_counter()
    with pytest.raises(SpecError, match="spec refused") as err:
        specs.load_spec(path)
    assert time.perf_counter() - t0 < 2.0
    assert "anchors" in err.value.fix


def test_recursive_alias_is_refused(tmp_path):
    path = tmp_path / "mood-depression-xgb.yaml"
    path.write_text(yaml.safe_dump(GOOD) + "description: &d [a, *d]\n")
    with pytest.raises(SpecError, match="recursive"):
        specs.load_spec(path)


def test_a_few_anchors_are_still_allowed(tmp_path):
    path = tmp_path / "mood-depression-xgb.yaml"
    path.write_text("name: mood-depression-xgb\nfamily: mood\ntask: depression\n"
                    "training: {params: &p {depth: 3, eta: 0.1}}\n"
                    "architecture: {kind: xgboost, params: *p}\n"
                    "retraining: {dag_id: mood_population_finetune}\n")
    spec = specs.load_spec(path)
    assert spec.architecture.params == {"depth": 3, "eta": 0.1} == spec.training.params
