"""The local backend: a small causal LM, LoRA SFT with peft, greedy generation, saved adapters.

Base model, one of:

- built from a config (no download): a byte-level BPE tokenizer trained with ``tokenizers`` on
  the training texts (merges may cross spaces: recurring phrases become single tokens) and a
  Llama (or GPT-2) of the configured size, saved with ``save_pretrained`` beside its tokenizer.
  A random network has nothing for LoRA to adapt, so the base is first pretrained briefly (all
  weights) as a plain language model on the training texts, each prompt and each answer a
  separate document without the chat markers: it knows the words and numbers of CGM summaries
  and of recommendations, but not how to answer a prompt, which is what SFT adds;
- a local model folder (``config.json``, weights, tokenizer; loaded with ``local_files_only``).

Chat format: the tokenizer's chat template (ours: ``<|system|>``/``<|user|>``/``<|assistant|>``
then the content, ``<|end|>`` after each answer, ``\n`` after other messages). Loss only on
assistant tokens (a message with ``weight: 0`` is not learned); prompts truncated from the left
to ``max_length``; early stopping on the validation loss keeps the best adapter.

Layout of a trained model folder::

    base/      the base model and tokenizer (save_pretrained)
    adapter/   the LoRA adapter (peft save_pretrained: adapter_config.json, adapter_model.safetensors)
    meta.json  configs, training history, tokens/s

Training uses CUDA when present and runs on CPU otherwise.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from biotune.errors import InputFormatError, MissingInputError, WeightsError

SPECIAL_TOKENS = ["<|pad|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>", "<|function|>"]
CHAT_TEMPLATE = (  # no text between a role token and its content: the BPE merges across spaces,
    # and a special token is a hard boundary, so a prompt tokenizes the same with or without its answer
    "{% for m in messages %}{{ '<|' + m['role'] + '|>' + m['content'] }}"
    "{% if m['role'] == 'assistant' %}{{ '<|end|>' }}{% else %}{{ '\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}")
META = "meta.json"

Progress = Callable[[str], None]


@dataclass
class BaseConfig:
    """A small causal LM built from a config."""

    arch: str = "llama"            # llama | gpt2
    vocab_size: int = 2048
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 256
    max_position: int = 2048
    pretrain_epochs: int = 8       # LM pretraining on prompts and answers (0 = leave the weights random)
    pretrain_lr: float = 3e-3
    pretrain_on_answers: bool = True  # answers as plain documents (no chat markers)
    split_digits: bool = False     # one token per digit (else numbers merge like words)
    seed: int = 0


@dataclass
class LoraParams:
    r: int = 32
    alpha: int = 64
    dropout: float = 0.05
    target_modules: list[str] | None = None  # default: every linear layer of the blocks
    epochs: int = 16
    batch_size: int = 4
    learning_rate: float = 5e-3
    weight_decay: float = 0.0
    warmup_ratio: float = 0.05
    max_length: int = 1024
    grad_clip: float = 1.0
    seed: int = 0
    num_threads: int | None = None
    patience: int | None = None   # epochs without a better val_loss before stopping (best weights kept)
    max_new_tokens: int | None = None  # generation budget saved with the model (None: from the answers)


@dataclass
class TrainResult:
    out_dir: str
    history: list[dict] = field(default_factory=list)
    tokens_per_s: float = 0.0
    train_tokens: int = 0
    seconds: float = 0.0
    trainable_params: int = 0
    total_params: int = 0
    truncated: int = 0


def device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# --- tokenizer and base model -----------------------------------------------------------------------

def render_chat(messages: Sequence[dict], add_generation_prompt: bool = False) -> str:
    """Our chat template in plain Python (same text the Jinja template renders)."""
    out = [f"<|{m['role']}|>{m['content']}" + ("<|end|>" if m["role"] == "assistant" else "\n") for m in messages]
    if add_generation_prompt:
        out.append("<|assistant|>")
    return "".join(out)


def train_tokenizer(texts: Sequence[str], vocab_size: int = 2048, split_digits: bool = False):
    """A byte-level BPE tokenizer trained on ``texts``, as a transformers tokenizer.

    Merges may cross spaces (no word pre-split), so the recurring phrases of prompts and reviewed
    answers become single tokens: on the generated data an example is ~310 tokens instead of ~930
    with word-level BPE, which is what makes CPU training affordable. Numbers merge like words by
    default: with one token per digit (``split_digits``) the small model got lost in long digit
    runs and never closed a recommendation (format rate 0 after the same training; 1.0 merged).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
                         if split_digits else byte_level)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>", eos_token="<|end|>",
                                   bos_token=None, unk_token=None,
                                   additional_special_tokens=SPECIAL_TOKENS[2:])
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "right"
    return fast


