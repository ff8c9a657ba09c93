"""Local backend: tokenizer, label masks, LoRA SFT on a tiny LM, adapter round trip, generation, pyfunc."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from biotune.glucose import dataset, local_lora, synth
from biotune.glucose.prompt import SYSTEM_PROMPT

TINY = local_lora.BaseConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, vocab_size=512,
                             max_position=320, pretrain_epochs=1, pretrain_lr=3e-3)


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    root = tmp_path_factory.mktemp("glucose_local")
    synth.write_patients(root, n_patients=8, days=1, seed=11)
    return [{"messages": r["messages"]} for r in dataset.build_examples(root, seed=11)]


@pytest.fixture(scope="module")
def trained(rows, tmp_path_factory):
    torch.set_num_threads(2)
    work = tmp_path_factory.mktemp("glucose_lora")
    base = local_lora.build_base_model(rows[:6], work / "base", TINY)
    params = local_lora.LoraParams(r=8, alpha=16, epochs=3, batch_size=2, learning_rate=1e-2, max_length=320)
    result = local_lora.train_lora(base, rows[:6], work / "tuned", val_rows=rows[6:], params=params)
    return base, result


def test_tokenizer_and_chat_template(rows):
    tok = local_lora.train_tokenizer([local_lora.render_chat(r["messages"]) for r in rows], 512)
    msgs = rows[0]["messages"]
    rendered = tok.apply_chat_template(msgs, tokenize=False)
    assert rendered == local_lora.render_chat(msgs)
    assert tok.apply_chat_template(msgs[:2], tokenize=False, add_generation_prompt=True).endswith("\n<|assistant|>")
    ids = tok("glucose 182.5 mg/dL")["input_ids"]
    assert tok.decode(ids) == "glucose 182.5 mg/dL"
    lead = "Based on your data, here are my recommendations:"
    big = local_lora.train_tokenizer([local_lora.render_chat(r["messages"]) for r in rows], 2048)
    ids = big(lead)["input_ids"]  # 10 words and marks; recurring phrases merge across spaces
    assert len(ids) <= 6 and any(" " in big.decode([i]).strip() for i in ids)
    by_digit = local_lora.train_tokenizer([local_lora.render_chat(r["messages"]) for r in rows], 512, split_digits=True)
    assert [by_digit.decode([i]) for i in by_digit("2024")["input_ids"]] == ["2", "0", "2", "4"]


def test_labels_cover_only_learned_assistant_tokens(rows):
    tok = local_lora.train_tokenizer([local_lora.render_chat(r["messages"]) for r in rows], 512)
    msgs = rows[0]["messages"]
    ids, labels, truncated = local_lora.encode_example(tok, msgs, 10_000)
    prefix = tok.apply_chat_template(msgs[:2], tokenize=True, add_generation_prompt=True)
    prefix = prefix["input_ids"] if hasattr(prefix, "keys") else prefix
    learned = [i for i, y in zip(ids, labels) if y != -100]
    assert not truncated and all(y == -100 for y in labels[: len(prefix)])
    assert labels[len(prefix):] == ids[len(prefix):] and tok.decode(learned).startswith("Based on your data")
    assert learned[-1] == tok.convert_tokens_to_ids("<|end|>")
    weighted = [dict(m) for m in msgs]
    weighted[2]["weight"] = 0
    assert set(local_lora.encode_example(tok, weighted, 10_000)[1]) == {-100}
    ids2, labels2, truncated2 = local_lora.encode_example(tok, msgs, 100)
    assert truncated2 and len(ids2) == 100 and ids2 == ids[-100:] and labels2 == labels[-100:]


def test_lora_training_saves_an_adapter_that_changes_the_model(trained, rows):
    base, result = trained
    h = result.history
    assert len(h) == 3 and h[-1]["train_loss"] < h[0]["train_loss"] and "val_loss" in h[0]
    assert 0 < result.trainable_params < result.total_params and result.tokens_per_s > 0 and result.train_tokens > 0
    out = result.out_dir
    meta = json.loads(open(f"{out}/meta.json").read())
    assert meta["lora"]["r"] == 8 and set(meta["lora"]["target_modules"]) >= {"q_proj", "v_proj"}
    model, tok = local_lora.load_tuned(out)
    unmerged, _ = local_lora.load_tuned(out, merge=False)
    plain, _ = local_lora.load_base(base)
    x = torch.tensor([local_lora.encode_example(tok, rows[7]["messages"], 200)[0]])
    with torch.no_grad():
        a, b, c = model(x).logits, unmerged(x).logits, plain(x).logits
    assert torch.allclose(a, b, atol=1e-4) and not torch.allclose(a, c, atol=1e-3)


def test_generation_is_greedy_and_batched(trained, rows):
    _, result = trained
    gen = local_lora.generator(model_dir=result.out_dir, max_new_tokens=12, batch_size=2)
    prompts = [r["messages"][:2] for r in rows[5:8]]
    first, second = gen(prompts), gen(prompts)
    assert len(first) == 3 and all(isinstance(t, str) for t in first) and first == second


def test_local_pyfunc_generates_text(trained):
    from types import SimpleNamespace

    from biotune.glucose import pyfunc

    _, result = trained
    model = pyfunc.LocalLoraPyfunc()
    model.load_context(SimpleNamespace(artifacts={"model": result.out_dir}, model_config={}))
    out = model.predict(None, pd.DataFrame({"prompt": ["Frequent lows (<70): 6.0%", "Time in Range: 80.0%"]}),
                        params={"max_new_tokens": 8})
    assert len(out) == 2 and all(isinstance(t, str) for t in out)
    assert pyfunc.to_prompts("hi")[0] == [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "hi"}]
    chat = [{"role": "user", "content": "x"}]
    assert pyfunc.to_prompts(pd.DataFrame({"messages": [json.dumps(chat)]})) == [chat]


@pytest.mark.slow
def test_pyfuncs_round_trip_through_mlflow(trained, tmp_path, monkeypatch):
    """Both pyfuncs logged with their signature, loaded back by MLflow and asked for answers."""
    import mlflow

    from biotune.glucose import pyfunc

    from glucose_fake_provider import KEY, FakeProvider

    _, result = trained
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = mlflow.create_experiment("glucose-pyfunc", artifact_location=(tmp_path / "artifacts").as_uri())
    with FakeProvider() as fake:
        monkeypatch.setenv("AIRFLOW_CONN_BIOTUNE_LLM_PROVIDER", json.dumps(
            {"conn_type": "http", "host": fake.url, "password": KEY, "extra": {"provider": "openai"}}))
        with mlflow.start_run(experiment_id=exp):
            local = pyfunc.log_local_model(result.out_dir, name="local")
            remote = pyfunc.log_provider_model({"provider": "openai", "base_url": fake.url, "account_id": None,
                                                "conn_id": "biotune_llm_provider"}, "ft:gpt-4o-mini:biotune:x", name="remote")
        frame = pd.DataFrame({"prompt": ["Frequent lows (<70): 6.0%", "Time in Range: 80.0%"]})
        out = mlflow.pyfunc.load_model(local.model_uri).predict(frame, params={"max_new_tokens": 6})
        assert len(out) == 2 and all(isinstance(t, str) for t in out)
        out = mlflow.pyfunc.load_model(remote.model_uri).predict(frame)
        assert len(out) == 2 and "ft:gpt-4o-mini:biotune:x" in out[0]
        stored = json.dumps(mlflow.pyfunc.load_model(remote.model_uri).metadata.to_dict())
        assert KEY not in stored and "model_id" in stored
