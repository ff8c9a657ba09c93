"""EEG readers, processing and the primary dataset, including every bad input named in the issue."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from biotune.eeg import processing
from biotune.eeg.cli import add_commands
from biotune.eeg.primary import build_primary, primary_filename, read_primary, verify_order
from biotune.eeg.readers import measure_rate, read_labels, read_recording
from biotune.eeg.synth import participant_profile, simulate_eeg, write_dataset, write_mind_monitor
from biotune.errors import InputFormatError, MissingInputError


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("eeg_src")
    return write_dataset(str(root), participants=4, seconds=32, fmt="mixed", seed=11, disconnect_every=4)


@pytest.fixture(scope="module")
def primary(generated, tmp_path_factory):
    out = tmp_path_factory.mktemp("eeg_primary")
    return build_primary(generated["source"], generated["labels"], str(out) + "/", window_seconds=4,
                         sub_window_seconds=0.5)


def _copy(generated, tmp_path) -> tuple[Path, Path]:
    src = tmp_path / "recordings"
    shutil.copytree(generated["source"], src)
    labels = tmp_path / "labels.csv"
    shutil.copy(generated["labels"], labels)
    return src, labels


def _mm_file(src: Path, pid: str) -> Path:
    return next((src / pid).glob("mindMonitor_*.csv"))


# --------------------------------------------------------------------------- reading
def test_rate_is_measured_over_the_recording(generated):
    rec = read_recording(generated["files"]["P001"], "P001")
    assert rec.fmt == "mind_monitor" and abs(rec.fs_measured - 256) < 2
    raw = pd.read_csv(generated["files"]["P001"])
    t = pd.to_datetime(raw.loc[raw["RAW_TP9"].notna(), "TimeStamp"]).astype("int64").to_numpy() / 1e9
    assert np.median(np.diff(t)) < 0.002  # neighbouring rows: a burst, not the sampling interval
    assert rec.gap_samples > 300 and np.isnan(rec.data).any()  # the planted disconnection, kept as NaN
    assert any(name == "/muse/elements/blink" for _, name in rec.events)
    plain = read_recording(generated["files"]["P002"], "P002")
    assert plain.fmt == "plain" and abs(plain.fs_measured - 256) < 2 and not np.isnan(plain.data).any()


def test_measure_rate_ignores_disconnections():
    t = np.concatenate([np.arange(0, 10, 1 / 256), 12 + np.arange(0, 10, 1 / 256)])
    assert abs(measure_rate(t) - 256) < 1e-6


def test_lowpass_zero_phase_and_cutoff():
    fs = 256.0
    t = np.arange(int(8 * fs)) / fs
    slow = np.sin(2 * np.pi * 10 * t)
    fast = np.sin(2 * np.pi * 100 * t)
    y = processing.lowpass(np.column_stack([slow, fast]), fs)
    mid = slice(256, -256)
    assert np.max(np.abs(y[mid, 0] - slow[mid])) < 0.01  # passband kept, no phase shift
    assert np.std(y[mid, 1]) < 0.01 * np.std(fast)  # 100 Hz removed


def test_windows_dc_removed_and_nan_windows_dropped():
    fs = 256.0
    data = np.random.default_rng(0).normal(size=(int(fs * 9), 2)) + 800.0
    data[int(4.5 * fs):int(4.7 * fs)] = np.nan
    w = processing.process(data, fs, window_seconds=2, sub_window_seconds=0.5)
    assert list(w.parent_ids) == [0, 1, 3] and w.dropped == 1  # window 2 (4-6 s) held the gap
    assert w.signals.shape == (3, 4, 2, 128)
    assert np.abs(w.signals.mean(-1)).max() < 1e-4
    np.testing.assert_allclose(w.starts, [0.0, 2.0, 6.0])
    with pytest.raises(InputFormatError, match="sub-window"):
        processing.window_sizes(10, 3)


# --------------------------------------------------------------------------- primary dataset
def test_primary_dataset(primary):
    path = Path(primary["path"])
    assert path.name == "4s_TP9-AF7-AF8-TP10_primary_dataset.parquet" == primary_filename(4)
    assert primary["participants"] == 4 and primary["dataset_name"].startswith("EEG_4s_TP9-AF7-AF8-TP10_")
    assert primary["dataset_name"].endswith(f"_{primary['windows']}windows_primary")
    assert primary["dropped_windows"] >= 1  # the disconnection
    data = read_primary(str(path))
    assert data.signals.shape == (primary["rows"], 4, 128) and data.n_sub == 8
    parents, x = data.windows()
    assert x.shape == (primary["windows"], 8, 4, 128) and len(parents) == primary["windows"]
    table = pd.read_parquet(path)
    assert list(table.columns[:7]) == ["Participant", "Remission", "session", "parent_window_id", "sub_window_id",
                                       "window_start", "window_end"]
    assert table.groupby("Participant")["Remission"].nunique().eq(1).all()
    feats = data.features()
    assert len(feats) == primary["windows"] and "alpha_asymmetry" in feats and "gamma_TP10" in feats
    assert feats.drop(columns=["Participant"]).notna().all().all()


def test_scrambled_primary_names_first_out_of_order_row(primary, tmp_path):
    import pyarrow.parquet as pq

    table = pq.read_table(primary["path"])
    order = np.arange(table.num_rows)
    order[[20, 21]] = order[[21, 20]]
    bad = tmp_path / "scrambled.parquet"
    pq.write_table(table.take(order), bad)
    with pytest.raises(InputFormatError) as err:
        read_primary(str(bad))
    msg = str(err.value)
    assert "row 21 (Participant P001" in msg and "not sorted" in msg and "biotune eeg primary" in msg
    read_primary(str(bad), verify=False)  # the raw read works; only verification refuses it


def test_incomplete_parent_window_and_order_helper(primary, tmp_path):
    import pyarrow.parquet as pq

    table = pq.read_table(primary["path"])
    keep = np.delete(np.arange(table.num_rows), 3)  # drop sub-window 3 of the first parent window
    bad = tmp_path / "holes.parquet"
    pq.write_table(table.take(keep), bad)
    with pytest.raises(InputFormatError, match="incomplete"):
        read_primary(str(bad))
    with pytest.raises(InputFormatError, match="row 2"):
        verify_order(np.array(["A", "A", "A"]), np.array([0, 1, 1]), np.array([0, 0, 0]), "x")


# --------------------------------------------------------------------------- bad input
def _write_one(path: Path, x: np.ndarray, fs: float = 256.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    write_mind_monitor(str(path), x, dt.datetime(2024, 5, 1, 10, 0, 0), rng, fs=fs, loss=0.0)


def _signal(seconds=20, fs=256.0, seed=0):
    rng = np.random.default_rng(seed)
    x, _ = simulate_eeg(seconds, participant_profile(1, rng), rng, fs)
    return x


def test_wrong_sampling_rate(tmp_path):
    path = tmp_path / "P9" / "mindMonitor_2024-05-01--10-00-00.csv"
    _write_one(path, _signal(fs=220.0), fs=220.0)
    with pytest.raises(InputFormatError) as err:
        read_recording(str(path), "P9")
    msg = str(err.value)
    assert "timestamps say 220" in msg and "participant P9" in msg and str(path) in msg and "fix:" in msg


def test_missing_channel(generated, tmp_path):
    src, _ = _copy(generated, tmp_path)
    f = _mm_file(src, "P001")
    pd.read_csv(f, dtype=str).drop(columns=["RAW_AF8"]).to_csv(f, index=False)
    with pytest.raises(MissingInputError, match="AF8 missing") as err:
        read_recording(str(f), "P001")
    assert "--channels TP9,AF7,TP10" in str(err.value)


def test_flat_and_saturated_channels(tmp_path):
    x = _signal()
    x[:, 2] = 0.0  # AF8 reads a constant
    _write_one(tmp_path / "flat.csv", x)
    with pytest.raises(InputFormatError, match="channel AF8 is flat"):
        read_recording(str(tmp_path / "flat.csv"), "P1")
    y = _signal(seed=1)
    y[:, 0] *= 60  # TP9 rails at 0 / 1682.815 uV
    _write_one(tmp_path / "sat.csv", y)
    with pytest.raises(InputFormatError, match="channel TP9 is saturated") as err:
        read_recording(str(tmp_path / "sat.csv"), "P1")
    assert "participant P1" in str(err.value)


def test_nan_run_error_or_drop(generated, tmp_path):
    src, labels = _copy(generated, tmp_path)
    f = _mm_file(src, "P003")
    frame = pd.read_csv(f, dtype=str, keep_default_na=False)
    rows = np.flatnonzero(frame["RAW_TP9"].to_numpy() != "")[2000:2600]
    frame.loc[rows, "RAW_AF7"] = ""
    frame.to_csv(f, index=False)
    with pytest.raises(InputFormatError) as err:
        read_recording(str(f), "P003")
    msg = str(err.value)
    assert "AF7 is empty/NaN for 600 consecutive samples" in msg and f"lines {rows[0] + 2}-" in msg
    assert "--on-nan drop" in msg
    rec = read_recording(str(f), "P003", on_nan="drop")
    assert np.isnan(rec.data[:, 1]).sum() >= 600
    frame.loc[rows[:10], "RAW_AF7"] = "1.0"  # short runs are interpolated
    frame.loc[rows[10:], "RAW_AF7"] = frame.loc[rows[10:], "RAW_TP9"]
    frame.loc[rows[3:6], "RAW_AF7"] = ""
    frame.to_csv(f, index=False)
    assert read_recording(str(f), "P003").interpolated == 3


def test_labels_mismatch(generated, tmp_path):
    src, labels = _copy(generated, tmp_path)
    pd.read_csv(labels).query("Participant != 'P002'").to_csv(labels, index=False)
    with pytest.raises(MissingInputError) as err:
        build_primary(str(src), str(labels), str(tmp_path / "out.parquet"), window_seconds=4)
    msg = str(err.value)
    assert "participant P002" in msg and "no label" in msg and "P002,<0|1>" in msg
    frame = pd.read_csv(generated["labels"])
    pd.concat([frame, pd.DataFrame({"Participant": ["P077"], "Remission": [1]})]).to_csv(labels, index=False)
    with pytest.raises(InputFormatError, match="P077") as err:
        build_primary(str(src), str(labels), str(tmp_path / "out.parquet"), window_seconds=4)
    assert "no recording" in str(err.value)
    labels.write_text("Participant,Remission\nP001,maybe\n")
    with pytest.raises(InputFormatError, match="line 2"):
        read_labels(str(labels))
    labels.write_text("Subject,Outcome\nP001,1\n")
    with pytest.raises(MissingInputError, match="remission column"):
        read_labels(str(labels))


def test_not_muse_and_backwards_time(tmp_path):
    bad = tmp_path / "P1.csv"
    bad.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(InputFormatError, match="not a Muse recording"):
        read_recording(str(bad), "P1")
    t = 1.7e9 + np.arange(3000) / 256
    t[1500] = t[1400]
    frame = pd.DataFrame({"timestamps": t, **{c: np.random.default_rng(0).normal(0, 10, 3000)
                                              for c in ("TP9", "AF7", "AF8", "TP10")}})
    frame.to_csv(bad, index=False)
    with pytest.raises(InputFormatError, match="backwards at line 1502"):
        read_recording(str(bad), "P1")


def test_bad_file_is_quarantined(generated, tmp_path, home):
    src, labels = _copy(generated, tmp_path)
    f = _mm_file(src, "P001")
    pd.read_csv(f, dtype=str).drop(columns=["RAW_TP10"]).to_csv(f, index=False)
    with pytest.raises(MissingInputError, match="moved to quarantine") as err:
        build_primary(str(src), str(labels), str(tmp_path / "o.parquet"), window_seconds=4, quarantine=True)
    assert not f.exists()
    dest = str(err.value).split("moved to quarantine: ")[1].split(")")[0]
    assert Path(dest).exists() and (Path(dest).parent / "REASON.json").exists()


def test_cli_primary(generated, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="biotune")
    add_commands(parser.add_subparsers(dest="group", required=True))
    out = tmp_path / "p.parquet"
    args = parser.parse_args(["eeg", "primary", "--source", generated["source"], "--labels", generated["labels"],
                              "--window-seconds", "8", "--out", str(out), "--quiet"])
    assert args.func(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["path"] == str(out) and report["window_seconds"] == 8.0 and out.exists()
    args = parser.parse_args(["eeg", "synth", "--out", str(tmp_path / "syn"), "--participants", "2",
                              "--seconds", "12"])
    assert args.func(args) == 0 and json.loads(capsys.readouterr().out)["participants"] == 2
