"""Bad input class: non-finite and absurd numbers (issue 10, item 2).

``inf``, ``-inf``, ``1e30`` and ``±1e308`` must fail validation wherever they sit: in a column a
suite bounds on one side only, in a column no suite mentions, in a list column, or in the last
rows of a 9 GB minute file (validated whole, in chunks). Drift on such values is a typed error.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from biotune import drift, storage, validation
from biotune.errors import DataValidationError, DriftError
from biotune.mood import nhanes, scoring
from biotune.synthetic import nhanes as synth
from biotune.synthetic.batches import day_batch, write_batch

BAD = [np.inf, -np.inf, 1e30, -1e308]


@pytest.fixture(scope="module")
def paxmin(tmp_path_factory):
    out = tmp_path_factory.mktemp("nhanes_nonfinite")
    return synth.write_nhanes(out, participants=12, seed=9)["PAXMIN_H"]


def _patch_value(path, row: int, column: str, value: float) -> None:
    """Overwrite one numeric cell of an XPORT file in place (IBM float, as SAS writes it)."""
    lay = nhanes.xpt_layout(path)
    var = lay.by_name[column]
    with open(path, "r+b") as fh:
        fh.seek(lay.data_offset + row * lay.row_length + var.offset)
        fh.write(synth.ieee_to_ibm(np.array([value])).astype(">u8").tobytes())


@pytest.mark.parametrize("value", [1e30, 1e17])
def test_absurd_minute_value_beyond_any_sample_fails_whole_file_validation(paxmin, tmp_path, value):
    bad = tmp_path / "PAXMIN_H.XPT"
    shutil.copy(paxmin, bad)
    last = nhanes.xpt_layout(bad).n_rows - 1
    _patch_value(bad, last, "PAXLXSDM", value)  # a column the suite does not bound at all
    _patch_value(bad, last - 1, "PAXMTSM", value)
    outcome = validation.validate_file(str(bad), "nhanes_paxmin", "xpt", quarantine=False, chunk_rows=60_000,
                                       report_dir=str(tmp_path / "r"))
    assert not outcome.success and outcome.chunks > 1 and outcome.rows == last + 1
    text = " | ".join(outcome.failures)
    assert "column PAXLXSDM: values must be finite" in text and f"row(s) [{last}]" in text
    assert "column PAXMTSM" in text


def test_the_whole_file_is_validated_with_quarantine(paxmin, tmp_path, home):
    landed = storage.lake_path("landing", "nhanes", "PAXMIN_H.XPT")
    storage.write_bytes(landed, paxmin.read_bytes())
    _patch_value(landed, nhanes.xpt_layout(landed).n_rows - 1, "PAXMTSM", 5000.0)
    with pytest.raises(DataValidationError) as err:
        validation.validate_file(landed, "nhanes_paxmin", "xpt", run_id="r1", chunk_rows=60_000)
    assert "PAXMTSM" in str(err.value) and "moved to" in err.value.fix
    assert not storage.exists(landed)


@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize("suite,column,frame", [
    ("nhanes_demo", "RIDAGEYR", {"SEQN": [73557.0, 73558.0], "RIAGENDR": [1.0, 2.0], "RIDAGEYR": [40.0, 50.0]}),
    ("nhanes_demo", "WTMEC2YR", {"SEQN": [73557.0, 73558.0], "RIAGENDR": [1.0, 2.0], "RIDAGEYR": [40.0, 50.0],
                                 "WTMEC2YR": [12000.5, 9000.25]}),  # no expectation mentions it
])
def test_non_finite_in_any_float_column_fails(tmp_path, suite, column, frame, value):
    df = pd.DataFrame(frame)
    df.loc[1, column] = value
    outcome = validation.run_suite(df, suite, where="inline")
    assert not outcome.success
    assert any(f.startswith(f"column {column}:") for f in outcome.failures), outcome.failures


def test_nan_stays_missing_not_absurd():
    df = pd.DataFrame({"SEQN": [73557.0, 73558.0], "RIAGENDR": [1.0, 2.0], "RIDAGEYR": [40.0, np.nan],
                       "WTMEC2YR": [np.nan, 1.0]})
    assert validation.run_suite(df, "nhanes_demo", where="inline").success


def test_suite_can_exempt_a_column_and_set_its_own_limit(tmp_path, monkeypatch):
    import json

    (tmp_path / "s.json").write_text(json.dumps({"name": "s", "expectations": [], "meta": {
        "allow_non_finite": ["odds"], "max_abs": 100}}))
    monkeypatch.setenv("BIOTUNE_EXPECTATIONS", str(tmp_path))
    ok = validation.run_suite(pd.DataFrame({"odds": [np.inf, 1.0], "x": [1.0, 99.0]}), "s", where="inline")
    assert ok.success
    bad = validation.run_suite(pd.DataFrame({"odds": [1.0], "x": [101.0]}), "s", where="inline")
    assert not bad.success and "±100" in bad.failures[0]


@pytest.mark.parametrize("value", BAD)
def test_list_columns_are_checked_too(value):
    week = np.zeros(10080, dtype=np.float32)
    week64 = week.astype(np.float64)
    week64[5000] = value
    frame = pd.DataFrame({"SEQN": [73557], "phq9_total": [3.0], "depression": [0], "benzodiazepine": [0],
                          "ssri": [0], "wear_days": [7], "activity": [week64], "state": [np.ones(10080, np.int8)]})
    outcome = validation.run_suite(frame, "mood_cohort", where="inline")
    assert not outcome.success and any("column activity" in f for f in outcome.failures)


def _batch(tmp_path, name: str, edit) -> str:
    path = storage.lake_path("landing", "mood", name, "batch.parquet")
    frame = day_batch(name, persons=5, seed=1)
    edit(frame)
    return write_batch(frame, path)


def test_absurd_activity_in_a_batch_fails_the_batch_suite(home, tmp_path):
    def edit(t):
        t.at[2, "activity"] = np.where(np.arange(10080) == 10, 1e30, t.at[2, "activity"])
    path = _batch(tmp_path, "2026-01-02", edit)
    outcome = validation.run_suite(scoring.validation_frame(path), "mood_batch", where=path)
    assert not outcome.success and any("activity_max" in f for f in outcome.failures)


def test_inf_in_a_summary_column_fails_whatever_the_suite_bounds():
    frame = pd.DataFrame({"person_id": ["a"], "activity_minutes": [10080.0], "activity_valid_fraction": [1.0],
                          "activity_mean": [1.0], "activity_min": [0.0], "activity_max": [np.inf],
                          "state_minutes": [10080.0], "state_bad_codes": [0.0], "state_worn_fraction": [0.9],
                          "depression": [np.nan], "benzodiazepine": [np.nan], "ssri": [np.nan]})
    outcome = validation.run_suite(frame, "mood_batch", where="inline")
    assert not outcome.success and any(f.startswith("column activity_max:") for f in outcome.failures)


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_inf_in_a_batch_fails_the_batch_suite(home, tmp_path, value):
    def edit(t):
        t.at[1, "activity"] = np.where(np.arange(10080) == 7, value, t.at[1, "activity"])
    path = _batch(tmp_path, "2026-01-03", edit)
    assert not validation.run_suite(scoring.validation_frame(path), "mood_batch", where=path).success


@pytest.mark.parametrize("low,high", [(-1e308, 1e308), (-np.finfo(float).max, np.finfo(float).max)])
def test_evidently_psi_on_values_float64_cannot_bin_is_a_drift_error(low, high):
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"x": np.r_[rng.normal(size=200), low, high], "y": rng.normal(size=202)})
    cur = pd.DataFrame({"x": rng.normal(size=100), "y": rng.normal(size=100)})
    with pytest.raises(DriftError, match="column 'x'.*float64") as err:
        drift.psi(ref, cur, method="evidently")
    assert err.value.bad_input and "quantile" in err.value.fix
    assert np.isfinite(drift.psi(ref, cur, method="quantile")).all()  # quantile mode bins by rank


def _counts(failures):
    import re

    out = {}
    for f in failures:
        m = re.match(r"(column \w+: \w+)\(.*?-> (\d+) unexpected \(([\d.]+)%\)", f)
        if m:
            out[m.group(1)] = (int(m.group(2)), float(m.group(3)))
    return out


@pytest.mark.parametrize("chunk", [7, 50, 1000])
def test_chunked_counts_equal_whole_frame_counts(tmp_path, monkeypatch, chunk):
    """The streamed path (GX on each chunk's distinct values, weighted) counts what GX counts on
    the whole frame, for every bad value of these classes, with and without ``mostly``."""
    import json

    rng = np.random.default_rng(chunk)
    n = 400
    df = pd.DataFrame({"SEQN": rng.integers(73557, 73600, n).astype(float),
                       "PAXPREDM": rng.choice(["1", "2", "3", "4", "X", ""], n, p=[.4, .3, .1, .1, .05, .05]),
                       "PAXMTSM": rng.gamma(1.0, 5.0, n).round(1), "PAXQFM": rng.choice([0.0, 1.0, 7.0], n)})
    df.loc[rng.choice(n, 9, replace=False), "PAXMTSM"] = np.nan
    df.loc[rng.choice(n, 5, replace=False), "PAXMTSM"] = 5000.0
    df.loc[rng.choice(n, 3, replace=False), "SEQN"] = np.nan
    (tmp_path / "t.json").write_text(json.dumps({"name": "t", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "SEQN"}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "PAXMTSM", "mostly": 0.99}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "PAXMTSM", "min_value": 0,
                                                                 "max_value": 2000}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "PAXQFM", "min_value": 0,
                                                                 "max_value": 1, "mostly": 0.5}},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "PAXPREDM",
                                                                "value_set": ["1", "2", "3", "4"]}},
        {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "PAXPREDM", "regex": "^[1-4]$",
                                                                  "mostly": 0.8}},
        {"type": "expect_column_pair_values_a_to_be_greater_than_b",
         "kwargs": {"column_A": "SEQN", "column_B": "PAXMTSM", "or_equal": True}},
        {"type": "expect_column_to_exist", "kwargs": {"column": "PAXQFM"}},
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}}]}))
    monkeypatch.setenv("BIOTUNE_EXPECTATIONS", str(tmp_path))
    whole = validation.run_suite(df, "t", where="inline")
    chunked = validation.run_suite_chunked((df.iloc[i:i + chunk] for i in range(0, n, chunk)), "t", where="inline")
    assert whole.success == chunked.success is False
    assert chunked.rows == n and chunked.chunks == -(-n // chunk)
    assert _counts(chunked.failures) == _counts(whole.failures) and len(_counts(whole.failures)) >= 3
    assert len(chunked.failures) == len(whole.failures)
