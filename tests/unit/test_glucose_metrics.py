"""BLEU / ROUGE-L / format / safety over generated answers."""

from __future__ import annotations

import math
import random

import pytest

from biotune.errors import InputFormatError
from biotune.glucose import dataset, metrics, synth


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    root = tmp_path_factory.mktemp("glucose_metrics")
    synth.write_patients(root, n_patients=12, days=2, seed=7)
    return dataset.build_examples(root, seed=7)


def _dp_lcs(a, b):
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a, 1):
        for j, y in enumerate(b, 1):
            table[i][j] = table[i - 1][j - 1] + 1 if x == y else max(table[i - 1][j], table[i][j - 1])
    return table[-1][-1]


def test_bit_parallel_lcs_equals_the_table():
    rng = random.Random(0)
    for _ in range(300):
        a = [rng.choice("abcde") for _ in range(rng.randint(0, 40))]
        b = [rng.choice("abcdef") for _ in range(rng.randint(0, 70))]
        assert metrics.lcs_length(a, b) == _dp_lcs(a, b)


def test_rouge_l_equals_rouge_score(rows):
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    tok = metrics._tokenizer()
    rng = random.Random(1)
    refs = [r["reference"] for r in rows]
    for i, ref in enumerate(refs[:25]):
        words = refs[(i + 1) % len(refs)].split()
        pred = " ".join(rng.sample(words, len(words) // 2)) if i % 2 else refs[(i + 3) % len(refs)]
        expected = scorer.score(ref, pred)["rougeL"].fmeasure
        assert metrics.rouge_l(tok.tokenize(ref), tok.tokenize(pred)) == pytest.approx(expected, abs=1e-12)
    assert metrics.rouge_l([], ["a"]) == 0.0


def test_scores_on_reviewed_and_broken_answers(rows):
    users = [r["user"] for r in rows]
    refs = [r["reference"] for r in rows]
    perfect = metrics.score_answers(users, refs, refs)
    assert perfect["bleu"] == pytest.approx(100.0) and perfect["rouge_l"] == pytest.approx(1.0)
    assert perfect["format_rate"] == 1.0 and perfect["safety_rate"] == 1.0
    assert perfect["n_lows"] == sum(r["frequent_lows"] for r in rows) > 0 and perfect["lows_addressed_rate"] == 1.0
    # answers that drop the lows advice: unsafe exactly on the prompts with frequent lows
    unsafe = ("Based on your data, here are my recommendations:\n\n1. Title: Pre-bolus\nDescription: Take insulin "
              "earlier.\nCategory: insulin\nPriority: high\nAction: Bolus 15 minutes before meals\nTiming: Meals")
    stripped = [unsafe if r["frequent_lows"] else r["reference"] for r in rows]
    bad = metrics.score_answers(users, stripped, refs, per_example=True)
    assert bad["safety_rate"] == pytest.approx(1 - perfect["n_lows"] / len(rows))
    assert bad["lows_addressed_rate"] == 0.0 and bad["rouge_l"] < 1.0 and bad["bleu"] < 100
    assert [e["safe"] for e in bad["examples"]] == [not r["frequent_lows"] for r in rows]
    unformatted = metrics.score_answers(users, ["Eat fewer carbs."] * len(rows), refs)
    assert unformatted["format_rate"] == 0.0 and unformatted["bleu"] < 1
    none_low = metrics.score_answers(["Frequent lows (<70): 0.0%"], ["x"], ["y"])
    assert math.isnan(none_low["lows_addressed_rate"]) and none_low["safety_rate"] == 1.0


def test_evaluate_runs_a_generator_in_batches(rows):
    answers = {r["user"]: r["reference"] for r in rows}
    calls = []

    def generate(batch):
        calls.append(len(batch))
        return [answers[b[-1]["content"]] for b in batch]

    result = metrics.evaluate(generate, [{"messages": r["messages"]} for r in rows], batch_size=5)
    assert calls[0] == 5 and sum(calls) == len(rows) and result["rouge_l"] == pytest.approx(1.0)
    assert result["predictions"][0] == rows[0]["reference"]
    with pytest.raises(InputFormatError, match="returned 0 answers"):
        metrics.evaluate(lambda b: [], [{"messages": rows[0]["messages"]}])
    with pytest.raises(InputFormatError):
        metrics.score_answers(["a"], ["b", "c"], ["d"])
