"""The pipeline diagnostic and the domain-shift check on generated data: every planted mismatch
fails the right check, correctly processed Garmin data pass (a domain shift is not a pipeline
bug), the CLI exits non-zero on a fail, and the shift verdict carries its evidence."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from biotune.activity import CLASSES, synth
from biotune.activity.cli import add_commands
from biotune.activity.config import read_pipeline, read_training_config
from biotune.activity.diagnose import FAIL, PASS, WARN, diagnose
from biotune.activity.shift import DOMAIN_SHIFT, NO_SHIFT, PIPELINE_BUG, shift_check
from biotune.activity.windows import load_windows
from biotune.errors import InputFormatError

KW = dict(bouts_per_class=1, bout_seconds=(20.0, 24.0))

# planted bug -> the check that must fail
EXPECTED = {
    "wrong_rate": "measured_rate",
    "wrong_units": "accel_units",
    "swapped_accel_gyro": "channel_order",
    "permuted_axes": "axes",
    "wrong_scaler": "scaler_stats",
    "wrong_window": "window_size",
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("activity_diag")
    return synth.write_demo(out, seed=1, source_persons=3, garmin_persons=2, mismatches=True, **KW)


def _parser():
    parser = argparse.ArgumentParser(prog="biotune")
    add_commands(parser.add_subparsers(dest="group", required=True))
    return parser


def _run(argv):
    args = _parser().parse_args(argv)
    return args.func(args)


def test_source_passes_every_check(demo):
    report = diagnose(demo["source"], demo["config"])
    assert report.status == PASS, report.to_text()
    assert len(report.checks) == 15 and report.n_windows > 0
    names = [c.name for c in report.checks]
    for seed_check in ("window_size", "overlap", "sampling_rate", "sensor_channels", "normalization",
                       "label_mapping", "data_shape", "feature_distributions"):
        assert seed_check in names


def test_garmin_with_correct_pipeline_is_not_a_pipeline_bug(demo):
    report = diagnose(demo["garmin"], demo["config"])
    assert report.ok, report.to_text()
    assert report.check("accel_units").measured["looks_like"] == "milli_g"
    assert report.check("measured_rate").measured["hz"] == [100.0]
    assert report.check("axes").status == PASS


@pytest.mark.parametrize("kind", synth.MISMATCHES)
def test_each_planted_mismatch_fails_the_right_check(demo, kind):
    report = diagnose(demo["mismatch"][kind], demo["config"])
    check = report.check(EXPECTED[kind])
    assert check.status == FAIL, report.to_text()
    assert not report.ok and check.fix and check.measured is not None and check.expected is not None
    if kind == "wrong_units":
        assert check.measured["looks_like"] == "milli_g" and "'milli_g'" in check.fix
    if kind == "wrong_rate":
        assert "input_hz to 100" in check.fix
    if kind == "swapped_accel_gyro":  # the dependent checks say so instead of failing on nonsense
        assert report.check("accel_units").status == WARN
        assert "channel_order" in report.check("axes").detail
    if kind == "permuted_axes":
        assert '"Ax": "ay", "Ay": "ax", "Az": "az", "Gx": "gy", "Gy": "gx"' in check.fix  # the undoing remap
        assert check.measured["handedness"] < 0 and "left-handed" in check.detail
    if kind == "wrong_window":
        assert report.check("overlap").status == WARN and report.check("data_shape").status == FAIL
    if kind == "wrong_scaler":  # the refit scaler makes the data look normalised: only the new check sees it
        assert report.check("normalization").status == PASS


def test_bad_file_and_bad_label_map(demo, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(demo["garmin"], data)
    first = sorted(data.glob("*.csv"))[0]
    df = pd.read_csv(first)
    df.loc[10, "label"] = "sleeping"
    df.to_csv(first, index=False)
    report = diagnose(str(data), demo["config"])
    check = report.check("input_files")
    assert check.status == FAIL and "sleeping" in json.dumps(check.measured) and "line 12" in check.detail
    cfg = json.loads(Path(demo["config"]).read_text())
    cfg["label_to_activity"] = {str(i + 1): c for i, c in enumerate(CLASSES)}
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps(cfg))
    assert diagnose(demo["source"], str(bad)).check("label_mapping").status == FAIL


def test_cli_exit_codes_and_json(demo, tmp_path, capsys):
    assert _run(["activity", "diagnose", "--data", demo["source"], "--config", demo["config"]]) == 0
    assert "pipeline diagnostic: PASS" in capsys.readouterr().out
    out = tmp_path / "report.json"
    assert _run(["activity", "diagnose", "--data", demo["mismatch"]["wrong_units"], "--config", demo["config"],
                 "--json", "--out", str(out)]) == 1
    printed = json.loads(capsys.readouterr().out)
    assert printed["status"] == "fail" and "accel_units" in printed["failed"]
    assert json.loads(out.read_text())["failed"] == printed["failed"] and out.with_suffix(".txt").exists()
    # a scaler with 5 entries in the config is a typed error (the main CLI prints it, exit 2)
    cfg = json.loads(Path(demo["config"]).read_text())
    cfg["scaler_mean"] = cfg["scaler_mean"][:5]
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps(cfg))
    with pytest.raises(InputFormatError, match="5 entries"):
        _run(["activity", "diagnose", "--data", demo["source"], "--config", str(bad)])
    assert _run(["activity", "info", "--size", "seed"]) == 0
    assert "499,131" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# shift check (probabilities given directly: no TensorFlow here)


def _proba(pred: np.ndarray, conf: float, k: int = 11) -> np.ndarray:
    p = np.full((len(pred), k), (1 - conf) / (k - 1))
    p[np.arange(len(pred)), pred] = conf
    return p


def test_shift_verdicts(demo):
    cfg = read_training_config(demo["config"])
    src = load_windows(demo["source"], read_pipeline(Path(demo["source"]) / "pipeline.json"), cfg)
    gar = load_windows(demo["garmin"], read_pipeline(Path(demo["garmin"]) / "pipeline.json"), cfg)
    ref_proba = _proba(src.y, 0.9)
    # Garmin: the model piles onto two classes with low confidence, accuracy near chance
    rng = np.random.default_rng(0)
    cur_pred = np.where(rng.random(len(gar)) < 0.6, 4, 9)
    report = shift_check(src.x, gar.x, ref_proba, _proba(cur_pred, 0.45), diagnostic=diagnose(demo["garmin"], cfg),
                         reference_y=src.y, current_y=gar.y)
    assert report.verdict == DOMAIN_SHIFT
    text = " | ".join(report.evidence)
    assert "prediction collapse" in text and "hand_tapping" in text and "smoking" in text
    assert "mean confidence 0.45" in text and "accuracy" in text
    assert report.drifted_channels and all(report.psi[c] >= 0.2 for c in report.drifted_channels)
    # the source against itself (alternate windows, same people): no shift
    a, b = slice(0, None, 2), slice(1, None, 2)
    same = shift_check(src.x[a], src.x[b], ref_proba[a], ref_proba[b], reference_y=src.y[a], current_y=src.y[b])
    assert same.verdict == NO_SHIFT and "no channel reached PSI" in same.evidence[0], same.evidence
    # a failed diagnostic short-circuits: the shift cannot be judged on mis-processed data
    bug = shift_check(src.x, gar.x, ref_proba, ref_proba, diagnostic={"failed": ["accel_units"]})
    assert bug.verdict == PIPELINE_BUG and bug.failed_checks == ["accel_units"]
    assert json.dumps(report.to_dict())


def test_cli_synth_and_shift_on_a_pipeline_bug(demo, tmp_path, capsys):
    assert _run(["activity", "synth", "--out", str(tmp_path / "demo"), "--source-persons", "2",
                 "--garmin-persons", "2", "--no-mismatches"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert Path(printed["config"]).exists() and sorted(Path(printed["garmin"]).glob("*.csv"))
    # a pipeline bug is judged before any model is loaded: exit 1, verdict "pipeline bug"
    code = _run(["activity", "shift", "--model", str(tmp_path / "none.keras"), "--source", demo["source"],
                 "--data", demo["mismatch"]["wrong_rate"], "--config", demo["config"], "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["verdict"] == "pipeline bug" and out["failed_checks"] == ["measured_rate"]
