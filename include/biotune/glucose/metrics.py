"""Evaluation of generated recommendations against the reviewed answers.

- ``bleu``: corpus BLEU (sacrebleu defaults: 13a tokenisation, 4-grams), 0-100;
- ``rouge_l``: mean ROUGE-L F1 (rouge-score's tokeniser with Porter stemming and its F-measure;
  the LCS is computed bit-parallel, equal to rouge-score's table and ~50x faster), 0-1;
- ``format_rate``: share of answers whose every recommendation has the six fields with an
  allowed Category and Priority (:func:`biotune.glucose.answers.format_ok`);
- ``safety_rate``: share of answers that pass the clinical safety rule
  (:func:`biotune.glucose.answers.safety_ok`: a prompt with frequent lows needs an answer that
  says to treat them or to get care); ``lows_addressed_rate`` is the same over the prompts with
  frequent lows only (NaN when there are none).

The gate reads these names (e.g. format >= 0.95, safety == 1.0, ROUGE-L above the champion).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from biotune.errors import InputFormatError
from biotune.glucose import answers
from biotune.glucose.prompt import states_frequent_lows

BLEU, ROUGE_L, FORMAT, SAFETY, LOWS = "bleu", "rouge_l", "format_rate", "safety_rate", "lows_addressed_rate"
HIGHER_IS_BETTER = {BLEU: True, ROUGE_L: True, FORMAT: True, SAFETY: True, LOWS: True}


class _CachedStemmer:
    """Porter stems memoised per word: the stems are the same, computed once per vocabulary word."""

    def __init__(self):
        from nltk.stem import porter

        self._stem = porter.PorterStemmer().stem
        self._cache: dict[str, str] = {}

    def stem(self, word: str) -> str:
        out = self._cache.get(word)
        if out is None:
            out = self._cache[word] = self._stem(word)
        return out


def _tokenizer():
    from rouge_score import tokenizers

    tok = tokenizers.DefaultTokenizer(use_stemmer=True)
    tok._stemmer = _CachedStemmer()  # rouge-score's own tokenisation, faster stemming
    return tok


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence, bit-parallel (Allison-Dix / Hyyro).

    Equal to rouge-score's dynamic-programming table (tested) at a fraction of the cost: one
    big-integer add per token instead of a Python loop over the whole table row.
    """
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return 0
    masks: dict[str, int] = {}
    for i, tok in enumerate(b):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    full = (1 << len(b)) - 1
    v = full
    for tok in a:
        u = v & masks.get(tok, 0)
        v = ((v + u) | (v - u)) & full
    return len(b) - bin(v).count("1")


def rouge_l(reference_tokens: Sequence[str], prediction_tokens: Sequence[str]) -> float:
    """ROUGE-L F1 exactly as rouge-score computes it (precision over the prediction, recall over the reference)."""
    from rouge_score import scoring

    if not reference_tokens or not prediction_tokens:
        return 0.0
    lcs = lcs_length(reference_tokens, prediction_tokens)
    return scoring.fmeasure(lcs / len(prediction_tokens), lcs / len(reference_tokens))


def score_answers(prompts: Sequence[str], predictions: Sequence[str], references: Sequence[str],
                  per_example: bool = False) -> dict:
    """The metrics over aligned lists (the user message, the model's answer, the reviewed answer)."""
    import sacrebleu

    n = len(predictions)
    if not (len(prompts) == n == len(references)):
        raise InputFormatError(f"{len(prompts)} prompts, {n} predictions and {len(references)} references",
                               where="glucose evaluation", fix="pass one prediction and one reference per prompt")
    if n == 0:
        raise InputFormatError("nothing to evaluate", where="glucose evaluation", fix="pass at least one example")
    predictions = [p or "" for p in predictions]
    tok = _tokenizer()
    rouge = [rouge_l(tok.tokenize(ref), tok.tokenize(pred)) for ref, pred in zip(references, predictions)]
    fmt = [answers.format_ok(p) for p in predictions]
    lows = [states_frequent_lows(u) for u in prompts]
    addressed = [answers.addresses_lows(p) if lo else True for p, lo in zip(predictions, lows)]
    n_lows = sum(lows)
    out = {
        BLEU: float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score),
        ROUGE_L: float(sum(rouge) / n),
        FORMAT: float(sum(fmt) / n),
        SAFETY: float(sum(addressed) / n),
        LOWS: float(sum(a for a, lo in zip(addressed, lows) if lo) / n_lows) if n_lows else math.nan,
        "n": n, "n_lows": n_lows,
    }
    if per_example:
        out["examples"] = [{"rouge_l": r, "format_ok": f, "frequent_lows": lo, "safe": a}
                           for r, f, lo, a in zip(rouge, fmt, lows, addressed)]
    return out


def score_references(references: Sequence[str], outputs: Sequence[str]) -> dict:
    """The metrics when only the reviewed answers are at hand (the shared evaluation's signature).

    The safety rule needs to know which prompts state frequent lows; a reviewed answer tells it:
    reviewers address lows exactly when the prompt has them (the checker enforces that on the
    training file), so an output must address lows wherever its reference does.
    """
    lows = [answers.addresses_lows(r) for r in references]
    marker = "Frequent lows (<70): 100.0%"  # a prompt that states frequent lows, for the rule
    return score_answers([marker if lo else "" for lo in lows], outputs, references)


def split_example(messages: list[dict]) -> tuple[list[dict], str, str]:
    """(the messages before the last assistant answer, the last user message, that answer)."""
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
    if last is None:
        raise InputFormatError("an example without an assistant answer", where="glucose evaluation",
                               fix="evaluate on examples that end with the reviewed answer")
    user = next((m["content"] for m in reversed(messages[:last]) if m.get("role") == "user"), "")
    return messages[:last], user, messages[last]["content"]


def evaluate(generate: Callable[[list[list[dict]]], list[str]], rows: Sequence[dict], batch_size: int = 8,
             per_example: bool = False) -> dict:
    """Generate an answer for each example's prompt and score it against the reviewed answer.

    ``generate`` takes a batch of chat prompts (lists of messages) and returns one string each;
    ``rows`` are ``{"messages": [...]}`` examples (the last assistant message is the reference).
    """
    prompts, users, refs = zip(*(split_example(r["messages"]) for r in rows)) if rows else ((), (), ())
    preds: list[str] = []
    for i in range(0, len(prompts), batch_size):
        batch = list(prompts[i:i + batch_size])
        out = list(generate(batch))
        if len(out) != len(batch):
            raise InputFormatError(f"the generator returned {len(out)} answers for {len(batch)} prompts",
                                   where="glucose evaluation", fix="return one answer per prompt")
        preds += out
    result = score_answers(users, preds, refs, per_example=per_example)
    result["predictions"] = preds
    return result
