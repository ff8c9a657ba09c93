"""The EEG generator writes Mind Monitor / muse-lsl CSVs as the apps do, with the planted signal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.signal import welch

from biotune.eeg.formats import CHANNELS, MIND_MONITOR_COLUMNS, PLAIN_COLUMNS, RAW_MAX
from biotune.eeg.synth import participant_profile, simulate_eeg, write_dataset


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("eeg_synth")
    return write_dataset(str(out), participants=4, seconds=40, fmt="mixed", seed=3, disconnect_every=2)


def test_layout_and_labels(generated):
    files = generated["files"]
    assert sorted(files) == ["P001", "P002", "P003", "P004"]
    assert files["P001"].split("/")[-1].startswith("mindMonitor_2024-03-04--")
    assert files["P002"].split("/")[-1].startswith("EEG_recording_2024-03-04-")
    labels = pd.read_csv(generated["labels"])
    assert list(labels.columns) == ["Participant", "Remission"] and set(labels["Remission"]) == {0, 1}


def test_mind_monitor_rows(generated):
    path = generated["files"]["P001"]
    with open(path) as fh:
        assert fh.readline().strip().split(",") == list(MIND_MONITOR_COLUMNS)
    df = pd.read_csv(path)
    elements = df[df["Elements"].notna()]
    assert elements["Elements"].iloc[0].startswith("/muse/event/connected Muse-")
    assert (elements["Elements"] == "/muse/elements/blink").sum() >= 2
    assert elements.drop(columns=["TimeStamp", "Elements"]).isna().all().all()  # event rows hold nothing else
    eeg = df[df["RAW_TP9"].notna()]
    t = pd.to_datetime(eeg["TimeStamp"], format="%Y-%m-%d %H:%M:%S.%f")
    assert t.is_monotonic_increasing
    steps = np.diff(t.to_numpy().astype("datetime64[us]").astype(np.int64)) / 1e6
    assert np.median(steps) < 0.002  # packet bursts: neighbours say nothing about the rate
    duration = (t.iloc[-1] - t.iloc[0]).total_seconds()
    assert 40 - 2.5 < duration < 40.2 and len(eeg) < 40 * 256  # lost packets and a disconnection
    raw = eeg[[f"RAW_{c}" for c in CHANNELS]].to_numpy()
    assert raw.min() >= 0 and raw.max() <= RAW_MAX and 780 < np.median(raw) < 900
    alpha = eeg["Alpha_AF7"].dropna()
    assert 300 < alpha.nunique() < len(alpha) / 10  # 10 Hz updates, repeated on the rows between them
    assert eeg["HeadBandOn"].eq(1).all()


def test_plain_rows(generated):
    df = pd.read_csv(generated["files"]["P002"])
    assert list(df.columns) == list(PLAIN_COLUMNS)
    assert abs(np.median(np.diff(df["timestamps"])) - 1 / 256) < 1e-4
    assert abs(df["TP9"].mean()) < 20


def test_planted_alpha_difference():
    def alpha(remission, seed):
        rng = np.random.default_rng(seed)
        x, _ = simulate_eeg(30, participant_profile(remission, rng), rng)
        f, p = welch(x, fs=256, nperseg=512, axis=0)
        band = (f >= 8) & (f <= 12)
        power = p[band].sum(0)
        return np.log(power).mean(), np.log(power[2] / power[1])  # mean log alpha, AF8 vs AF7

    rem = np.array([alpha(1, s) for s in range(8)])
    non = np.array([alpha(0, s + 100) for s in range(8)])
    assert rem[:, 0].mean() - non[:, 0].mean() > 0.3
    assert rem[:, 1].mean() - non[:, 1].mean() > 0.3


def test_line_noise_present():
    rng = np.random.default_rng(5)
    prof = participant_profile(0, rng)
    x, _ = simulate_eeg(20, prof, rng)
    f, p = welch(x[:, 0], fs=256, nperseg=1024)
    line = p[np.argmin(abs(f - prof["line_hz"]))]
    near = np.median(p[(abs(f - prof["line_hz"]) > 3) & (abs(f - prof["line_hz"]) < 8)])
    assert line > 10 * near
