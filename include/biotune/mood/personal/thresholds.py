"""A decision threshold whose false-positive rate is bounded, not just estimated, on a person's days.

Why: a threshold set at the 5% quantile of a person's held-out negative days was served with a
false-positive rate of 0-37% on their later days. The held-out days hold some 50-90 negatives,
but false alarms come in runs of consecutive days (the days after an episode, whose trailing
features still show it; a phase excursion in the direction of the person's episodes), so those
days are a handful of independent observations: 5% of 60 is 3 days, less than one run, and
whether a run fell into the held-out window decided the threshold.

``choose`` therefore returns two thresholds on the same score:

- ``uncertain_from``: the point estimate (the quantile at ``max_fpr``, as before);
- ``threshold``: the lowest at which the one-sided Clopper-Pearson upper bound of the FPR, at
  ``confidence``, stays within ``fpr_limit`` counting *effective* negatives: n (1 - rho) / (1 + rho),
  with rho the lag-1 autocorrelation of the high-score indicator along runs of consecutive
  negative days (the variance inflation of a mean of an AR(1) series).

A day scoring at or above ``threshold`` is positive, one in between is withheld as uncertain,
below ``uncertain_from`` negative (``decide``). When no threshold can be certified (too few
effective negatives) ``threshold`` lies above every probability: no positive answer, the
high-scoring days are withheld and the reason says how many effective negatives there were.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from biotune.errors import InputFormatError

# above every probability (a sigmoid can round to exactly 1.0): nothing is flagged positive
NEVER = math.nextafter(1.0, 2.0)
TOP_SHARE = 0.2        # "high score" for the serial correlation: the negatives' top fifth


@dataclass
class ThresholdChoice:
    threshold: float               # positive at or above
    uncertain_from: float          # withheld from here up to ``threshold``
    certified: bool                # the FPR bound is met at ``threshold``
    negatives: int
    effective_negatives: float
    serial_correlation: float
    fpr_bound: float               # upper bound of the FPR at ``threshold`` (1.0 when not certified)
    fpr_limit: float
    confidence: float

    def as_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def describe(self) -> str:
        if self.certified:
            return (f"threshold {self.threshold:.3f}: FPR <= {self.fpr_bound:.3f} at {self.confidence:.0%} confidence "
                    f"on {self.effective_negatives:.1f} effective of {self.negatives} negative days")
        return (f"FPR <= {self.fpr_limit:.2f} cannot be shown at {self.confidence:.0%} confidence on "
                f"{self.effective_negatives:.1f} effective of {self.negatives} negative days (serially correlated, "
                f"rho {self.serial_correlation:.2f}): scores from {self.uncertain_from:.3f} are withheld as uncertain, "
                "none is flagged positive until more labelled days are calibrated")


def fpr_upper_bound(false_positives: float, negatives: float, confidence: float) -> float:
    """One-sided Clopper-Pearson upper bound of a rate (counts may be effective, i.e. fractional)."""
    if not 0.0 < confidence < 1.0:
        raise InputFormatError(f"confidence {confidence} is not in (0, 1)", where="personal_fpr_confidence",
                               fix="set it to e.g. 0.9 in the spec's params")
    if negatives <= 0 or false_positives >= negatives:
        return 1.0
    from scipy.stats import beta

    return float(beta.ppf(confidence, false_positives + 1.0, negatives - false_positives))


def serial_correlation(y, p) -> float:
    """Lag-1 autocorrelation of 'score in the negatives' top fifth' over pairs of consecutive negative
    days (days in date order), clipped to [0, 0.95]; 0 when there are too few pairs to tell."""
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=float)
    neg = y == 0
    if neg.sum() < 5:
        return 0.0
    high = (p >= np.quantile(p[neg], 1.0 - TOP_SHARE)).astype(float)
    pair = neg[1:] & neg[:-1]
    a, b = high[:-1][pair], high[1:][pair]
    if len(a) < 5 or a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.clip(np.corrcoef(a, b)[0, 1], 0.0, 0.95))


def choose(y, p, *, max_fpr: float, fpr_limit: float, confidence: float, probability: bool = True) -> ThresholdChoice:
    """The two thresholds for scores ``p`` of days ``y`` in date order (see the module doc)."""
    from biotune.mood.personal.population import choose_threshold

    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=float)
    if len(y) != len(p):
        raise InputFormatError(f"{len(y)} labels for {len(p)} scores", where="thresholds.choose",
                               fix="pass one score per labelled day")
    point = choose_threshold(y, p, max_fpr, probability=probability)
    neg = np.sort(p[y == 0])[::-1]
    rho = serial_correlation(y, p)
    scale = (1.0 - rho) / (1.0 + rho)
    n_eff = len(neg) * scale
    allowed = -1              # the most negatives at or above the threshold that keep the bound
    for k in range(len(neg)):
        if fpr_upper_bound(k * scale, n_eff, confidence) > fpr_limit:
            break
        allowed = k
    if allowed < 0:
        return ThresholdChoice(NEVER if probability else math.inf, point, False, len(neg), n_eff, rho, 1.0,
                               fpr_limit, confidence)
    # just above the (allowed+1)-th highest negative, never below the point estimate
    t = max(float(neg[allowed] + 1e-9), point)
    k_at = int((neg >= t).sum())
    return ThresholdChoice(t, point, True, len(neg), n_eff, rho, fpr_upper_bound(k_at * scale, n_eff, confidence),
                           fpr_limit, confidence)


def decide(probability: float | None, threshold: float, uncertain_from: float | None = None) -> str:
    """positive / uncertain / negative for one calibrated probability (no scipy: serving imports this)."""
    if probability is None or not np.isfinite(probability):
        return "uncertain"
    if probability >= threshold:
        return "positive"
    if uncertain_from is not None and probability >= uncertain_from:
        return "uncertain"
    return "negative"
