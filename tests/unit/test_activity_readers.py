"""Activity readers, configs and windows: the seed's formats, resampling and units, vectorised
windows equal to the naive loop, and every bad input a typed error naming file, line, column, fix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from biotune.activity import CLASSES, GRAVITY, SENSOR_COLS, synth
from biotune.activity.config import (
    PipelineConfig,
    Scaler,
    TrainingConfig,
    pipeline_from_dict,
    read_pipeline,
    read_scaler,
    read_training_config,
    write_scaler,
    write_training_config,
)
from biotune.activity.readers import read_session, read_sessions, resample
from biotune.activity.windows import load_windows, majority_labels, make_windows, n_windows, window_view
from biotune.errors import BiotuneError, InputFormatError, MissingInputError

GARMIN_PIPE = synth.GARMIN.pipeline()
SOURCE_PIPE = synth.SOURCE.pipeline()


@pytest.fixture(scope="module")
def garmin_csv(tmp_path_factory):
    d = tmp_path_factory.mktemp("garmin")
    sess = synth.generate_session(synth.GARMIN, 1, seed=5, bouts_per_class=1, bout_seconds=(20.0, 22.0))
    return synth.write_session_csv(sess, d / "G01_s1.csv"), sess


@pytest.fixture()
def frame(garmin_csv):
    return pd.read_csv(garmin_csv[0])


def _write(df: pd.DataFrame, tmp_path: Path, name: str = "G09_s1.csv") -> str:
    path = tmp_path / name
    df.to_csv(path, index=False)
    return str(path)


def _error(exc_info, *needles):
    text = str(exc_info.value)
    for n in needles:
        assert n in text, (n, text)
    assert exc_info.value.fix, "every error says how to fix it"
    return text


# --------------------------------------------------------------------------------------------
# configs


def test_scaler_both_formats_round_trip(tmp_path):
    s = Scaler(np.arange(6.0), np.arange(1.0, 7.0), variant="v1")
    for fmt, keys in (("mean_scale", {"mean", "scale"}),
                      ("variant", {"normalization_variant", "scaler_mean", "scaler_scale"})):
        p = write_scaler(s, tmp_path / f"{fmt}.json", fmt=fmt)
        assert set(json.loads(Path(p).read_text())) == keys
        back = read_scaler(p)
        assert back.close_to(s)
    x = np.random.default_rng(0).normal(3, 2, size=(1000, 6))
    fitted = Scaler.fit(x)
    assert np.allclose(fitted.transform(x).mean(0), 0, atol=1e-5) and np.allclose(fitted.transform(x).std(0), 1, atol=1e-4)


def test_scaler_with_five_entries_and_other_bad_scalers(tmp_path):
    p = tmp_path / "scaler.json"
    p.write_text(json.dumps({"mean": [0] * 5, "scale": [1] * 5}))
    with pytest.raises(InputFormatError) as e:
        read_scaler(p)
    _error(e, "5 entries", "'mean'", str(p), "Ax, Ay, Az, Gx, Gy, Gz")
    p.write_text(json.dumps({"scaler_mean": [0] * 6}))
    with pytest.raises(MissingInputError) as e:
        read_scaler(p)
    _error(e, "'scaler_scale'")
    p.write_text(json.dumps({"mean": [0] * 6, "scale": [1, 1, 0, 1, 1, 1]}))
    with pytest.raises(InputFormatError, match="Az"):
        read_scaler(p)
    p.write_text("{not json")
    with pytest.raises(InputFormatError, match="line 1"):
        read_scaler(p)


def test_training_config_seed_format(tmp_path):
    cfg = TrainingConfig(scaler=Scaler(np.zeros(6), np.ones(6)))
    path = write_training_config(cfg, tmp_path / "config.json")
    back = read_training_config(path)
    assert back.classes == CLASSES and back.step_size == 100 and back.scaler.close_to(cfg.scaler)
    back.require_consistent()
    raw = json.loads(Path(path).read_text())
    raw["label_to_activity"] = {str(i + 1): c for i, c in enumerate(CLASSES)}  # 1-based: the classic bug
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(raw))
    with pytest.raises(InputFormatError, match="labels start at 0"):
        read_training_config(bad).require_consistent()
    del raw["window_size"]
    bad.write_text(json.dumps(raw))
    with pytest.raises(MissingInputError, match="window_size"):
        read_training_config(bad)


def test_pipeline_config(tmp_path):
    with pytest.raises(InputFormatError, match="unknown pipeline config key"):
        pipeline_from_dict({"input_hertz": 100}, "p.json")
    with pytest.raises(InputFormatError, match="accel_units"):
        pipeline_from_dict({"accel_units": "mg"}, "p.json")
    write_scaler(Scaler(np.ones(6), np.ones(6)), tmp_path / "s.json")
    (tmp_path / "pipeline.json").write_text(json.dumps({**GARMIN_PIPE.to_dict(), "scaler": "s.json"}))
    pipe = read_pipeline(tmp_path / "pipeline.json")  # scaler path relative to the pipeline file
    assert pipe.scaler is not None and pipe.input_hz == 100 and pipe.accel_units == "milli_g"
    assert pipe.with_(columns={**pipe.columns, "Ay": "-ay"}).column_for("Ay") == ("ay", -1.0)


# --------------------------------------------------------------------------------------------
# reading


def test_read_garmin_resamples_and_converts(garmin_csv):
    path, sess = garmin_csv
    (seg,) = read_session(path, GARMIN_PIPE)
    assert seg.hz == 50 and abs(seg.measured_hz - 100) < 1 and seg.rows == len(sess.labels)
    assert abs(seg.n - len(sess.labels) / 2) <= 2  # 100 Hz -> 50 Hz
    assert seg.session == "G01_s1" and seg.person == "G01"
    rest = seg.values[seg.labels == CLASSES.index("sitting"), :3]
    assert abs(np.linalg.norm(rest, axis=1).mean() - GRAVITY) < 1.2  # milli-g -> m/s^2 (device gain ~1.06)
    # labels follow the samples: the label sequence is the generator's, decimated
    assert np.array_equal(np.unique(seg.labels), np.arange(11))
    assert (seg.labels == sess.labels[::2][: seg.n]).mean() > 0.99


def test_same_rate_rows_as_they_are(tmp_path):
    sess = synth.generate_session(synth.SOURCE, 2, seed=1, bouts_per_class=1, bout_seconds=(10.0, 11.0))
    path = synth.write_session_csv(sess, tmp_path / "S02_s1.csv")
    (seg,) = read_session(path, SOURCE_PIPE)
    assert seg.n == len(sess.labels)
    assert np.allclose(seg.values, sess.model_units(), atol=1e-4)


def test_resample_sine_exact():
    t = np.arange(0, 10, 0.01)
    x = np.sin(2 * np.pi * 1.0 * t)[:, None]
    grid, out, _ = resample(t, x, None, 100, 50)
    assert np.allclose(np.diff(grid), 0.02)
    assert np.abs(out[5:-5, 0] - np.sin(2 * np.pi * grid[5:-5])).max() < 2e-3  # 1 Hz barely touched by the box


def test_iso_timestamps_and_unlabelled(frame, tmp_path):
    df = frame.drop(columns=["label"]).copy()
    df["timestamp"] = pd.to_datetime(df["timestamp"], unit="ms", utc=True).dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    (seg,) = read_session(_write(df, tmp_path), GARMIN_PIPE.with_(timestamp_unit="iso"))
    assert seg.labels is None and abs(seg.measured_hz - 100) < 1


@pytest.mark.parametrize("case", ["missing", "renamed", "extra", "non_monotonic", "duplicated", "gap", "label",
                                  "nan_burst", "non_numeric"])
def test_bad_input_is_a_typed_error(case, frame, tmp_path):
    df = frame.copy()
    pipe = GARMIN_PIPE
    if case == "missing":
        df = df.drop(columns=["gz"])
        needles, err = ("'gz'", "Gz", "line 1", "column 'gz'"), MissingInputError
    elif case == "renamed":
        df = df.rename(columns={"ax": "acc_x"})
        needles, err = ("'ax'", "acc_x", "rename column 'acc_x' to 'ax'"), MissingInputError
    elif case == "extra":
        df["mx"] = 0.0
        needles, err = ("unexpected column", "'mx'", "ignore_columns"), InputFormatError
        assert read_session(_write(df, tmp_path, "ok.csv"), pipe.with_(ignore_columns=("mx",)))
    elif case == "non_monotonic":
        df.loc[[300, 301], "timestamp"] = df.loc[[301, 300], "timestamp"].to_numpy()
        needles, err = ("go backwards", "line 303", "column 'timestamp'", "sort the rows"), InputFormatError
    elif case == "duplicated":
        df.loc[500, "timestamp"] = df.loc[499, "timestamp"]
        needles, err = ("duplicated timestamp", "line 502", "same as line 501"), InputFormatError
    elif case == "gap":
        df = df.drop(index=range(1000, 1600)).reset_index(drop=True)  # 6 s missing > 4 s window
        needles, err = ("gap", "longer than one window", "line 1002", "on_gap"), InputFormatError
        segs = read_session(_write(df, tmp_path, "split.csv"), pipe.with_(on_gap="split"))
        assert len(segs) == 2 and segs[1].first_line == 1002 and segs[1].session.endswith("#1")
    elif case == "label":
        df["label"] = df["label"].astype(object)
        df.loc[700, "label"] = "nail_bitting"
        needles, err = ("'nail_bitting'", "line 702", "column 'label'", "did you mean 'nail_biting'"), InputFormatError
    elif case == "nan_burst":
        df["ay"] = df["ay"].astype(float)
        df.loc[400:401, "ay"] = np.nan  # 2 samples: interpolated
        assert read_session(_write(df, tmp_path, "ok.csv"), pipe)
        df.loc[800:819, "ay"] = np.nan
        needles, err = ("20 missing values", "lines 802-821", "column 'ay'", "max_nan_run"), InputFormatError
    else:
        df["az"] = df["az"].astype(object)
        df.loc[250, "az"] = "12,5"
        needles, err = ("non-number", "'12,5'", "line 252", "column 'az'"), InputFormatError
    path = _write(df, tmp_path)
    with pytest.raises(err) as e:
        read_session(path, pipe)
    _error(e, path, *needles)


def test_read_sessions_collects_errors(frame, tmp_path, garmin_csv):
    good = tmp_path / "G01_s1.csv"
    good.write_bytes(Path(garmin_csv[0]).read_bytes())
    _write(frame.drop(columns=["gx"]), tmp_path, "G02_s1.csv")
    with pytest.raises(MissingInputError):
        read_sessions(str(tmp_path), GARMIN_PIPE)
    res = read_sessions(str(tmp_path), GARMIN_PIPE, errors="collect")
    assert len(res.segments) == 1 and list(res.errors) == [str(tmp_path / "G02_s1.csv")]
    with pytest.raises(MissingInputError, match="no session CSV"):
        read_sessions(str(tmp_path / "empty"), GARMIN_PIPE)


# --------------------------------------------------------------------------------------------
# windows


def test_windows_equal_the_naive_loop():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(1234, 6)).astype(np.float32)
    labels = np.repeat(rng.integers(0, 11, 40), 31)[:1234].astype(np.int16)
    w, step = 200, 100
    view = window_view(values, w, step)
    y = majority_labels(labels, w, step)
    assert view.shape == (n_windows(1234, w, step), w, 6) == (11, 200, 6)
    for i in range(len(view)):
        a = i * step
        assert np.array_equal(view[i], values[a:a + w])
        assert y[i] == pd.Series(labels[a:a + w]).mode()[0]  # the seed's rule, ties -> lowest
    tie = np.array([3] * 100 + [1] * 100, dtype=np.int16)
    assert majority_labels(tie, 200, 100)[0] == 1


def test_make_windows_scaled_and_per_segment(garmin_csv, tmp_path):
    path, _ = garmin_csv
    segs = read_session(path, GARMIN_PIPE)
    scaler = Scaler.fit(segs[0].values)
    ws = make_windows(segs + segs, 200, 100, scaler)
    one = n_windows(segs[0].n, 200, 100)
    assert len(ws) == 2 * one and ws.x.dtype == np.float32 and ws.x.shape[1:] == (200, 6)
    assert abs(float(ws.x.mean())) < 0.1
    assert np.allclose(ws.start_s[1] - ws.start_s[0], 2.0)
    cfg = TrainingConfig(scaler=scaler)
    loaded = load_windows([path], GARMIN_PIPE, cfg)
    assert np.allclose(loaded.x, ws.x[:one]) and np.array_equal(loaded.y, ws.y[:one])
    assert set(loaded.person) == {"G01"}
    with pytest.raises(InputFormatError, match="no scaler"):
        load_windows([path], GARMIN_PIPE, TrainingConfig())
    assert load_windows([path], GARMIN_PIPE, None, scaler=False).scaled is False


def test_errors_are_biotune_errors():
    assert issubclass(InputFormatError, BiotuneError)
    assert list(PipelineConfig().columns) == list(SENSOR_COLS)
