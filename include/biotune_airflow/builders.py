"""DAG builders: a family's fine-tune DAG from the family and its specs.

    locate sources -> validate (one per file) -> prepare (the family's dataset) -> prepare
    architectures (once per kind, e.g. PAT's encoder) -> per model, isolated from the others:
    train [-> wait for the provider's job] -> evaluate -> register_gate_promote -> approve

One model's failure does not block the others: the per-model tasks form a mapped task group, so a
failed ``train`` stops only that model's chain and the run shows which one failed. The model list
is the family's specs in models/, read when the run starts.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, Param, dag, task, task_group

from biotune_airflow.operators import (PromotionApprovalOperator, RegisterGatePromoteOperator, ValidateOperator,
                                       fail_fast_on_bad_input, label_map_index)
from biotune_airflow.triggers import RemoteJobOperator

LABEL = "{{ biotune_label | default(ti.map_index) }}"  # a task parked for input renders before it sets it


def family_dataset_asset(family: str) -> Asset:
    return Asset(f"biotune_{family}_dataset")


def finetune_dag(family: str, *, dag_id: str, doc_md: str, params: dict[str, dict], tags: list[str] = (),
                 prepare_task_id: str = "prepare", dataset_asset: Asset | None = None, remote: bool = False,
                 retries: int = 2, **dag_kwargs: Any):
    """Build the fine-tune DAG of ``family``. ``params`` are the family's UI form (name -> Param kwargs);
    a run's conf with keys outside them is refused. ``remote``: insert the deferred wait for a
    provider's training job between train and evaluate."""
    asset = dataset_asset or family_dataset_asset(family)
    form = dict(params)

    @dag(dag_id=dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
         max_active_runs=1, tags=["biotune", family, "fine-tune", *tags], doc_md=doc_md,
         default_args={"owner": "biotune", "retries": retries, "retry_delay": timedelta(seconds=20)},
         params={name: Param(**kw) for name, kw in form.items()}, **dag_kwargs)
    def finetune():
        @task
        def locate_sources(params=None, dag_run=None) -> list[dict]:
            """The training files to validate (every required file must be there)."""
            from biotune.errors import SpecError
            from biotune.family import get_family

            # a typo ("epoch", "sourec") would otherwise be ignored silently ("retrain" carries the
            # reasons of a drift-triggered run)
            unknown = sorted(set((getattr(dag_run, "conf", None) or {})) - set(form) - {"retrain"})
            if unknown:
                with fail_fast_on_bad_input():
                    raise SpecError(f"unknown key(s) in the run's conf: {unknown}", where=f"{dag_id} conf",
                                    fix=f"the DAG takes {sorted(form)}; check the spelling")
            with fail_fast_on_bad_input():
                return get_family(family).sources(dict(params))

        @task(task_id=prepare_task_id, outlets=[asset], trigger_rule="none_failed")
        def prepare(params=None, run_id=None, outlet_events=None, dag_run=None) -> dict:
            """The family's prepared dataset (cohort, windows, examples) with its splits; a retrain
            (conf ``retrain``) adds the labelled production batches since the champions' training."""
            import logging

            from biotune import steps

            retrain = (getattr(dag_run, "conf", None) or {}).get("retrain")
            with fail_fast_on_bad_input():
                dataset = steps.prepare(family, dict(params), run_id, progress=logging.getLogger("biotune").info,
                                        retrain=retrain)
            outlet_events[asset].extra = {k: v for k, v in dataset.items() if isinstance(v, (str, int, float))}
            return dataset

        @task
        def prepare_architectures(dataset: dict, params=None, run_id=None) -> dict:
            """Once-per-run work of each architecture (e.g. PAT's pretrained encoder)."""
            import logging

            from biotune import steps

            with fail_fast_on_bad_input():
                return steps.prepare_architectures(dataset, run_id, dict(params),
                                                   progress=logging.getLogger("biotune").info)

        @task
        def model_names() -> list[str]:
            """The family's models: its specs in models/."""
            from biotune import steps

            with fail_fast_on_bad_input():
                return steps.model_names(family)

        @task_group(group_id="per_model", prefix_group_id=False)
        def per_model(model_name: str, dataset: dict, prepared: dict):
            @task(map_index_template=LABEL)
            def train(model_name: str, dataset: dict, prepared: dict, params=None, run_id=None) -> dict:
                """Fit one model on its training split (early stopping on validation)."""
                import logging

                from biotune import steps

                label_map_index(model_name)
                with fail_fast_on_bad_input():
                    return steps.train(model_name, dataset, prepared, run_id, dict(params),
                                       progress=logging.getLogger("biotune").info)

            trained = train(model_name, dataset, prepared)
            if remote:
                waited = RemoteJobOperator(task_id="wait_for_training", candidate=trained,
                                           map_index_template=LABEL)

                @task(map_index_template=LABEL)
                def collect(candidate: dict, dataset: dict) -> dict:
                    """Fetch what the provider's job trained."""
                    from biotune import steps

                    label_map_index(candidate["model"])
                    with fail_fast_on_bad_input():
                        return steps.collect(candidate, dataset)

                trained = collect(waited.output, dataset)

            @task(map_index_template=LABEL)
            def evaluate(trained: dict, dataset: dict, run_id=None) -> dict:
                """Challenger and champion scored the same way on the same held-out test split."""
                from biotune import steps

                label_map_index(trained["model"])
                with fail_fast_on_bad_input():
                    return steps.evaluate(trained, dataset, run_id)

            published = RegisterGatePromoteOperator(task_id="register_gate_promote",
                                                    candidate=evaluate(trained, dataset), map_index_template=LABEL)
            PromotionApprovalOperator(task_id="approve", published=published.output, map_index_template=LABEL)

        dataset = prepare()
        locate_validate = ValidateOperator.partial(task_id="validate", map_index_template=LABEL).expand_kwargs(
            locate_sources())
        locate_validate >> dataset
        prepared = prepare_architectures(dataset)
        per_model.partial(dataset=dataset, prepared=prepared).expand(model_name=model_names())

    return finetune()
