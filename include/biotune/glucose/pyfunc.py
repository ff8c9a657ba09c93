"""MLflow pyfunc models that write recommendations: a local LoRA model, or a provider's tuned model.

Input (either): a DataFrame with a ``prompt`` column (the user message; the system prompt is
added) or a ``messages`` column (a chat as a list or its JSON), a list of prompt strings, or one
string. Output: one answer string per row. Param ``max_new_tokens`` (0: the model's own budget,
saved at training; 400 for a provider model).

The provider model stores no key: its model config holds the provider, base URL, account and
the connection id; the key comes from that Airflow connection's environment form
(``AIRFLOW_CONN_BIOTUNE_LLM_PROVIDER``) where the model is served.
"""

from __future__ import annotations

import json

import mlflow.pyfunc

from biotune.glucose.prompt import SYSTEM_PROMPT

DEFAULT_MAX_NEW_TOKENS = 400


def to_prompts(model_input, system_prompt: str = SYSTEM_PROMPT) -> list[list[dict]]:
    """Chat prompts (lists of messages) from the accepted input shapes."""
    from biotune.errors import InputFormatError

    def from_prompt(text):
        return [{"role": "system", "content": system_prompt}, {"role": "user", "content": str(text)}]

    if isinstance(model_input, str):
        return [from_prompt(model_input)]
    if hasattr(model_input, "columns"):
        if "messages" not in model_input.columns and "prompt" not in model_input.columns:
            raise InputFormatError(f"input columns {list(model_input.columns)} have neither prompt nor messages",
                                   where="model input", fix="pass a DataFrame with a prompt (user message) column")
        out = []
        prompts = model_input["prompt"] if "prompt" in model_input.columns else [None] * len(model_input)
        chats = model_input["messages"] if "messages" in model_input.columns else [None] * len(model_input)
        for p, m in zip(prompts, chats):  # the whole chat when given, else the system prompt + the prompt
            if isinstance(m, str) and m.strip():
                out.append(json.loads(m))
            elif isinstance(m, (list, tuple)):
                out.append(list(m))
            else:
                out.append(from_prompt(p))
        return out
    return [from_prompt(p) if isinstance(p, str) else list(p) for p in model_input]


class LocalLoraPyfunc(mlflow.pyfunc.PythonModel):
    """The base model with its LoRA adapter (artifact ``model``: the folder train_lora wrote)."""

    def load_context(self, context):
        from biotune.glucose.local_lora import load_tuned, max_new_tokens_of

        self.model, self.tokenizer = load_tuned(context.artifacts["model"])
        self.max_new_tokens = max_new_tokens_of(context.artifacts["model"], DEFAULT_MAX_NEW_TOKENS)
        self.system_prompt = (context.model_config or {}).get("system_prompt", SYSTEM_PROMPT)

    def predict(self, context, model_input, params=None):
        from biotune.glucose.local_lora import generate

        n = int((params or {}).get("max_new_tokens") or self.max_new_tokens)
        return generate(self.model, self.tokenizer, to_prompts(model_input, self.system_prompt), max_new_tokens=n)


class ProviderChatPyfunc(mlflow.pyfunc.PythonModel):
    """Calls the provider's chat completions with the tuned model id (model config ``model_id``)."""

    def load_context(self, context):
        self.config = dict(context.model_config or {})

    def _connection(self):
        from biotune.glucose.providers import ProviderConnection, ProviderError

        conn = ProviderConnection.from_env(self.config.get("conn_id") or "biotune_llm_provider")
        if conn.provider != self.config.get("provider"):
            raise ProviderError(f"connection {conn.conn_id} is for {conn.provider}, the model was tuned on "
                                f"{self.config.get('provider')}", where=f"Airflow connection {conn.conn_id}",
                                fix="point the connection at the provider that holds the tuned model")
        return conn

    def predict(self, context, model_input, params=None):
        from biotune.glucose.providers import chat_generator

        n = int((params or {}).get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS)
        prompts = to_prompts(model_input, self.config.get("system_prompt", SYSTEM_PROMPT))
        return chat_generator(self._connection(), self.config["model_id"], max_tokens=n)(prompts)


def signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(inputs=Schema([ColSpec("string", "prompt"), ColSpec("string", "messages", required=False)]),
                          outputs=Schema([ColSpec("string")]),
                          params=ParamSchema([ParamSpec("max_new_tokens", "long", 0)]))


def _requirements(*names: str) -> list[str]:
    """Pinned requirements of the installed packages (listing them skips MLflow's slow inference,
    which loads the model in a subprocess to see what it imports)."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in names:
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    return out


LOCAL_REQUIREMENTS = ("mlflow", "torch", "transformers", "peft", "tokenizers", "safetensors", "pandas", "numpy")
PROVIDER_REQUIREMENTS = ("mlflow", "requests", "pandas")


def log_local_model(model_dir: str, name: str = "model"):
    """Log a trained LoRA folder (inside the active MLflow run) as a text-generating pyfunc."""
    return mlflow.pyfunc.log_model(name=name, python_model=LocalLoraPyfunc(), signature=signature(),
                                   artifacts={"model": str(model_dir)}, model_config={"system_prompt": SYSTEM_PROMPT},
                                   pip_requirements=_requirements(*LOCAL_REQUIREMENTS))


def log_provider_model(connection_public: dict, model_id: str, name: str = "model", extra: dict | None = None):
    """Log a pyfunc that calls ``model_id`` at the provider (``connection_public``: no key)."""
    config = {k: connection_public.get(k) for k in ("provider", "base_url", "account_id", "conn_id")}
    config.update({"model_id": model_id, "system_prompt": SYSTEM_PROMPT, **(extra or {})})
    return mlflow.pyfunc.log_model(name=name, python_model=ProviderChatPyfunc(), signature=signature(),
                                   model_config=config, pip_requirements=_requirements(*PROVIDER_REQUIREMENTS))
