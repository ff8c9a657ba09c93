"""Helpers for running DAGs end to end in tests."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / f"{dag_id}.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]


def task_states(dag_run) -> dict[str, list[str]]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter(TaskInstance.dag_id == dag_run.dag_id,
                                                 TaskInstance.run_id == dag_run.run_id).all()
        states: dict[str, list[str]] = {}
        for ti in tis:
            states.setdefault(ti.task_id, []).append(str(ti.state))
        return states


def small_sample_specs(directory: Path, edit=None) -> Path:
    """Copies of every spec in models/ whose gate (min_absolute 0.5) suits the small generated samples
    of the tests; ``edit(spec_dict)`` may change more. Point BIOTUNE_SPECS at the returned folder."""
    import yaml

    directory.mkdir(parents=True, exist_ok=True)
    for path in (ROOT / "models").glob("*.yaml"):
        spec = yaml.safe_load(path.read_text())
        spec["gate"]["min_absolute"] = 0.5
        if edit is not None:
            edit(spec)
        (directory / path.name).write_text(yaml.safe_dump(spec))
    return directory
