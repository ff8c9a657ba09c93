"""The glucose family on the contract: reviewed chat JSONL -> a coaching LM, tuned locally or by a provider.

Training data: a chat JSONL of reviewed examples (system, user with the CGM patterns in the
seed's format, assistant with numbered recommendations), checked line by line and split by
patient (:mod:`biotune.glucose.pipeline`). Architectures, chosen per spec:

- ``lora``: a small causal LM (built from the spec's config, pretrained on the training prompts,
  or a local model folder) with a LoRA adapter trained by peft on CPU/GPU;
- ``provider``: a hosted fine-tuning job (OpenAI-compatible API or Fireworks) the DAG waits for
  without holding a worker slot; the registered model calls the provider's tuned model.

Task type generation: outputs are answers (strings), scored by BLEU, ROUGE-L, the format rate and
the safety rate (:mod:`biotune.glucose.metrics`). Daily batches are prompts
(``landing/glucose/<date>/prompts.jsonl``); drift follows the prompt features (time in range,
lows, variability, ...) and the share of well-formed answers.

Kept light to import (no torch, pandas or transformers at the top): the registry imports every family.
"""

from __future__ import annotations

import json
from pathlib import Path

from biotune.family import Architecture, Batch, Family, JobStatus, RemoteJob, Split, Trained, register

TASK_COLUMN = "reference"
PROVIDER_FILE = "provider_model.json"


def _counts(train: Split, val: Split) -> dict:
    return {"train_n": int(len(train)), "val_n": int(len(val))}


def _base_scores(generate, val_rows) -> dict:
    """The base model's validation metrics, beside the tuned model's (logged as ``base_val_*``)."""
    from biotune.glucose import metrics

    out = metrics.evaluate(generate, val_rows)
    keys = (metrics.BLEU, metrics.ROUGE_L, metrics.FORMAT, metrics.SAFETY)
    return {f"base_val_{k}": round(float(out[k]), 4) for k in keys}


class LoraArchitecture(Architecture):
    """LoRA SFT of a small causal LM (peft); the registered model generates locally."""

    kind = "lora"

    def prepare(self, family, specs, dataset, run_dir, params, progress=None):
        """The base model, once per run: a local folder, or built from the spec's config and
        pretrained on the training prompts (never the answers' chat turns)."""
        from biotune import storage
        from biotune.glucose import local_lora, pipeline

        spec = specs[0]
        folder = params.get("base_model_dir") or spec.architecture.params.get("base_model_dir")
        if folder:
            return {"base": str(folder), "origin": "local folder"}
        cfg = dict(spec.architecture.params.get("base") or {})
        if params.get("pretrain_epochs"):
            cfg["pretrain_epochs"] = int(params["pretrain_epochs"])
        cfg.setdefault("seed", spec.training.seed)
        train = pipeline.load_examples(dataset, "train")
        rows = pipeline.chats(pipeline.model_input(train), train["reference"].tolist())
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            local_lora.build_base_model(rows, Path(tmp) / "base", local_lora.BaseConfig(**cfg), progress=progress)
            uri = storage.upload_dir(str(Path(tmp) / "base"), storage.join(run_dir, "base_model"))
        return {"base": uri, "origin": "built from config", "config": cfg}

    def train(self, spec, train, val, workdir, *, prepared, params, progress=None):
        import tempfile

        from biotune import storage
        from biotune.errors import MissingInputError
        from biotune.glucose import local_lora, pipeline

        if not prepared:
            raise MissingInputError(f"{spec.name}: no base model prepared", where="prepare_architectures",
                                    fix="run the prepare step before training")
        lora = dict(spec.architecture.params.get("lora") or {})
        lp = local_lora.LoraParams(
            epochs=int(params.get("epochs") or spec.training.epochs), batch_size=spec.training.batch_size,
            learning_rate=spec.training.learning_rate, seed=spec.training.seed,
            patience=spec.training.early_stopping_patience, **lora)
        with tempfile.TemporaryDirectory() as tmp:
            base = prepared["base"]
            if storage.is_s3(base) or not (Path(base) / "config.json").exists():
                base = storage.download_dir(base, str(Path(tmp) / "base"))
            val_rows = pipeline.chats(val.x, list(val.y))
            result = local_lora.train_lora(base, pipeline.chats(train.x, list(train.y)), workdir,
                                           val_rows=val_rows, params=lp, progress=progress)
            base_scores = {}
            if spec.architecture.params.get("compare_base", True):  # the untuned base on the same prompts
                base_scores = _base_scores(local_lora.generator(base_dir=base, max_new_tokens=lp.max_new_tokens), val_rows)
                if progress:
                    progress(f"{spec.name}: base model on validation: " +
                             ", ".join(f"{k} {v:.3f}" for k, v in base_scores.items()))
        history: dict[str, list[float]] = {}
        for row in result.history:
            for k, v in row.items():
                if k != "epoch":
                    history.setdefault(k, []).append(float(v))
        return Trained(params={**_counts(train, val), "base_origin": prepared.get("origin"), "r": lp.r,
                               "alpha": lp.alpha, "epochs": lp.epochs, "epochs_run": len(result.history),
                               "batch_size": lp.batch_size, "learning_rate": lp.learning_rate,
                               "max_length": lp.max_length, "trainable_params": result.trainable_params,
                               "total_params": result.total_params, "tokens_per_s": round(result.tokens_per_s, 1),
                               "train_tokens": result.train_tokens, "truncated": result.truncated, **base_scores},
                       history=history)

    def load(self, local_dir):
        from biotune.glucose import local_lora

        return local_lora.load_tuned(local_dir) + (local_lora.max_new_tokens_of(local_dir),)

    def predict(self, model, x):
        from biotune.glucose import local_lora
        from biotune.glucose.pyfunc import to_prompts

        net, tokenizer, max_new = model
        return local_lora.generate(net, tokenizer, to_prompts(x), max_new_tokens=max_new)

    def log_model(self, spec, local_dir):
        from biotune.glucose.pyfunc import log_local_model

        return log_local_model(str(local_dir))


