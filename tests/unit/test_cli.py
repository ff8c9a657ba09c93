"""The biotune command, in-process: each subcommand does what the README says."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from biotune.cli import main


def test_spec_check_and_pat_info(capsys):
    assert main(["spec", "check"]) == 0
    assert "mood-depression-xgb" in capsys.readouterr().out
    assert main(["pat", "info", "--size", "M"]) == 0
    assert "1,005,985" in capsys.readouterr().out


def test_registry_list_empty_and_rollback_error(home, capsys):
    assert main(["registry", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["registry", "rollback", "mood-depression-xgb"]) == 2
    assert "no champion" in capsys.readouterr().err


def test_synth_cohort_and_validate(tmp_path, capsys):
    src = tmp_path / "nhanes"
    assert main(["synth", "nhanes", "--participants", "30", "--seed", "1", "--out", str(src)]) == 0
    assert (src / "PAXMIN_H.XPT").exists() and "PAXMIN_H" in capsys.readouterr().out
    out = tmp_path / "cohort.parquet"
    assert main(["nhanes", "cohort", "--source", str(src), "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_included"] + sum(report["excluded"].values()) == report["n_candidates"]
    assert main(["validate", str(src / "DPQ_H.XPT"), "--suite", "nhanes_dpq", "--reader", "xpt"]) == 0
    assert json.loads(capsys.readouterr().out)["success"] is True


def test_missing_nhanes_file_is_a_clear_error(tmp_path, capsys):
    assert main(["nhanes", "cohort", "--source", str(tmp_path), "--out", str(tmp_path / "c.parquet")]) == 2
    err = capsys.readouterr().err
    assert "PAXMIN_H.XPT" in err and "fix:" in err


def test_drift_psi_json(tmp_path, capsys):
    rng = np.random.default_rng(0)
    pd.DataFrame({"a": rng.normal(size=2000), "b": rng.normal(size=2000)}).to_parquet(tmp_path / "ref.parquet")
    pd.DataFrame({"a": rng.normal(size=2000), "b": rng.normal(2, 1, size=2000)}).to_parquet(tmp_path / "cur.parquet")
    assert main(["drift", "psi", "--reference", str(tmp_path / "ref.parquet"), "--current",
                 str(tmp_path / "cur.parquet"), "--method", "evidently", "--json"]) == 0
    values = json.loads(capsys.readouterr().out)
    assert values["a"] < 0.1 and values["b"] > 1.0


def test_drift_history_empty(home, capsys):
    assert main(["drift", "history"]) == 0
    assert "no drift measured yet" in capsys.readouterr().out
