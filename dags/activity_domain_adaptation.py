"""
### Activity domain adaptation: tell a pipeline bug from a domain shift, then one gated head-only transfer

A lab's 11-class anxiety-activity recogniser (the seed's 1D-CNN-BiLSTM on 4 s wrist-IMU windows)
scores 14-15% on a new device (Garmin). This DAG follows the seed's decision tree, with a branch
per decision in the graph:

1. **diagnose**: the pipeline diagnostic on the new device's session CSVs against the model's
   training config: the seed's eight checks plus what the data show (rate from the timestamps,
   units from the magnitude at rest, accelerometer/gyroscope order, axes from gravity and the
   gyro/accel handedness, the scaler). Report: `runs/activity_domain_adaptation/<run>/diagnostic.json`.
2. **pipeline_mismatch** (any check failed): the run stops and fails naming the checks; unreadable
   files go to `quarantine/`; nothing is prepared, trained or registered.
3. **prepare** the windows (new device split by person; the source domain for the mix), the
   **base_model** (the lab's `.keras` in `models/pretrained/`, refused if another architecture, else
   trained on the source domain), then the **shift_check**: per-channel PSI against the source,
   prediction collapse, mean confidence, accuracy, with a verdict and its evidence (`shift.json`).
4. **no_shift**: nothing to adapt (unless `force`), the run ends.
5. **train** (head-only transfer: last 4 layers, Adam 1e-4, 20 epochs, patience 5, batch 32, 30%
   source / 70% new-domain windows, validation on new-domain people) -> **evaluate** on held-out
   new-domain people -> **register_gate_promote** (accuracy >= 0.65 and >= 0.05 over the champion
   on the same windows) -> **approve** (when the spec asks for a person's approval).

**Params**: `data`, `source`, `config` (empty: the lake's `landing/activity/garmin`, `.../source`,
`.../config.json`), `pipeline`, `min_new_windows` (500), `force`, `model_size`, `source_epochs`,
`epochs`, `pretrained`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task, task_group
from biotune_airflow.operators import (PromotionApprovalOperator, RegisterGatePromoteOperator, fail_fast_on_bad_input,
                                       label_map_index)

from biotune.activity.family import ActivityFamily

DAG_ID = "activity_domain_adaptation"
LABEL = "{{ biotune_label }}"
FORM = ActivityFamily().dag_params()


def _log():
    import logging

    return logging.getLogger("biotune").info


@dag(dag_id=DAG_ID, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     max_active_runs=1, tags=["biotune", "activity", "fine-tune"], doc_md=__doc__,
     default_args={"owner": "biotune", "retries": 2, "retry_delay": timedelta(seconds=20)},
     params={name: Param(**kw) for name, kw in FORM.items()})
def activity_domain_adaptation():
    @task
    def diagnose(params=None, run_id=None, dag_run=None) -> dict:
        """The pipeline diagnostic; its report goes to the run's folder in the lake."""
        from biotune.activity.adaptation import diagnose_step
        from biotune.errors import SpecError

        unknown = sorted(set((getattr(dag_run, "conf", None) or {})) - set(FORM) - {"retrain"})
        with fail_fast_on_bad_input():
            if unknown:
                raise SpecError(f"unknown key(s) in the run's conf: {unknown}", where=f"{DAG_ID} conf",
                                fix=f"the DAG takes {sorted(FORM)}; check the spelling")
            diag = diagnose_step(dict(params), run_id)
        _log()(f"{diag['summary']}; report {diag['report']}")
        return diag

    @task.branch
    def pipeline_ok(diag: dict) -> str:
        """Any failed check: stop with the report; otherwise prepare the data."""
        return "prepare" if diag["ok"] else "pipeline_mismatch"

    @task
    def pipeline_mismatch(diag: dict, run_id=None) -> None:
        """Stop: the failed checks are the error; unreadable files are quarantined."""
        from biotune.activity.adaptation import stop_on_mismatch

        with fail_fast_on_bad_input():
            stop_on_mismatch(diag, run_id)

    @task
    def prepare(params=None, run_id=None, dag_run=None) -> dict:
        """New-device windows split by person, the source windows, the training config (a retrain:
        and the labelled production batches since the champion's training)."""
        from biotune import steps

        with fail_fast_on_bad_input():
            return steps.prepare("activity", dict(params), run_id, progress=_log(),
                                 retrain=(getattr(dag_run, "conf", None) or {}).get("retrain"))

    @task
    def base_model(dataset: dict, params=None, run_id=None) -> dict:
        """The lab's .keras model, or the CNN-BiLSTM trained on the source domain."""
        from biotune import steps

        with fail_fast_on_bad_input():
            return steps.prepare_architectures(dataset, run_id, dict(params), progress=_log())

    @task
    def shift_check(dataset: dict, prepared: dict, run_id=None) -> dict:
        """PSI per channel, prediction collapse, confidence: pipeline bug / domain shift / no shift."""
        from biotune.activity.adaptation import shift_step

        with fail_fast_on_bad_input():
            report = shift_step(dataset, prepared, run_id)
        _log()(f"shift check ({report['model']}): {report['verdict']}: " + "; ".join(report["evidence"]))
        return report

    @task.branch
    def shift_found(report: dict, params=None) -> str:
        """A domain shift (or `force`): fine-tune; otherwise stop."""
        return "model_names" if report["verdict"] == "domain shift" or params.get("force") else "no_shift"

    @task
    def no_shift(report: dict) -> dict:
        """Nothing to adapt: the deployed model already fits the new device."""
        _log()("no shift: " + "; ".join(report["evidence"]))
        return report

    @task
    def model_names() -> list[str]:
        """The family's models: its specs in models/."""
        from biotune import steps

        with fail_fast_on_bad_input():
            return steps.model_names("activity")

    @task_group(group_id="per_model", prefix_group_id=False)
    def per_model(model_name: str, dataset: dict, prepared: dict):
        @task(map_index_template=LABEL)
        def train(model_name: str, dataset: dict, prepared: dict, params=None, run_id=None) -> dict:
            """Head-only transfer on the new device's training people (30/70 mix)."""
            from biotune import steps

            label_map_index(model_name)
            with fail_fast_on_bad_input():
                return steps.train(model_name, dataset, prepared, run_id, dict(params), progress=_log())

        @task(map_index_template=LABEL)
        def evaluate(trained: dict, dataset: dict, run_id=None) -> dict:
            """Challenger and champion scored on the same held-out new-device people."""
            from biotune import steps

            label_map_index(trained["model"])
            with fail_fast_on_bad_input():
                return steps.evaluate(trained, dataset, run_id)

        published = RegisterGatePromoteOperator(task_id="register_gate_promote",
                                                candidate=evaluate(train(model_name, dataset, prepared), dataset),
                                                map_index_template=LABEL)
        PromotionApprovalOperator(task_id="approve", published=published.output, map_index_template=LABEL)

    diag = diagnose()
    branch = pipeline_ok(diag)
    dataset = prepare()
    branch >> [pipeline_mismatch(diag), dataset]
    prepared = base_model(dataset)
    report = shift_check(dataset, prepared)
    decided = shift_found(report)
    names = model_names()
    decided >> [no_shift(report), names]
    per_model.partial(dataset=dataset, prepared=prepared).expand(model_name=names)


activity_domain_adaptation()
