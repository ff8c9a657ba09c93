"""Token counts for chat examples, offline.

tiktoken downloads its BPE files on first use, which a worker without internet cannot do. The
``rs_bpe`` package (MIT, PyPI) compiles the OpenAI ``o200k_base`` and ``cl100k_base`` vocabularies
into its wheel, so nothing is fetched at run time. Its encodings were compared with tiktoken
0.14 loading the canonical ``o200k_base.tiktoken`` (sha256 446a9538...) and ``cl100k_base``
files: identical token ids on 3,000 random strings per encoding (451,191 and 461,041 tokens)
and on every message of the generated glucose dataset (bench/bench_glucose.py repeats the
comparison when a tiktoken cache is present).

The per-example count follows OpenAI's chat-format checker (the cookbook's
``num_tokens_from_messages``): 3 tokens per message, the encoded values, 1 more for a ``name``,
and 3 for the assistant reply's priming. That formula is OpenAI's own estimate of the chat
format overhead; the text part is exact. Models served by Fireworks (e.g. gpt-oss, which uses
o200k_harmony = o200k_base plus special tokens) have their own chat template: there the
count is exact for the text and approximate (a few tokens per message) for the template.
"""

from __future__ import annotations

from functools import lru_cache

from biotune.errors import SpecError

# Training-example context per model (OpenAI fine-tuning docs: 65,536 for gpt-4o(-mini),
# 16,385 for gpt-3.5-turbo 0125/1106). Anything else: pass the limit (spec maxContextLength).
MODEL_LIMITS = {
    "gpt-4o-mini-2024-07-18": 65_536,
    "gpt-4o-2024-08-06": 65_536,
    "gpt-3.5-turbo-0125": 16_385,
    "gpt-3.5-turbo-1106": 16_385,
}
DEFAULT_MODEL = "gpt-4o-mini-2024-07-18"
TOKENS_PER_MESSAGE, TOKENS_PER_NAME, REPLY_PRIMING = 3, 1, 3


def encoding_name(model: str) -> str:
    m = model.lower().rsplit("/", 1)[-1]
    if m.startswith(("gpt-3.5", "gpt-4-", "gpt-4")) and not m.startswith(("gpt-4o", "gpt-4.1", "gpt-4.5")):
        return "cl100k_base"
    return "o200k_base"


def token_limit(model: str, max_tokens: int | None = None) -> int:
    if max_tokens:
        return int(max_tokens)
    if model in MODEL_LIMITS:
        return MODEL_LIMITS[model]
    raise SpecError(f"no known training token limit for model {model!r}", where="token limit",
                    fix=f"pass the limit (--max-tokens, or the spec's max_context_length); known: {sorted(MODEL_LIMITS)}")


@lru_cache(maxsize=2)
def get_encoder(name: str = "o200k_base"):
    from rs_bpe.bpe import openai

    if name == "o200k_base":
        return openai.o200k_base()
    if name == "cl100k_base":
        return openai.cl100k_base()
    raise SpecError(f"unknown encoding {name!r}", where="tokenizer", fix="use o200k_base or cl100k_base")


def count_text(text: str, encoding: str = "o200k_base") -> int:
    return get_encoder(encoding).count(text)


def count_messages(messages, encoding: str = "o200k_base") -> tuple[int, int]:
    """(tokens of the whole example, tokens of its assistant messages) per the cookbook formula."""
    enc = get_encoder(encoding)
    total, assistant = REPLY_PRIMING, 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if isinstance(value, str):
                n = enc.count(value)
                total += n
                if key == "content" and message.get("role") == "assistant":
                    assistant += n
            if key == "name":
                total += TOKENS_PER_NAME
    return total, assistant


def default_epochs(n_train: int) -> int:
    """OpenAI's default epoch count for a training set size (as the cookbook estimates it)."""
    target, lo_ex, hi_ex, lo_ep, hi_ep = 3, 100, 25_000, 1, 25
    if n_train <= 0:
        return target
    if n_train * target < lo_ex:
        return min(hi_ep, lo_ex // n_train)
    if n_train * target > hi_ex:
        return max(lo_ep, hi_ex // n_train)
    return target
