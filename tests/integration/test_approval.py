"""Human sign-off through Airflow itself: a spec with `gate.approval: required` makes the fine-tune DAG
wait, after the automatic gate passes, for a person's answer to the `approve` task (Airflow's
ApprovalOperator). Answered here through Airflow's REST API as the UI does: one model approved
(promoted, the approver recorded on the version), the other rejected (not promoted, the reason
recorded). Runs the toy family of the contract tests on a real scheduler (LocalExecutor)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import yaml
from airflowproc import ROOT, Api, airflow_processes

pytestmark = pytest.mark.slow
CONTRACT = ROOT / "tests" / "contract"
DAG_ID = "toy_finetune"


def _log(msg: str) -> None:
    print(f"[approval-test {time.strftime('%H:%M:%S')}] {msg}", flush=True)


@pytest.fixture(scope="module")
def toy_airflow(tmp_path_factory):
    sys.path.insert(0, str(CONTRACT))
    import toyfamily

    home = tmp_path_factory.mktemp("approval-home")
    specs = home / "specs"
    specs.mkdir()
    for task in ("y", "z"):
        spec = {**toyfamily.SPEC, "name": f"toy-{task}-logreg", "task": task,
                "gate": {"metric": "auc", "min_absolute": 0.6, "approval": "required", "approval_timeout_hours": 1}}
        (specs / f"toy-{task}-logreg.yaml").write_text(yaml.safe_dump(spec))
    source = toyfamily.ToyFamily().demo_training_data(str(home / "landing"), 400, seed=2)["source"]
    extra = {
        "BIOTUNE_SPECS": str(specs),
        "PYTHONPATH": f"{ROOT / 'include'}:{CONTRACT}",
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps([
            {"name": "toy", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
             "kwargs": {"path": str(CONTRACT / "dags"), "refresh_interval": 0}}]),
        "AIRFLOW__CORE__DAGS_FOLDER": str(CONTRACT / "dags"),
    }
    with airflow_processes(home, extra, log=_log) as ui:
        yield {**ui, "source": source, "specs": specs}


def _wait(predicate, what: str, timeout: float = 300, every: float = 3):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def test_approve_one_model_and_reject_the_other_through_the_rest_api(toy_airflow, monkeypatch):
    api = Api(toy_airflow)
    api.wait_for_dag(DAG_ID)
    r = api.post(f"/dags/{DAG_ID}/dagRuns", {"logical_date": None, "conf": {"source": toy_airflow["source"]}})
    assert r.ok, r.text
    run_id = r.json()["dag_run_id"]
    _log(f"triggered {run_id}")

    def waiting() -> dict | None:
        tis = api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", params={"task_id": "approve"})
        tis = [t for t in tis.json().get("task_instances", []) if t["task_id"] == "approve"]
        found = {}
        # answer only once the task has paused for input: a response recorded while the task is still
        # on its way to awaiting_input is never picked up (Airflow 3.3 resumes it on the state change)
        for t in (t for t in tis if t.get("state") in ("awaiting_input", "deferred")):
            detail = api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/approve/{t['map_index']}/hitlDetails")
            if detail.ok and not detail.json().get("response_received"):
                found[t["map_index"]] = detail.json()
        return found if len(found) == 2 else None

    details = _wait(waiting, "both approve tasks to wait for a person", timeout=600)
    # A person answers seconds later, not in the same instant. Answered at once, Airflow 3.3 can fail
    # the resumed task: the executor's late "finished" event of the workload that paused it arrives
    # while the resumed one runs under the same try number, the scheduler sets it up_for_retry, and
    # the resumed run's success report gets a 404 (seen in CI; the task then waits for input again).
    time.sleep(15)
    by_model = {}
    for index, detail in details.items():
        assert detail["options"] == ["Approve", "Reject"]
        assert "passed its automatic gate" in detail["body"] and "champion" in detail["body"]
        model = "toy-y-logreg" if "toy-y-logreg" in detail["subject"] else "toy-z-logreg"
        by_model[model] = index
    assert set(by_model) == {"toy-y-logreg", "toy-z-logreg"}

    base = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/approve"

    seen: dict[int, str] = {}

    def answered(index: int):
        seen[index] = api.get(f"{base}/{index}").json().get("state")
        return seen[index] if seen[index] in ("success", "failed") else None

    def task_log(index: int) -> str:  # what the approve task printed, for a failure message
        logs = sorted((toy_airflow["home"] / "airflow" / "logs").glob(f"dag_id={DAG_ID}/run_id={run_id}/"
                                                                      f"task_id=approve/map_index={index}/*.log"))
        return "\n".join(f"--- {p.name}\n" + "\n".join(p.read_text().splitlines()[-15:]) for p in logs)

    # one answer at a time, as a person clicks them (two answers in the same instant can race in
    # Airflow's resume of mapped HITL tasks)
    for model, choice in (("toy-y-logreg", "Approve"), ("toy-z-logreg", "Reject")):
        r = api.patch(f"{base}/{by_model[model]}/hitlDetails", {"chosen_options": [choice]})
        assert r.ok, r.text
        index = by_model[model]
        try:
            state = _wait(lambda: answered(index), f"{model}'s approve task to finish")
        except AssertionError as exc:
            raise AssertionError(f"{exc} (last state {seen.get(index)!r})\n{task_log(index)}") from None
        assert state == "success", task_log(index)

    def finished():
        state = api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}").json()["state"]
        return state if state in ("success", "failed") else None

    assert _wait(finished, "the run to finish") == "success"

    monkeypatch.setenv("BIOTUNE_HOME", str(toy_airflow["home"]))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    from biotune import registry

    approved = registry.champion("toy-y-logreg")
    assert approved is not None and approved.tags["approved_by"] == "admin"
    assert approved.tags["gate_decision"] == "promoted"
    assert registry.champion("toy-z-logreg") is None
    rejected = registry.configure().get_model_version("toy-z-logreg", "1")
    assert rejected.tags["gate_decision"] == "not approved" and "rejected by admin" in rejected.tags["approval"]
