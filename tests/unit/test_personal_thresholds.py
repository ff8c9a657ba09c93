"""The decision threshold's false-positive rate is bounded on fresh days, not only on the days it was set on."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from biotune.errors import InputFormatError
from biotune.mood.personal import thresholds
from biotune.mood.personal.population import choose_threshold


def _negative_days(rng, n: int, rho: float) -> np.ndarray:
    """Scores of n consecutive negative days: a stationary AR(1) N(0, 1) series (serially correlated like
    trailing-window features); the FPR of a threshold t on fresh days of it is 1 - Phi(t) exactly."""
    e = rng.normal(size=n)
    z = np.empty(n)
    z[0] = e[0]
    for i in range(1, n):
        z[i] = rho * z[i - 1] + np.sqrt(1 - rho ** 2) * e[i]
    return z


@pytest.mark.parametrize("rho", [0.0, 0.8])
def test_bound_holds_on_fresh_days_where_the_quantile_does_not(rho):
    rng = np.random.default_rng(0)
    over_bound = over_quantile = 0
    reps = 300
    for _ in range(reps):
        z = _negative_days(rng, 60, rho)
        y = np.zeros(len(z), int)
        c = thresholds.choose(y, z, max_fpr=0.05, fpr_limit=0.10, confidence=0.9, probability=False)
        over_bound += (1 - norm.cdf(c.threshold)) > 0.10
        over_quantile += (1 - norm.cdf(choose_threshold(y, z, 0.05, probability=False))) > 0.10
    # at 90% confidence at most ~10% of the persons may exceed the limit (a little slack for 300 draws)
    assert over_bound / reps <= 0.14
    if rho:
        # the plain 5% quantile of 60 correlated days (the old rule) exceeds 10% for a third of persons
        assert over_quantile / reps >= 0.3


def test_independent_days_keep_most_of_the_threshold():
    rng = np.random.default_rng(1)
    z = rng.normal(size=400)
    c = thresholds.choose(np.zeros(400, int), z, max_fpr=0.05, fpr_limit=0.10, confidence=0.9, probability=False)
    assert c.certified and c.serial_correlation < 0.15 and c.effective_negatives > 300
    assert c.fpr_bound <= 0.10 and 0.03 < 1 - norm.cdf(c.threshold) < 0.10


def test_too_few_effective_negatives_withhold_instead_of_flagging():
    rng = np.random.default_rng(2)
    p = 1 / (1 + np.exp(-_negative_days(rng, 30, 0.9)))
    y = np.zeros(30, int)
    c = thresholds.choose(y, p, max_fpr=0.05, fpr_limit=0.10, confidence=0.9)
    assert not c.certified and c.threshold > 1.0 and c.effective_negatives < 22
    assert "cannot be shown" in c.describe()
    assert thresholds.decide(1.0, c.threshold, c.uncertain_from) == "uncertain"
    assert thresholds.decide(c.uncertain_from - 0.01, c.threshold, c.uncertain_from) == "negative"
    assert thresholds.decide(None, 0.5, 0.4) == "uncertain"


def test_clopper_pearson_bound():
    # no false positive in n days: 1 - (1 - confidence)^(1/n); 22 independent days are the fewest for 10%
    assert thresholds.fpr_upper_bound(0, 22, 0.9) == pytest.approx(1 - 0.1 ** (1 / 22))
    assert thresholds.fpr_upper_bound(0, 22, 0.9) < 0.10 < thresholds.fpr_upper_bound(0, 21, 0.9)
    assert thresholds.fpr_upper_bound(3, 3, 0.9) == 1.0
    with pytest.raises(InputFormatError, match="confidence"):
        thresholds.fpr_upper_bound(0, 10, 1.5)
