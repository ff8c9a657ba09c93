"""Metric names: the one place that says what the evaluation writes and monitoring, scoring, the
CLI and the UI read. A metric is logged as ``<split>_<name>`` (``test_auc``, ``val_accuracy``).
"""

from __future__ import annotations

TASK_TYPES = ("binary", "multiclass", "generation")

# binary
AUC = "auc"
PR_AUC = "pr_auc"
BRIER = "brier"
F1 = "f1"
SENSITIVITY = "sensitivity"
SPECIFICITY = "specificity"
THRESHOLD = "threshold"
PREVALENCE = "prevalence"
TP, FP, TN, FN = "tp", "fp", "tn", "fn"
# multiclass
ACCURACY = "accuracy"
MACRO_F1 = "macro_f1"
RECALL_PREFIX = "recall_"  # recall_<class name>, one per class
# generation (computed by the family, named here so gates and pages agree)
BLEU = "bleu"
ROUGE_L = "rouge_l"
FORMAT_RATE = "format_rate"
SAFETY_RATE = "safety_rate"
# every task type
N = "n"
ERROR_RATE = "error_rate"  # the share of wrong predictions: what the retraining rule compares production with

# what a gate may name, per task type (a spec naming another metric fails `biotune spec check`)
GATE_METRICS = {
    "binary": (AUC, PR_AUC, BRIER, F1, SENSITIVITY, SPECIFICITY, ACCURACY, ERROR_RATE),
    "multiclass": (ACCURACY, MACRO_F1, ERROR_RATE),
    "generation": (BLEU, ROUGE_L, FORMAT_RATE, SAFETY_RATE),
}
# metrics where lower is better (the gate's direction when the spec does not say)
LOWER_IS_BETTER = (BRIER, ERROR_RATE)
# counts: printed as integers
COUNTS = (N, TP, FP, TN, FN)
# the headline metric shown first in lists, per task type
HEADLINE = {"binary": (AUC, PR_AUC), "multiclass": (ACCURACY, MACRO_F1), "generation": (ROUGE_L, FORMAT_RATE)}


def test(name: str) -> str:
    return f"test_{name}"


def val(name: str) -> str:
    return f"val_{name}"


def is_count(key: str) -> bool:
    """``test_n``, ``val_tp``: figures that are counts, whatever their split prefix."""
    return key.split("_", 1)[-1] in COUNTS


def format_value(key: str, value) -> str:
    """A metric for people: counts as integers, the rest with three decimals."""
    if value is None:
        return "n/a"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if v != v:  # NaN
        return "n/a"
    return str(int(round(v))) if is_count(key) else f"{v:.3f}"