def _model_from_config(cfg: BaseConfig, tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    common = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                  bos_token_id=tokenizer.eos_token_id)
    if cfg.arch == "llama":  # SDPA attention: ~2.5x the tokens/s of eager on CPU at these sizes
        config = LlamaConfig(hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
                             num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_heads,
                             intermediate_size=cfg.intermediate_size, max_position_embeddings=cfg.max_position,
                             tie_word_embeddings=True, **common)
        config._attn_implementation = "sdpa"
        return LlamaForCausalLM(config)
    if cfg.arch == "gpt2":
        config = GPT2Config(n_embd=cfg.hidden_size, n_layer=cfg.num_layers, n_head=cfg.num_heads,
                            n_inner=cfg.intermediate_size, n_positions=cfg.max_position, **common)
        config._attn_implementation = "sdpa"
        return GPT2LMHeadModel(config)
    raise InputFormatError(f"unknown base architecture {cfg.arch!r}", where="base_model.arch", fix="use llama or gpt2")


def build_base_model(train_rows: Sequence[dict], out_dir, cfg: BaseConfig | None = None,
                     progress: Progress | None = None) -> str:
    """Tokenizer + small LM from ``cfg``, pretrained on the prompts of ``train_rows``; saved in ``out_dir``."""
    import torch

    cfg = cfg or BaseConfig()
    torch.manual_seed(cfg.seed)
    prompts = [render_chat([m for m in r["messages"] if m["role"] != "assistant"]) for r in train_rows]
    answers = [m["content"] for r in train_rows for m in r["messages"] if m["role"] == "assistant"]
    tokenizer = train_tokenizer(prompts + answers, cfg.vocab_size, cfg.split_digits)
    model = _model_from_config(cfg, tokenizer).to(device())
    if cfg.pretrain_epochs > 0:
        docs = prompts + (answers if cfg.pretrain_on_answers else [])
        seqs = [tokenizer(p, add_special_tokens=False)["input_ids"][: cfg.max_position] for p in docs]
        _fit(model, [(s, s) for s in seqs], epochs=cfg.pretrain_epochs, batch_size=8, lr=cfg.pretrain_lr,
             pad_id=tokenizer.pad_token_id, seed=cfg.seed, progress=progress, label="pretrain")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.cpu().save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "biotune_base.json").write_text(json.dumps(asdict(cfg), indent=2))
    return str(out)


