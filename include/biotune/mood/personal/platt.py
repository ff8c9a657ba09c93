"""Calibrated probabilities with an interval: Platt scaling and its bootstrap.

``fit(p, y)`` fits P(y=1) = sigmoid(a logit(p) + b) by Newton's method with Platt's target
smoothing (targets (N+ + 1)/(N+ + 2) and 1/(N- + 2)), a ridge pulling (a, b) towards the
identity and damped steps, so a separable resample cannot push the slope to infinity, once on all rows and ``n_boot`` times on bootstrap resamples. The slope is
kept >= 0: on a few days a model can look anti-informative by chance, and a calibrator that
inverted its ranking would turn noise into confident errors; such a fit becomes the base rate.
``apply`` returns the calibrated probability (the all-rows fit) and every replicate, whose 5th
and 95th percentiles make the interval: few or conflicting calibration days give a wide one.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))


def _fit_one(z: np.ndarray, t: np.ndarray, ridge_a: float = 0.5, ridge_b: float = 0.05,
             iters: int = 60) -> tuple[float, float]:
    """Penalized (a - 1, b) Newton fit with damped steps: finite on separable resamples."""
    a, b = 1.0, 0.0
    for _ in range(iters):
        q = _sigmoid(a * z + b)
        w = q * (1 - q)
        g = np.array([np.sum((q - t) * z) + ridge_a * (a - 1.0), np.sum(q - t) + ridge_b * b])
        h = np.array([[np.sum(w * z * z) + ridge_a, np.sum(w * z)], [np.sum(w * z), np.sum(w) + ridge_b]])
        try:
            step = np.linalg.solve(h, g)
        except np.linalg.LinAlgError:
            break
        step = step * min(1.0, 2.0 / max(np.abs(step).max(), 1e-12))
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-8:
            break
    if not a > 0:
        # a calibrator never reverses a model's ranking: an anti-informative fit becomes a constant
        a = 0.0
        m = float(np.clip(np.mean(t), 1e-6, 1 - 1e-6))
        b = float(np.log(m / (1 - m)))
    return float(a), float(b)


def fit(p, y, n_boot: int = 200, seed: int = 0) -> np.ndarray:
    """[n_boot + 1, 2] (a, b) pairs; row 0 fits all rows."""
    z, y = _logit(p), np.asarray(y).astype(int)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    t = np.where(y == 1, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    out = [_fit_one(z, t)]
    rng = np.random.default_rng(seed)
    for _ in range(int(n_boot)):
        i = rng.integers(0, len(z), len(z))
        out.append(_fit_one(z[i], t[i]))
    return np.asarray(out, dtype=np.float64)


def identity(n_boot: int = 0) -> np.ndarray:
    return np.tile([1.0, 0.0], (n_boot + 1, 1))


def from_logit(s) -> np.ndarray:
    """A score on the logit scale as the probability ``fit``/``apply`` take."""
    return _sigmoid(np.asarray(s, dtype=np.float64))


def apply(params: np.ndarray, p) -> tuple[np.ndarray, np.ndarray]:
    """(calibrated [n], replicates [n, n_boot + 1])."""
    z = _logit(p)[:, None]
    reps = _sigmoid(params[:, 0][None, :] * z + params[:, 1][None, :])
    return reps[:, 0], reps


def interval(replicates: np.ndarray, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    lo = (1 - level) / 2 * 100
    return np.percentile(replicates, lo, axis=1), np.percentile(replicates, 100 - lo, axis=1)
