"""The activity generator: real file format, the two domains' units and rates, a planted class
signal that survives on the source, breaks on the Garmin domain and is learnable there again,
and the planted pipeline mismatches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from biotune.activity import CLASSES, GRAVITY, synth


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("activity_demo")
    return synth.write_demo(out, seed=3, source_persons=4, garmin_persons=3, mismatches=True,
                            bouts_per_class=1, bout_seconds=(24.0, 30.0))


def _features(session: synth.Session, hz: float, step_s: float = 2.0, window_s: float = 4.0):
    """Per-window channel mean and sd (model units) + majority label: a cheap stand-in model."""
    x = session.model_units()
    w, s = int(window_s * hz), int(step_s * hz)
    starts = np.arange(0, len(x) - w + 1, s)
    feats = np.array([np.r_[x[a:a + w].mean(0), x[a:a + w].std(0)] for a in starts])
    labels = np.array([np.bincount(session.labels[a:a + w], minlength=11).argmax() for a in starts])
    return feats, labels


def test_csv_format_units_and_rates(demo):
    src = pd.read_csv(sorted((p for p in Path(demo["source"]).glob("*.csv")))[0])
    gar = pd.read_csv(sorted((p for p in Path(demo["garmin"]).glob("*.csv")))[0])
    for df in (src, gar):
        assert list(df.columns) == list(synth.CSV_COLUMNS)
        assert set(df["label"]) == set(CLASSES)
        assert df["timestamp"].is_monotonic_increasing and df["timestamp"].is_unique
    assert np.median(np.diff(src["timestamp"])) == 20  # 50 Hz, epoch ms
    assert np.median(np.diff(gar["timestamp"])) == 10  # 100 Hz
    assert pd.api.types.is_integer_dtype(gar["ax"])  # Garmin writes integer milli-g
    rest_src = np.linalg.norm(src.loc[src.label == "sitting", ["ax", "ay", "az"]].to_numpy(), axis=1).mean()
    rest_gar = np.linalg.norm(gar.loc[gar.label == "sitting", ["ax", "ay", "az"]].to_numpy(), axis=1).mean()
    assert abs(rest_src - GRAVITY) < 0.3  # m/s^2
    assert 900 < rest_gar < 1200  # milli-g, with the device's gain and bias
    assert src.loc[src.label == "sitting", "gx"].abs().mean() < 5  # deg/s, still
    assert src.loc[src.label == "knuckles_cracking", "gx"].abs().max() > 100  # deg/s, fast bursts


def test_deterministic_and_people_differ():
    a = synth.generate_session(synth.SOURCE, 1, seed=7, bouts_per_class=1)
    b = synth.generate_session(synth.SOURCE, 1, seed=7, bouts_per_class=1)
    c = synth.generate_session(synth.SOURCE, 2, seed=7, bouts_per_class=1)
    assert np.array_equal(a.accel, b.accel) and np.array_equal(a.labels, b.labels)
    assert a.accel.shape != c.accel.shape or not np.array_equal(a.accel, c.accel)
    long = synth.generate_session(synth.GARMIN, 1, session_seconds=120)
    assert len(long.labels) == 120 * 100


def test_training_config_and_scaler_are_seed_format(demo):
    cfg = json.loads(open(demo["config"]).read())
    for key in ("window_size", "overlap", "step_size", "target_hz", "sensor_cols", "scaler_mean", "scaler_scale",
                "label_to_activity", "n_classes", "normalization_variant"):
        assert key in cfg
    assert cfg["window_size"] == 200 and cfg["overlap"] == 0.5 and cfg["step_size"] == 100 and cfg["target_hz"] == 50
    assert cfg["label_to_activity"]["0"] == "ear_rubbing" and cfg["label_to_activity"]["10"] == "standing"
    scaler = json.loads(open(demo["scaler"]).read())
    assert set(scaler) == {"normalization_variant", "scaler_mean", "scaler_scale"}
    assert scaler["scaler_mean"] == cfg["scaler_mean"]
    # the source's mean accelerometer vector is mostly gravity; gyro means ~0
    assert 4 < np.linalg.norm(cfg["scaler_mean"][:3]) < GRAVITY
    assert np.abs(cfg["scaler_mean"][3:]).max() < 2


def test_planted_signal_breaks_on_garmin_and_is_learnable_there():
    """A linear model on window means/sds: high on held-out source people, near chance on the
    Garmin domain, high again when trained on Garmin people (so the shift is real, not noise)."""
    from sklearn.linear_model import LogisticRegression

    def domain(dom, persons):
        parts = [_features(synth.generate_session(dom, p, seed=11), dom.hz) for p in persons]
        return np.vstack([f for f, _ in parts]), np.concatenate([y for _, y in parts]), \
            np.concatenate([[p] * len(y) for p, (_, y) in zip(persons, parts)])

    xs, ys, ps = domain(synth.SOURCE, [1, 2, 3, 4, 5])
    xg, yg, pg = domain(synth.GARMIN, [1, 2, 3, 4])
    mu, sd = xs.mean(0), xs.std(0)
    clf = LogisticRegression(max_iter=3000).fit((xs[ps < 5] - mu) / sd, ys[ps < 5])
    source_acc = clf.score((xs[ps == 5] - mu) / sd, ys[ps == 5])
    garmin_acc = clf.score((xg - mu) / sd, yg)
    clf2 = LogisticRegression(max_iter=3000).fit((xg[pg < 4] - mu) / sd, yg[pg < 4])
    garmin_tuned = clf2.score((xg[pg == 4] - mu) / sd, yg[pg == 4])
    assert source_acc > 0.85, source_acc
    assert garmin_acc < 0.25, garmin_acc
    assert garmin_tuned > 0.7, garmin_tuned


def test_mismatch_folders(demo):
    assert set(demo["mismatch"]) == set(synth.MISMATCHES)
    for kind, folder in demo["mismatch"].items():
        planted = json.loads(open(f"{folder}/PLANTED.json").read())
        pipe = json.loads(open(f"{folder}/pipeline.json").read())
        assert planted["mismatch"] == kind
        if kind == "wrong_rate":
            assert pipe["input_hz"] == 50
        if kind == "wrong_units":
            assert pipe["accel_units"] == "m/s^2"
        if kind == "wrong_window":
            assert (pipe["window_size"], pipe["overlap"]) == (100, 0.25)
        if kind == "wrong_scaler":
            assert pipe["scaler"] == "scaler.json"
    swapped = pd.read_csv(sorted(Path(demo["mismatch"]["swapped_accel_gyro"]).glob("*.csv"))[0])
    assert np.linalg.norm(swapped.loc[swapped.label == "sitting", ["gx", "gy", "gz"]].to_numpy(), axis=1).mean() > 900
    with pytest.raises(ValueError):
        synth.write_mismatch("/nonexistent", "no_such_bug")
