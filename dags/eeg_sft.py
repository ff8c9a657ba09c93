"""
### EEG remission fine-tuning: Muse EEG to a champion Mamba-2 classifier

Reads a lab's Muse recordings (one folder per participant, Mind Monitor or muse-lsl CSV) and its
labels file (`Participant,Remission`), checks the labels against `expectations/eeg/eeg_labels.json`,
then builds the primary dataset: every recording read with its sampling rate measured from the
timestamps (a wrong rate, a missing, flat or saturated channel, long NaN runs: the file is
quarantined and the run fails naming it), filtered (x2 upsampling, zero-phase Butterworth 60 Hz,
decimation), cut into 10 s windows of 0.25 s tokens with the DC removed, split by participant
(stratified), logged to MLflow as `EEG_{window}s_{channels}_{N}windows_primary`.

The Mamba-2 backbone checkpoint `mamba2_eeg_d{d}_l{L}_m{mask%}_{style}` is discovered in
`models/pretrained/eeg/`, or pretrained now with masking on the training participants (an MLflow
run of its own, linked from the model). A classification head is fine-tuned on the frozen
backbone, evaluated per window and per participant (probability vote) on the held-out
participants, registered as `eeg-remission-mamba2` (`challenger`), gated against the `champion`
on the same split and promoted when it passes.

**Params**: `source`, `labels` (empty: the lake's `landing/eeg/training/`), `window_seconds`,
`mask_ratio`, `mask_style`, `d_model`, `n_layers`, `pretrain` (auto / always / never),
`checkpoint`, `pretrain_epochs`, `epochs`, `freeze_backbone` (empty: from the spec).
"""

from biotune_airflow.builders import finetune_dag

from biotune.eeg.family import EEGFamily

finetune_dag("eeg", dag_id="eeg_sft", doc_md=__doc__, params=EEGFamily().dag_params(), tags=["muse", "mamba2"],
             prepare_task_id="build_primary")
