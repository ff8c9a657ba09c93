"""mood_ml sleep/circadian features: hand-built participants with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from biotune.errors import InputFormatError
from biotune.mood.circadian import simulate_circadian
from biotune.mood.features import (
    SLEEP_FEATURE_NAMES,
    SLEEP_INDEXES,
    daily_sleep_indexes,
    mood_ml_features,
    sleep_from_paxpredm,
)

DAY = 1440
T = 7 * DAY


def sleeper(on_h: float, off_h: float, days: int = 7) -> np.ndarray:
    """1 while asleep between on_h and off_h every day (clock hours, may cross midnight)."""
    t = np.arange(days * DAY) % DAY
    on, off = on_h * 60, off_h * 60
    s = (t >= on) | (t < off) if on > off else (t >= on) & (t < off)
    return s.astype(float)


def at(day: int, hour: float) -> int:
    return day * DAY + int(hour * 60)


@pytest.fixture(scope="module")
def cohort():
    regular = sleeper(23, 7)
    awakening = regular.copy()
    awakening[at(2, 2):at(2, 2) + 5] = 0          # 5-min awakening at 02:00 on night 2
    gap30 = regular.copy()
    gap30[at(3, 1):at(3, 1.5)] = 0                # 30 min awake 01:00-01:30 splits the night
    nap = regular.copy()
    nap[at(3, 14):at(3, 16)] = 1                  # 2 h nap on day 3
    missing = np.full(T, np.nan)
    shifted = sleeper(2, 10)                      # the regular schedule 3 h later
    doze = regular.copy()
    doze[at(4, 15):at(4, 15) + 5] = 1             # 5-min doze in the afternoon
    X = np.stack([regular, awakening, gap30, nap, missing, shifted, doze])
    return X, daily_sleep_indexes(X), mood_ml_features(X)


def test_names_and_order():
    assert len(SLEEP_FEATURE_NAMES) == 36 == len(set(SLEEP_FEATURE_NAMES))
    assert SLEEP_FEATURE_NAMES[:3] == ["ST_long_MN", "ST_long_SD", "ST_long_Zscore"]
    assert SLEEP_FEATURE_NAMES[-1] == "Circadian_amplitude_Zscore"
    assert [n.rsplit("_", 1)[0] for n in SLEEP_FEATURE_NAMES[::3]] == SLEEP_INDEXES


def test_frame_shape_index_columns(cohort):
    X, _, df = cohort
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == SLEEP_FEATURE_NAMES
    assert list(df.index) == list(range(len(X)))


def test_regular_sleeper(cohort):
    _, daily, df = cohort
    r = df.loc[0]
    assert r.ST_long_MN == pytest.approx(8.0)
    assert r.LongSleepWindow_length_MN == pytest.approx(8.0)
    assert r.LongSleepWindow_number_MN == pytest.approx(1.0)
    assert r.ShortSleepWindow_number_MN == 0 and r.ST_short_MN == 0 and r.WT_long_MN == 0
    assert r.Sleep_percentage_MN == pytest.approx(1 / 3)
    # one long window every (noon-to-noon) day, nothing varies
    assert np.all(daily["LongSleepWindow_number"][0] == 1)
    for k in SLEEP_INDEXES:
        assert r[f"{k}_SD"] == pytest.approx(0.0, abs=1e-4), k
        assert r[f"{k}_Zscore"] == 0.0, k
    # binary profile, 1/3 asleep: CV of wake = sqrt(p / (1 - p)) with p = 1/3
    assert r.Sleep_amplitude_MN == pytest.approx(np.sqrt(0.5), rel=1e-6)
    # DLMO a couple of hours before a 23:00 bedtime
    assert 19.5 < r.Circadian_phase_MN < 23.0
    assert 0.8 < r.Circadian_amplitude_MN < 1.4


def test_short_awakening_is_flipped(cohort):
    _, daily, df = cohort
    assert daily["LongSleepWindow_number"][1].tolist() == [1] * 6
    assert np.allclose(daily["ST_long"][1], 8.0)     # the 5 min count as sleep
    assert np.allclose(daily["WT_long"][1], 0.0)
    assert df.loc[1, SLEEP_FEATURE_NAMES].equals(df.loc[0, SLEEP_FEATURE_NAMES]) or np.allclose(
        df.loc[1].to_numpy(), df.loc[0].to_numpy(), atol=1e-4)


def test_windows_30_min_apart_merge(cohort):
    _, daily, _ = cohort
    d = 2   # noon day 2 -> noon day 3 holds night 3 (23:00 day 2 - 07:00 day 3)
    assert daily["LongSleepWindow_number"][2][d] == 1
    assert daily["ShortSleepWindow_number"][2][d] == 0
    assert daily["LongSleepWindow_length"][2][d] == pytest.approx(8.0)
    assert daily["WT_long"][2][d] == pytest.approx(0.5)
    assert daily["ST_long"][2][d] == pytest.approx(7.5)


def test_two_hour_nap_is_short_window(cohort):
    _, daily, df = cohort
    d = 3   # noon day 3 -> noon day 4; the nap is 14:00-16:00 on day 3
    assert daily["ShortSleepWindow_number"][3][d] == 1
    assert daily["ShortSleepWindow_length"][3][d] == pytest.approx(2.0)
    assert daily["ST_short"][3][d] == pytest.approx(2.0)
    assert daily["LongSleepWindow_number"][3][d] == 1
    assert daily["Sleep_percentage"][3][d] == pytest.approx(10 / 24)
    assert df.loc[3, "ShortSleepWindow_number_MN"] == pytest.approx(1 / 6)


def test_short_doze_is_flipped_to_wake(cohort):
    _, daily, _ = cohort
    assert np.all(daily["ShortSleepWindow_number"][6] == 0)
    assert np.allclose(daily["Sleep_percentage"][6], 1 / 3)


def test_all_missing_participant_is_nan_row(cohort):
    _, _, df = cohort
    assert df.loc[4].isna().all()
    assert df.drop(index=4).notna().all().all()


def test_three_hour_shift_moves_circadian_phase(cohort):
    _, _, df = cohort
    diff = (df.loc[5, "Circadian_phase_MN"] - df.loc[0, "Circadian_phase_MN"] + 12) % 24 - 12
    assert diff == pytest.approx(3.0, abs=0.25)
    assert df.loc[5, "ST_long_MN"] == pytest.approx(8.0)
    assert df.loc[5, "Circadian_amplitude_MN"] == pytest.approx(df.loc[0, "Circadian_amplitude_MN"], rel=0.02)


def test_vectorized_equals_per_participant(cohort):
    X, _, df = cohort
    rng = np.random.default_rng(0)
    noisy = X[[0, 3, 5]].copy()
    flip = rng.random(noisy.shape) < 0.03
    noisy[flip] = 1 - noisy[flip]
    Xs = np.concatenate([X, noisy])
    batch = mood_ml_features(Xs, chunk_size=3)
    for i in range(len(Xs)):
        single = mood_ml_features(Xs[i:i + 1])
        np.testing.assert_allclose(batch.loc[i].to_numpy(), single.loc[0].to_numpy(),
                                   rtol=1e-9, atol=1e-9, equal_nan=True)


def test_valid_mask_and_day_validity():
    x = sleeper(23, 7)[None]
    valid = np.ones_like(x, dtype=bool)
    valid[0, at(4, 12):at(5, 12)] = False              # whole analysis day 4 not worn
    daily = daily_sleep_indexes(x, valid)
    assert np.isnan(daily["ST_long"][0][4]) and np.isfinite(daily["ST_long"][0][3])
    df = mood_ml_features(x, valid)
    assert df.loc[0, "ST_long_MN"] == pytest.approx(8.0)   # the non-wear night is not read as 0 h


def test_day_anchor_and_minutes_per_day():
    x = sleeper(23, 7)[None]
    # midnight-anchored days: the first and last nights are cut, so more than one window/day
    daily = daily_sleep_indexes(x, day_start_clock_minute=0)
    assert daily["ST_long"].shape == (1, 7)
    # 2 samples a minute gives the same answer as one
    x2 = np.repeat(x, 2, axis=1)
    a = mood_ml_features(x)
    b = mood_ml_features(x2, minutes_per_day=2880)
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), atol=0.02, equal_nan=True)


def test_bad_input_raises_typed_errors():
    with pytest.raises(InputFormatError):
        mood_ml_features(np.zeros(T))
    with pytest.raises(InputFormatError):
        mood_ml_features(np.full((1, T), 2.0))
    with pytest.raises(InputFormatError):
        mood_ml_features(np.zeros((1, T)), valid=np.ones((2, T), bool))
    with pytest.raises(InputFormatError):
        sleep_from_paxpredm(np.array([1, 2, 5]))


def test_sleep_from_paxpredm():
    out = sleep_from_paxpredm(np.array([[1, 2, 3, 4, np.nan]]))
    assert out[0, :2].tolist() == [0.0, 1.0]
    assert np.isnan(out[0, 2:]).all()


def test_simulate_circadian_vectorized_shapes_and_shift():
    def light(on, off):
        return np.where(sleeper(on, off) == 1, 0.0, 250.0)
    L = np.stack([light(23, 7), light(2, 10), np.full(T, 250.0) * 0])   # last: darkness
    phase, amp = simulate_circadian(L, burn_in_repeats=2, initial_cbtmin_hours=[4.6, 7.6, 4.0])
    assert phase.shape == amp.shape == (3, 7)
    shift = (phase[1] - phase[0] + 12) % 24 - 12
    assert np.allclose(shift, 3.0, atol=0.25)
    # in darkness the clock free-runs (period ~24.2 h), so DLMO drifts later every day
    drift = np.diff(np.unwrap(phase[2] * 2 * np.pi / 24)) * 24 / (2 * np.pi)
    assert np.all(drift > 0)
    single, _ = simulate_circadian(L[1:2], burn_in_repeats=2, initial_cbtmin_hours=7.6)
    np.testing.assert_allclose(single[0], phase[1], atol=1e-9)
