"""Light-driven circadian pacemaker, integrated for many participants at once.

mood_ml (Lim, Jeong et al. 2024) takes circadian phase and amplitude from the
human circadian pacemaker code of ojwalch/predicting_dlmo, driven by light
derived from the sleep/wake record. This module implements that model family:

Forger, Jewett & Kronauer (1999), "A simpler model of the human circadian
pacemaker", J Biol Rhythms 14:533 - a van der Pol oscillator (x, xc) driven by
"process L", a photoreceptor pool n that is activated by light:

    alpha(I) = a0 (I / I0)^p
    B^      = G alpha (1 - n)
    B       = B^ (1 - 0.4 x)(1 - 0.4 xc)
    dx/dt   = pi/12 (xc + B)
    dxc/dt  = pi/12 (mu (xc - 4/3 xc^3) - x ((24 / (0.99669 tau_x))^2 + k B))
    dn/dt   = 60 (alpha (1 - n) - beta n)          (t in hours)

with the published parameters (tau_x 24.2 h, mu 0.23, k 0.55, G 19.875,
beta 0.013, a0 0.16, p 0.6, I0 9500 lux), as in predicting_dlmo's
``clockModel_ForgerSimpler``.

Integration: classic fixed-step RK4, every state variable an array of shape
[n_participants], so one Python loop over time steps serves the whole cohort.
Light is held constant within a step and enters through alpha averaged over the
step's input samples (alpha is what drives the equations; averaging alpha rather
than lux keeps the photic drive exact for on/off light). The default step is
6 minutes (0.1 h, the step predicting_dlmo's limit-cycle tables use); the
slowest-to-fastest time scales (process L at 10,000 lux: ~3 /h) are far inside
RK4's stability region at that step.

Burn-in: the record is played ``burn_in_repeats`` times before the recorded pass,
so the oscillator forgets its initial condition and entrains to the person's
own light pattern (as predicting_dlmo pads its light input). The initial state is
placed on the approximate limit cycle at a phase given by ``initial_cbtmin_hours``
(clock time of the x minimum), which makes the burn-in converge in days rather
than weeks.

Outputs per day: phase = DLMO clock time = (clock time of the x minimum, i.e. the
core-body-temperature minimum) - 7 h, the convention of predicting_dlmo
(``dlmoOffset = 7``), mod 24; amplitude = half the peak-to-trough range of x in
that day.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd, pi

import numpy as np

from biotune.errors import InputFormatError

__all__ = ["ForgerParams", "simulate_circadian", "light_to_alpha"]


@dataclass(frozen=True)
class ForgerParams:
    """Forger, Jewett & Kronauer (1999) parameters (time in hours, light in lux)."""

    tau_x: float = 24.2
    mu: float = 0.23
    k: float = 0.55
    G: float = 19.875
    beta: float = 0.013
    a0: float = 0.16
    p: float = 0.6
    I0: float = 9500.0


def light_to_alpha(light: np.ndarray, params: ForgerParams = ForgerParams()) -> np.ndarray:
    """Process-L activation rate alpha(I) = a0 (I/I0)^p (0 for I <= 0)."""
    light = np.asarray(light, dtype=np.float64)
    return params.a0 * np.power(np.clip(light, 0.0, None) / params.I0, params.p)


def _rk4_run(alpha_steps: np.ndarray, state: tuple[np.ndarray, np.ndarray, np.ndarray],
             h: float, params: ForgerParams, record: np.ndarray | None) -> tuple:
    """Integrate over all columns of alpha_steps [n, S]; optionally record x at each step start."""
    K = pi / 12.0
    W2 = (24.0 / (0.99669 * params.tau_x)) ** 2
    G, mu, k, beta = params.G, params.mu, params.k, params.beta
    x, xc, nn = (s.copy() for s in state)
    h2, h6 = h / 2.0, h / 6.0

    def rhs(x, xc, nn, a, Ga):
        # Ga = G * a, precomputed once per step
        b = Ga * (1.0 - nn) * (1.0 - 0.4 * x) * (1.0 - 0.4 * xc)
        dx = K * (xc + b)
        dxc = K * (mu * (xc - (4.0 / 3.0) * xc * xc * xc) - x * (W2 + k * b))
        dn = 60.0 * (a * (1.0 - nn) - beta * nn)
        return dx, dxc, dn

    n_steps = alpha_steps.shape[1]
    for j in range(n_steps):
        a = alpha_steps[:, j]
        if record is not None:
            record[:, j] = x
        Ga = G * a
        k1x, k1c, k1n = rhs(x, xc, nn, a, Ga)
        k2x, k2c, k2n = rhs(x + h2 * k1x, xc + h2 * k1c, nn + h2 * k1n, a, Ga)
        k3x, k3c, k3n = rhs(x + h2 * k2x, xc + h2 * k2c, nn + h2 * k2n, a, Ga)
        k4x, k4c, k4n = rhs(x + h * k3x, xc + h * k3c, nn + h * k3n, a, Ga)
        x = x + h6 * (k1x + 2.0 * (k2x + k3x) + k4x)
        xc = xc + h6 * (k1c + 2.0 * (k2c + k3c) + k4c)
        nn = nn + h6 * (k1n + 2.0 * (k2n + k3n) + k4n)
    return x, xc, nn


def _initial_state(n: int, start_clock_minute: float, initial_cbtmin_hours) -> tuple:
    """A point near the limit cycle, x ~ cos(psi), xc ~ -sin(psi), x minimum at psi = pi."""
    if initial_cbtmin_hours is None:
        cbt = np.full(n, 4.0)
    else:
        cbt = np.broadcast_to(np.asarray(initial_cbtmin_hours, dtype=np.float64), (n,)).copy()
        cbt[~np.isfinite(cbt)] = 4.0
    psi = pi + (start_clock_minute / 60.0 - cbt) * (2.0 * pi / 24.0)
    return np.cos(psi), -np.sin(psi), np.zeros(n)


def simulate_from_alpha(alpha_steps: np.ndarray, step_minutes: float, *, samples_per_day_steps: int,
                        day_offset_steps: int, n_days: int, start_clock_minute: float = 0.0,
                        burn_in_repeats: int = 3, initial_cbtmin_hours=None,
                        dlmo_offset_hours: float = 7.0, params: ForgerParams = ForgerParams(),
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Core of :func:`simulate_circadian` on step-averaged alpha [n, S]; returns (phase, amplitude) [n, n_days]."""
    alpha_steps = np.ascontiguousarray(alpha_steps, dtype=np.float64)
    n, S = alpha_steps.shape
    h = step_minutes / 60.0
    state = _initial_state(n, start_clock_minute, initial_cbtmin_hours)
    # burn-in on the whole-day prefix of the record, so each pass ends at the clock time it began
    Sd = (S // samples_per_day_steps) * samples_per_day_steps
    if Sd:
        burn = alpha_steps[:, :Sd]
        for _ in range(int(burn_in_repeats)):
            state = _rk4_run(burn, state, h, params, None)
    xrec = np.empty((n, S), dtype=np.float64)
    _rk4_run(alpha_steps, state, h, params, xrec)

    spd = samples_per_day_steps
    phase = np.full((n, n_days), np.nan)
    amp = np.full((n, n_days), np.nan)
    if n_days <= 0 or n == 0:
        return phase, amp
    xd = xrec[:, day_offset_steps:day_offset_steps + n_days * spd].reshape(n, n_days, spd)
    i = np.argmin(xd, axis=2)
    # parabolic refinement of the minimum using the neighbouring samples (inside the record)
    gi = day_offset_steps + np.arange(n_days)[None, :] * spd + i          # global step index
    lo = np.clip(gi - 1, 0, S - 1)
    hi = np.clip(gi + 1, 0, S - 1)
    rows = np.arange(n)[:, None]
    y0, y1, y2 = xrec[rows, lo], xrec[rows, gi], xrec[rows, hi]
    den = y0 - 2.0 * y1 + y2
    ok = (lo == gi - 1) & (hi == gi + 1) & (den > 0)
    delta = np.where(ok, 0.5 * (y0 - y2) / np.where(ok, den, 1.0), 0.0)
    t_min = (gi + np.clip(delta, -0.5, 0.5)) * step_minutes + start_clock_minute   # minutes, clock
    phase = np.mod(t_min / 60.0 - dlmo_offset_hours, 24.0)
    amp = 0.5 * (xd.max(axis=2) - xd.min(axis=2))
    return phase, amp


def simulate_circadian(light: np.ndarray, dt_minutes: float = 1, *, step_minutes: float = 6,
                       start_clock_minute: float = 0.0, day_start_clock_minute: float | None = None,
                       burn_in_repeats: int = 3, initial_cbtmin_hours=None,
                       dlmo_offset_hours: float = 7.0, params: ForgerParams = ForgerParams(),
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Simulate the Forger (1999) pacemaker for every row of ``light`` at once.

    light: [n, T] lux, one sample every ``dt_minutes``; NaN is read as 0 lux.
    start_clock_minute: clock time (minutes after midnight) of column 0.
    day_start_clock_minute: clock time at which a reported day begins (default: the
      record's own start, so day d covers columns [d*spd, (d+1)*spd)). Only whole days
      inside the record are reported.
    step_minutes: RK4 step (light held constant, alpha averaged, within a step).
    burn_in_repeats: times the whole-day part of the record is played before the recorded pass.
    initial_cbtmin_hours: scalar or [n] clock time of the starting x minimum (default 04:00).
    Returns (phase_per_day, amplitude_per_day), each [n, n_days]: phase is the DLMO
    clock time in hours [0, 24) (x-minimum time - ``dlmo_offset_hours``), amplitude is
    half the daily peak-to-trough range of x.
    """
    light = np.asarray(light, dtype=np.float64)
    if light.ndim != 2:
        raise InputFormatError(f"light must be a 2-D array [participants, samples], got shape {light.shape}",
                               "simulate_circadian(light)", "pass one row per participant")
    if dt_minutes <= 0 or 1440 % dt_minutes:
        raise InputFormatError(f"dt_minutes={dt_minutes} does not divide a day", "simulate_circadian",
                               "use a sampling interval that divides 1440 minutes")
    n, T = light.shape
    spd = int(round(1440 / dt_minutes))
    if day_start_clock_minute is None:
        day_start_clock_minute = start_clock_minute
    offset = int(round(((day_start_clock_minute - start_clock_minute) % 1440) / dt_minutes))
    n_days = max((T - offset) // spd, 0)
    # integration step in input samples: must divide a day and the day offset
    r = max(int(round(step_minutes / dt_minutes)), 1)
    r = gcd(gcd(r, spd), offset) if offset else gcd(r, spd)
    S = T // r
    a = light_to_alpha(np.nan_to_num(light[:, :S * r], nan=0.0), params)
    alpha_steps = a.reshape(n, S, r).mean(axis=2)
    return simulate_from_alpha(alpha_steps, r * dt_minutes, samples_per_day_steps=spd // r,
                               day_offset_steps=offset // r, n_days=n_days,
                               start_clock_minute=start_clock_minute, burn_in_repeats=burn_in_repeats,
                               initial_cbtmin_hours=initial_cbtmin_hours,
                               dlmo_offset_hours=dlmo_offset_hours, params=params)