def load_base(path):
    """(model, tokenizer) from a local folder; never downloads."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = Path(path)
    if not (p / "config.json").exists():
        raise MissingInputError(f"no model at {path} (config.json missing)", where=str(path),
                                fix="point base_model at a folder written by save_pretrained, or build one from a config")
    try:
        tokenizer = AutoTokenizer.from_pretrained(p, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(p, local_files_only=True, attn_implementation="sdpa")
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot load the model in {path}: {exc}", where=str(path),
                           fix="the folder needs config.json, the weights and the tokenizer files") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHAT_TEMPLATE
    return model, tokenizer


# --- examples -> token ids ---------------------------------------------------------------------------

def _ids(tokenizer, messages, add_generation_prompt=False) -> list[int]:
    out = tokenizer.apply_chat_template(list(messages), tokenize=True, add_generation_prompt=add_generation_prompt)
    if isinstance(out, dict) or hasattr(out, "keys"):  # some versions return a BatchEncoding
        out = out["input_ids"]
    return list(out)


def encode_example(tokenizer, messages: Sequence[dict], max_length: int) -> tuple[list[int], list[int], bool]:
    """(input ids, labels with -100 outside learned assistant tokens, truncated?)."""
    ids: list[int] = []
    labels: list[int] = []
    for i, m in enumerate(messages):
        full = _ids(tokenizer, messages[: i + 1])
        if m.get("role") == "assistant":
            prefix = _ids(tokenizer, messages[:i], add_generation_prompt=True)
            if full[: len(prefix)] != prefix:  # template not prefix-stable: fall back to its length
                prefix = full[: len(prefix)]
            new = full[len(ids):]
            learn = m.get("weight", 1) != 0
            cut = len(prefix) - len(ids)
            labels += [-100] * cut + (new[cut:] if learn else [-100] * (len(new) - cut))
        else:
            new = full[len(ids):]
            labels += [-100] * len(new)
        ids = full
    truncated = len(ids) > max_length
    if truncated:  # keep the end: the answer matters more than the start of the prompt
        ids, labels = ids[-max_length:], labels[-max_length:]
    return ids, labels, truncated


# --- training ---------------------------------------------------------------------------------------

def _batches(items, batch_size: int, rng: random.Random, shuffle: bool = True):
    """Batches of similar length (less padding): shuffle, sort within windows of 16 batches, shuffle batches."""
    order = list(range(len(items)))
    if shuffle:
        rng.shuffle(order)
    window = batch_size * 16
    batches = []
    for w in range(0, len(order), window):
        chunk = sorted(order[w:w + window], key=lambda j: len(items[j][0]))
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    if shuffle:
        rng.shuffle(batches)
    for b in batches:
        yield [items[j] for j in b]


def _collate(batch, pad_id: int):
    import torch

    width = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, (x, y) in enumerate(batch):
        ids[i, : len(x)] = torch.tensor(x)
        labels[i, : len(y)] = torch.tensor(y)
        mask[i, : len(x)] = 1
    return ids, labels, mask


def _loss(model, batch, pad_id):
    ids, labels, mask = (t.to(device()) for t in _collate(batch, pad_id))
    return model(input_ids=ids, attention_mask=mask, labels=labels).loss, int(mask.sum())


def _eval_loss(model, items, batch_size, pad_id) -> float:
    import torch

    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for batch in _batches(items, batch_size, random.Random(0), shuffle=False):
            loss, _ = _loss(model, batch, pad_id)
            k = sum(1 for _, y in batch for t in y[1:] if t != -100)
            total, n = total + float(loss.detach()) * k, n + k
    model.train()
    return total / n if n else math.nan


def _fit(model, items, epochs, batch_size, lr, pad_id, seed, progress=None, label="train", val_items=None,
         weight_decay=0.0, warmup_ratio=0.05, grad_clip=1.0, patience=None) -> tuple[list[dict], int, float]:
    """AdamW with linear warm-up and decay; with ``val_items`` and ``patience``, stops when the
    validation loss has not improved for ``patience`` epochs and restores the best weights."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    steps = max(1, epochs * math.ceil(len(items) / batch_size))
    warm = max(1, int(steps * warmup_ratio))
    sched = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, then linear decay to 0
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (steps - s) / max(1, steps - warm)))
    rng = random.Random(seed)
    history, tokens, t0 = [], 0, time.perf_counter()
    best, best_state, stale = math.inf, None, 0
    model.train()
    for epoch in range(1, epochs + 1):
        total, n = 0.0, 0
        for batch in _batches(items, batch_size, rng):
            loss, k = _loss(model, batch, pad_id)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            opt.step()
            sched.step()
            tokens += k
            total, n = total + float(loss.detach()), n + 1
        row = {"epoch": epoch, f"{label}_loss": total / max(n, 1)}
        if val_items:
            row["val_loss"] = _eval_loss(model, val_items, batch_size, pad_id)
        history.append(row)
        if progress:
            progress(f"{label} epoch {epoch}/{epochs}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "epoch"))
        if val_items and patience:
            if row["val_loss"] < best - 1e-4:
                best, stale = row["val_loss"], 0
                best_state = {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}
            else:
                stale += 1
                if stale >= patience:
                    if progress:
                        progress(f"{label}: no better val_loss for {patience} epochs: stopping, best {best:.4f}")
                    break
    if best_state is not None:
        with torch.no_grad():
            for k, v in model.named_parameters():
                if k in best_state:
                    v.copy_(best_state[k])
    return history, tokens, time.perf_counter() - t0


def default_targets(model) -> list[str]:
    """Every Linear (or GPT-2 Conv1D) inside the transformer blocks, by leaf name."""
    import torch
    from transformers.pytorch_utils import Conv1D

    names = set()
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Linear, Conv1D)) and "lm_head" not in name:
            names.add(name.rsplit(".", 1)[-1])
    return sorted(names)


