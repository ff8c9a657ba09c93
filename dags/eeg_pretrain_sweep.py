"""
### EEG pretraining sweep: which masking makes the best remission classifier?

Builds the primary dataset from the lab's Muse recordings and labels (as `eeg_sft` does), then,
as one mapped task per (mask ratio, masking style), discovers or pretrains the Mamba-2 backbone
checkpoint `mamba2_eeg_d{d}_l{L}_m{mask%}_{style}` and fine-tunes a classifier head on it. Every
variant is a child of one MLflow parent run (experiment `biotune/eeg-remission-mamba2-sweep`),
with its settings, checkpoint, pretraining loss and validation metrics per window and per
participant. The variants are compared on the validation participants (the spec's gate metric,
then the Brier score); the best one alone is evaluated on the held-out test participants,
registered as `challenger` and gated against the `champion` like any fine-tune.

**Params**: `mask_ratios` (e.g. `[0.25, 0.5, 0.75]`), `mask_styles` (`mae`, `bert`), and those of
`eeg_sft`: `source`, `labels`, `window_seconds`, `d_model`, `n_layers`, `pretrain` (auto / always /
never), `pretrain_epochs`, `epochs`, `freeze_backbone`.
"""

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task
from biotune_airflow.operators import (PromotionApprovalOperator, RegisterGatePromoteOperator, ValidateOperator,
                                       fail_fast_on_bad_input, label_map_index)

from biotune.eeg.sweep import DAG_ID, sweep_params

FORM = sweep_params()
LABEL = "{{ biotune_label }}"


@dag(dag_id=DAG_ID, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     max_active_runs=1, tags=["biotune", "eeg", "sweep", "mamba2"], doc_md=__doc__,
     default_args={"owner": "biotune", "retries": 2, "retry_delay": timedelta(seconds=20)},
     params={name: Param(**kw) for name, kw in FORM.items()})
def eeg_pretrain_sweep():
    @task
    def locate_sources(params=None, dag_run=None) -> list[dict]:
        """The labels file to validate (the recordings are checked while the primary dataset is built)."""
        from biotune.eeg import sweep
        from biotune.family import get_family

        with fail_fast_on_bad_input():
            sweep.check_conf(getattr(dag_run, "conf", None), FORM)
            return get_family("eeg").sources(dict(params))

    @task(trigger_rule="none_failed")
    def build_primary(params=None, run_id=None) -> dict:
        """The primary dataset and its participant-level splits."""
        import logging

        from biotune.eeg import sweep

        with fail_fast_on_bad_input():
            return sweep.prepare(dict(params), run_id, progress=logging.getLogger("biotune").info)

    @task
    def plan(dataset: dict, params=None, run_id=None) -> list[dict]:
        """The variants, and the MLflow parent run they are logged under."""
        from biotune.eeg import sweep

        with fail_fast_on_bad_input():
            variants = sweep.variants(dict(params))
            parent = sweep.open_parent(sweep.model_name(), dataset, variants, run_id)
        return [{**v, "parent_run_id": parent} for v in variants]

    @task(map_index_template=LABEL, max_active_tis_per_dagrun=2)
    def pretrain_and_finetune(variant: dict, dataset: dict, params=None, run_id=None) -> dict:
        """One variant: its checkpoint (discovered or pretrained), a classifier fine-tuned on it."""
        import logging

        from biotune.eeg import sweep

        label_map_index(variant["label"])
        with fail_fast_on_bad_input():
            return sweep.run_variant(sweep.model_name(), dataset, variant, run_id, dict(params),
                                     variant["parent_run_id"], progress=logging.getLogger("biotune").info)

    @task
    def compare(candidates: list, variants: list, run_id=None) -> dict:
        """The best variant on the validation participants; the comparison in the parent run."""
        from biotune.eeg import sweep

        with fail_fast_on_bad_input():
            return sweep.compare(list(candidates), variants[0]["parent_run_id"], run_id)

    @task
    def evaluate(best: dict, dataset: dict, run_id=None) -> dict:
        """The best variant and the champion scored the same way on the held-out test participants."""
        from biotune import steps

        with fail_fast_on_bad_input():
            return steps.evaluate(best, dataset, run_id)

    validated = ValidateOperator.partial(task_id="validate", map_index_template=LABEL).expand_kwargs(locate_sources())
    dataset = build_primary()
    validated >> dataset
    variants = plan(dataset)
    candidates = pretrain_and_finetune.partial(dataset=dataset).expand(variant=variants)
    published = RegisterGatePromoteOperator(task_id="register_gate_promote",
                                            candidate=evaluate(compare(candidates, variants), dataset))
    PromotionApprovalOperator(task_id="approve", published=published.output)


eeg_pretrain_sweep()