class ProviderArchitecture(Architecture):
    """A hosted fine-tuning job (OpenAI-compatible or Fireworks); the model calls the tuned model."""

    kind = "provider"

    def __init__(self):
        self._events: dict[str, tuple[str | None, list[str]]] = {}  # job id -> (cursor, messages so far)

    def _conn(self, job_or_spec=None):
        from biotune.glucose import providers

        conn_id = (job_or_spec or {}).get("conn_id") if isinstance(job_or_spec, dict) else None
        return providers.resolve_connection(conn_id or providers.CONN_ID)

    def train(self, spec, train, val, workdir, *, prepared, params, progress=None):
        import hashlib

        from biotune.glucose import pipeline, providers

        ap = dict(spec.architecture.params)
        conn = providers.resolve_connection(ap.get("conn_id") or providers.CONN_ID)
        files = {}
        for name, split in (("train.jsonl", train), ("validation.jsonl", val)):
            text = "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in pipeline.chats(split.x, list(split.y)))
            (Path(workdir) / name).write_text(text, encoding="utf-8")
            files[name] = Path(workdir) / name
        digest = hashlib.sha256(files["train.jsonl"].read_bytes() + files["validation.jsonl"].read_bytes()).hexdigest()
        epochs = int(params.get("epochs") or spec.training.epochs)
        hp = dict(ap.get("hyperparameters") or {})
        if conn.provider == "openai":
            hp.setdefault("n_epochs", epochs)
            hp.setdefault("batch_size", spec.training.batch_size)
        else:
            hp.setdefault("epochs", epochs)
            hp.setdefault("learning_rate", spec.training.learning_rate)
        base_model = ap.get("base_model")
        if not base_model:
            from biotune.errors import SpecError

            raise SpecError(f"{spec.name}: architecture.params.base_model is not set", where=f"models/{spec.name}.yaml",
                            fix="name the provider's base model, e.g. gpt-4o-mini-2024-07-18")
        # the same data and spec find the job a first attempt created instead of paying twice
        job = providers.submit(conn, files["train.jsonl"], files["validation.jsonl"], base_model=base_model,
                               suffix=ap.get("suffix", "glucose"), seed=spec.training.seed, hyperparameters=hp,
                               key=f"{spec.name}-{digest[:16]}")
        if progress:
            progress(f"{spec.name}: submitted {conn.provider} job {job['job_id']} (base {base_model})")
        job = {**job, "conn_id": conn.conn_id, "model": spec.name}
        return RemoteJob(job=job, params={**_counts(train, val), "provider": conn.provider, "base_model": base_model,
                                          "job_id": job["job_id"], "dataset_digest": digest,
                                          **{f"hp_{k}": v for k, v in hp.items()}})

    def poll(self, job):
        from biotune.glucose import providers

        cursor, seen = self._events.get(job["job_id"], (job.get("last_event_id"), []))
        status = providers.poll(self._conn(job), job, since=cursor)
        seen = seen + [e.get("message") or "" for e in status["events"]]
        self._events[job["job_id"]] = (status.get("last_event_id"), seen)
        return JobStatus(state=str(status["state"]), done=bool(status["done"]), succeeded=bool(status["succeeded"]),
                         error=status.get("error"), events=list(seen))

    def cancel(self, job):
        from biotune.glucose import providers

        providers.cancel(self._conn(job), job)

    def collect(self, job, workdir):
        from biotune.glucose import providers

        conn = self._conn(job)
        status = providers.raise_for_job(providers.poll(conn, job, since=""))
        events = self._events.get(job["job_id"], (None, []))[1] or [e.get("message") for e in status["events"]]
        info = {"connection": conn.public(), "model_id": status["model_id"], "job_id": job["job_id"],
                "base_model": job.get("base_model"), "trained_tokens": status.get("trained_tokens"),
                "state": status["state"], "events": events[-500:]}
        (Path(workdir) / PROVIDER_FILE).write_text(json.dumps(info, indent=2))
        return Trained(params={"provider_model_id": status["model_id"], "job_id": job["job_id"],
                               "trained_tokens": status.get("trained_tokens")})

    def load(self, local_dir):
        from biotune.glucose import providers

        info = json.loads((Path(local_dir) / PROVIDER_FILE).read_text())
        conn = providers.resolve_connection(info["connection"].get("conn_id") or providers.CONN_ID)
        return providers.chat_generator(conn, info["model_id"])

    def predict(self, model, x):
        from biotune.glucose.pyfunc import to_prompts

        return model(to_prompts(x))

    def log_model(self, spec, local_dir):
        import mlflow

        from biotune.glucose.pyfunc import log_provider_model

        info = json.loads((Path(local_dir) / PROVIDER_FILE).read_text())
        mlflow.set_tags({"provider": info["connection"]["provider"], "provider_job_id": info["job_id"],
                         "provider_model_id": info["model_id"]})
        mlflow.log_dict({"job_id": info["job_id"], "state": info["state"], "events": info["events"]},
                        "provider_job/events.json")
        return log_provider_model(info["connection"], info["model_id"],
                                  extra={"job_id": info["job_id"], "base_model": info.get("base_model")})


