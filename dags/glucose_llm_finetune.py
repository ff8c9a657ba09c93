"""
### Glucose coaching LM fine-tuning: reviewed chat JSONL to a champion recommendation model

Takes the lab's reviewed examples, one chat per line (system; user with a person's CGM patterns
in GluCoPilot's format: average glucose, time in range 70-180, highs > 250, lows < 70,
variability, overnight rise, meal spikes; assistant with numbered recommendations: Title,
Description, Category, Priority, Action, Timing) and:

1. **checks** the file line by line (OpenAI's chat-format checks, role order, `weight`, tokens
   per example against the target model's limit, too few examples, duplicates, personal data,
   clinical safety: frequent lows must be answered with treat-them / seek-care advice). Any
   error moves the file to `quarantine/` with the report beside it; nothing is trained;
2. **splits** by patient (train / validation / test, deterministic);
3. **trains** each `glucose-*` model in `models/` with the backend its spec names: `lora` (a
   small causal LM with a LoRA adapter, peft, on this worker) or `provider` (a hosted
   fine-tuning job, OpenAI-compatible or Fireworks, through the Airflow connection
   `biotune_llm_provider`; the wait is deferred and holds no worker slot, a failed job fails the
   run with the provider's message, a cancelled run cancels the job);
4. **evaluates** challenger and champion on the test split: BLEU, ROUGE-L, format rate, safety rate;
5. **gates and promotes** per the spec (e.g. format >= 0.95, safety = 1.0, ROUGE-L above the champion).

**Params**: `source` (the JSONL; empty: the lake's `landing/glucose/training/examples.jsonl`),
`epochs`, `pretrain_epochs` (empty: the spec), `base_model_dir` (a local model folder to tune
instead of the spec's small model).
"""

from biotune_airflow.builders import finetune_dag

from biotune.glucose.family import GlucoseFamily

finetune_dag("glucose", dag_id="glucose_llm_finetune", doc_md=__doc__, params=GlucoseFamily().dag_params(),
             tags=["llm"], prepare_task_id="check_and_split", remote=True)