def train_lora(base_dir, train_rows: Sequence[dict], out_dir, val_rows: Sequence[dict] = (),
               params: LoraParams | None = None, progress: Progress | None = None) -> TrainResult:
    """LoRA SFT of the base model in ``base_dir`` on chat examples; writes ``out_dir`` (see module doc)."""
    import torch
    from peft import LoraConfig, get_peft_model

    params = params or LoraParams()
    if not train_rows:
        raise InputFormatError("no training examples", where="train split", fix="check the split has examples")
    if params.num_threads:
        torch.set_num_threads(params.num_threads)
    torch.manual_seed(params.seed)
    model, tokenizer = load_base(base_dir)
    enc = [encode_example(tokenizer, r["messages"], params.max_length) for r in train_rows]
    items = [(ids, labels) for ids, labels, _ in enc]
    val = [encode_example(tokenizer, r["messages"], params.max_length)[:2] for r in val_rows]
    targets = params.target_modules or default_targets(model)
    cfg = LoraConfig(r=params.r, lora_alpha=params.alpha, lora_dropout=params.dropout, target_modules=list(targets),
                     bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, cfg).to(device())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    history, tokens, seconds = _fit(model, items, params.epochs, params.batch_size, params.learning_rate,
                                    tokenizer.pad_token_id, params.seed, progress, "train", val,
                                    params.weight_decay, params.warmup_ratio, params.grad_clip, params.patience)
    if params.max_new_tokens is None:  # room for the longest answer seen, and some
        longest = max(sum(1 for t in labels if t != -100) for _, labels in items)
        params.max_new_tokens = int(longest * 1.5) + 16
    out = Path(out_dir)
    if (out / "adapter").exists():
        shutil.rmtree(out / "adapter")
    out.mkdir(parents=True, exist_ok=True)
    model.cpu().save_pretrained(out / "adapter")
    if Path(base_dir).resolve() != (out / "base").resolve():
        shutil.copytree(base_dir, out / "base", dirs_exist_ok=True)
    result = TrainResult(out_dir=str(out), history=history, tokens_per_s=tokens / seconds if seconds else 0.0,
                         train_tokens=tokens, seconds=seconds, trainable_params=trainable, total_params=total,
                         truncated=sum(t for _, _, t in enc))
    (out / META).write_text(json.dumps({"lora": asdict(params) | {"target_modules": list(targets)},
                                        "result": asdict(result)}, indent=2, default=str))
    return result


# --- inference ---------------------------------------------------------------------------------------

def load_tuned(model_dir, merge: bool = True):
    """(model, tokenizer) of a trained folder: the base with its LoRA adapter (merged for speed)."""
    from peft import PeftModel

    d = Path(model_dir)
    if not (d / "adapter" / "adapter_config.json").exists():
        raise MissingInputError(f"no LoRA adapter in {model_dir}", where=str(d / "adapter"),
                                fix="train first (train_lora) or point at a folder it wrote")
    model, tokenizer = load_base(d / "base")
    model = PeftModel.from_pretrained(model, d / "adapter")
    if merge:
        model = model.merge_and_unload()
    return model.to(device()).eval(), tokenizer


def max_new_tokens_of(model_dir, default: int = 400) -> int:
    """The generation budget a trained folder was saved with."""
    meta = Path(model_dir) / META
    if meta.exists():
        value = json.loads(meta.read_text()).get("lora", {}).get("max_new_tokens")
        if value:
            return int(value)
    return default


def generate(model, tokenizer, prompts: Sequence[Sequence[dict]], max_new_tokens: int = 400,
             batch_size: int = 8, num_beams: int = 1) -> list[str]:
    """Greedy answers for chat prompts (each a list of messages ending before the assistant's turn)."""
    import torch

    model.eval()
    pad = tokenizer.pad_token_id
    out: list[str] = []
    for i in range(0, len(prompts), batch_size):
        seqs = [_ids(tokenizer, p, add_generation_prompt=True) for p in prompts[i:i + batch_size]]
        width = max(map(len, seqs))
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for j, s in enumerate(seqs):  # left padding: every prompt ends where generation starts
            ids[j, width - len(s):] = torch.tensor(s)
            mask[j, width - len(s):] = 1
        with torch.no_grad():
            gen = model.generate(input_ids=ids.to(device()), attention_mask=mask.to(device()), do_sample=False,
                                 num_beams=num_beams, max_new_tokens=max_new_tokens, pad_token_id=pad,
                                 eos_token_id=tokenizer.eos_token_id)
        for row in gen[:, width:]:
            out.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return out


def generator(model_dir: str | None = None, base_dir: str | None = None, max_new_tokens: int | None = None,
              batch_size: int = 8) -> Callable[[list[list[dict]]], list[str]]:
    """A ``generate(batch of prompts) -> answers`` function for a tuned folder or a bare base model."""
    if model_dir:
        model, tokenizer = load_tuned(model_dir)
        max_new_tokens = max_new_tokens or max_new_tokens_of(model_dir)
    else:
        model, tokenizer = load_base(base_dir)
        model = model.to(device())
    return lambda batch: generate(model, tokenizer, batch, max_new_tokens or 400, batch_size)


def read_jsonl(path) -> list[dict]:
    """Examples of a (checked) chat JSONL file."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


__all__ = ["BaseConfig", "LoraParams", "TrainResult", "build_base_model", "load_base", "encode_example",
           "train_lora", "load_tuned", "generate", "generator", "read_jsonl", "render_chat"]