class GlucoseFamily(Family):
    name = "glucose"
    fine_tune_dag_id = "glucose_llm_finetune"
    batch_file = "prompts.jsonl"
    batch_suite = "glucose_batch"
    id_column = "request_id"
    architectures = {"lora": LoraArchitecture(), "provider": ProviderArchitecture()}
    # `make demo`: 100 generated patients (300 examples) and the spec's recipe reach the real gate
    # (format 1.0, safety 1.0, ROUGE-L 0.85 vs the base's 0.06) in ~80 s on 2 quiet cores
    # (bench/results/glucose.json "quality"); 12 patients / 2 epochs, as the DAG test, train but
    # are not promoted by the gate
    demo_size = 100
    demo_conf = {"epochs": 30, "pretrain_epochs": 12}

    def dag_params(self) -> dict[str, dict]:
        return {
            "source": dict(default=None, type=["null", "string"], title="Reviewed chat JSONL",
                           description="Path or s3:// URI of the reviewed examples (one {\"messages\": [...]} per "
                                       "line); empty = the lake's landing/glucose/training/examples.jsonl"),
            "epochs": dict(default=None, type=["null", "integer"], minimum=1, title="Epochs (empty: spec)"),
            "pretrain_epochs": dict(default=None, type=["null", "integer"], minimum=0,
                                    title="Base-model pretraining epochs when built from a config (empty: spec)"),
            "base_model_dir": dict(default=None, type=["null", "string"], title="Local base model folder",
                                   description="A folder written by save_pretrained (config, weights, tokenizer); "
                                               "empty = build the spec's small model"),
        }

    # ------------------------------------------------------------------ training data
    def _training_settings(self) -> dict:
        from biotune.glucose import tokens

        specs = self.specs()
        t = specs[0].training if specs else None
        limits = []
        for s in specs:
            model = s.architecture.params.get("target_model") or s.architecture.params.get("base_model")
            explicit = s.architecture.params.get("max_context_length")
            if explicit or (model in tokens.MODEL_LIMITS):
                limits.append((int(explicit) if explicit else tokens.MODEL_LIMITS[model], model or tokens.DEFAULT_MODEL))
        limit, model = min(limits) if limits else (None, tokens.DEFAULT_MODEL)
        return {"val_fraction": t.validation_fraction if t else 0.2, "test_fraction": t.test_fraction if t else 0.2,
                "seed": t.seed if t else 0, "model": model, "max_tokens": limit}

    def prepare(self, params, run_dir, run_id, progress=None):
        from biotune.glucose import pipeline

        source = params.get("source") or pipeline.default_source()
        return pipeline.prepare_dataset(source, run_dir, run_id, progress=progress, **self._training_settings())

    def split(self, spec, dataset, which):
        from biotune.glucose import pipeline

        frame = pipeline.load_examples(dataset, which)
        return Split(pipeline.model_input(frame), frame["reference"].astype(str).tolist(),
                     frame["example_id"].to_numpy())

    def reference_frame(self, spec, dataset):
        from biotune.glucose import pipeline

        return pipeline.load_examples(dataset, "train")[list(pipeline.FEATURES)].astype("float64")

    def generation_metrics(self, references, outputs):
        from biotune.glucose.metrics import score_references

        return score_references(references, outputs)

    def output_errors(self, spec, outputs):
        import numpy as np

        from biotune.glucose import answers

        return np.array([not answers.format_ok(o) for o in outputs], dtype=bool)

    def output_categories(self, spec, outputs):
        from biotune.glucose import pipeline

        return pipeline.output_categories(outputs)

    # ------------------------------------------------------------------ daily batches
    def read_batch(self, path):
        from biotune.glucose import pipeline

        frame = pipeline.read_batch_file(path)
        import pandas as pd

        labels = pd.DataFrame({TASK_COLUMN: frame["reference"].to_numpy()})
        return Batch(path=path, ids=frame["id"].to_numpy(), labels=labels, data={"frame": frame})

    def batch_validation_frame(self, path):
        from biotune.glucose import pipeline

        return pipeline.batch_validation_frame(path)

    def batch_inputs(self, spec, batch):
        from biotune.glucose import pipeline

        return pipeline.model_input(batch.data["frame"])

    def drift_features(self, spec, batch):
        from biotune.glucose import pipeline

        return batch.data["frame"][list(pipeline.FEATURES)].astype("float64").reset_index(drop=True)

    def batch_labels(self, spec, batch):
        import numpy as np

        refs = batch.labels[TASK_COLUMN] if batch.labels is not None else None
        return np.asarray(list(refs) if refs is not None else [None] * len(batch), dtype=object)

    # ------------------------------------------------------------------ generated data
    def demo_training_data(self, directory, size, seed=0):
        from biotune.glucose.demo import write_training_jsonl

        return {"source": write_training_jsonl(directory, patients=size, seed=seed)}

    def demo_batch(self, date, rows, seed=0, shifted=False):
        from biotune.glucose.demo import write_batch

        return write_batch(self.batch_uri(date), date, rows, seed=seed, shifted=shifted)


register(GlucoseFamily())
