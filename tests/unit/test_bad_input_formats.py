"""Bad input class: a file in another format than the reader, or a column of the wrong type
(issue 10, items 11, 12, 15).

Each must give a typed error saying what and how to fix it, never a raw traceback: an XPORT
file validated as parquet, parquet cut short, text where numbers belong (SEQN as text keeps
the Great Expectations reason), a drift input that is missing or not parquet, and bool columns
in Evidently-mode PSI (categorical, compared as labels).
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pyreadstat
import pytest

from biotune import drift, validation
from biotune.errors import InputFormatError, MissingInputError
from biotune.mood import cohort
from biotune.synthetic import nhanes as synth


@pytest.fixture(scope="module")
def nhanes_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("nhanes_formats")
    synth.write_nhanes(out, participants=8, seed=4)
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory, nhanes_dir):
    d = tmp_path_factory.mktemp("formats")
    pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]}).to_parquet(d / "good.parquet")
    whole = (d / "good.parquet").read_bytes()
    (d / "cut.parquet").write_bytes(whole[: len(whole) // 2])
    (d / "table.csv").write_text("a,b\n1,x\n2,y\n")
    (d / "broken.csv").write_bytes(b'a,b\n1,"unterminated\n')
    (d / "bad.jsonl").write_text('{"a": 1}\n{not json}\n')
    (d / "empty.parquet").write_bytes(b"")
    shutil.copy(nhanes_dir / "DEMO_H.XPT", d / "DEMO_H.XPT")
    shutil.copy(nhanes_dir / "DEMO_H.XPT", d / "demo.parquet")  # an XPORT file with the wrong extension
    return d


@pytest.mark.parametrize("name,reader,expected", [
    ("DEMO_H.XPT", "parquet", "is a SAS XPORT file, but it was to be read as parquet"),
    ("demo.parquet", "parquet", "is a SAS XPORT file"),
    ("DEMO_H.XPT", "csv", "is a SAS XPORT file"),
    ("good.parquet", "xpt", "is a Parquet file, but it was to be read as xpt"),
    ("table.csv", "xpt", "is not a SAS XPORT file"),
    ("table.csv", "parquet", "is not a Parquet file"),
    ("cut.parquet", "parquet", "a Parquet file cut short"),
    ("empty.parquet", "parquet", "is not a Parquet file"),
    ("broken.csv", "csv", "cannot read broken.csv as csv"),
    ("bad.jsonl", "jsonl", "cannot read bad.jsonl as jsonl"),
    ("good.parquet", "excel", "unknown reader"),
])
def test_wrong_or_damaged_format_is_an_input_format_error(files, name, reader, expected):
    with pytest.raises(InputFormatError, match=expected) as err:
        validation.read_frame(str(files / name), reader)
    assert err.value.fix and err.value.bad_input
    if "XPORT file" in expected and "not a" not in expected:
        assert "--reader xpt" in err.value.fix


def test_validate_file_quarantines_a_file_it_cannot_read(home, files):
    from biotune import storage

    landed = storage.lake_path("landing", "demo", "DEMO_H.XPT")
    storage.write_bytes(landed, (files / "DEMO_H.XPT").read_bytes())
    with pytest.raises(InputFormatError, match="--reader xpt") as err:
        validation.validate_file(landed, "nhanes_demo", "parquet", run_id="r")
    assert "moved to" in err.value.fix and not storage.exists(landed)


@pytest.mark.parametrize("values", [["73557", "73558", "x"], ["seqn-1", "seqn-2", "seqn-3"], ["73557", "", "73559"]])
def test_seqn_as_text_fails_validation_with_the_reason(tmp_path, nhanes_dir, values):
    hd, _ = pyreadstat.read_xport(str(nhanes_dir / "PAXHD_H.XPT"))
    hd = hd.head(3).assign(SEQN=values)
    path = tmp_path / "PAXHD_H.XPT"
    pyreadstat.write_xport(hd, str(path), table_name="PAXHD_H", file_format_version=5)
    outcome = validation.validate_file(str(path), "nhanes_paxhd", "xpt", quarantine=False,
                                       report_dir=str(tmp_path / "r"))
    assert not outcome.success
    seqn = [f for f in outcome.failures if f.startswith("column SEQN: expect_column_values_to_be_between")]
    assert seqn and "could not be evaluated" in seqn[0] and "text where numbers are expected" in seqn[0]


def test_seqn_as_text_in_the_cohort_is_a_typed_error(tmp_path, nhanes_dir):
    src = tmp_path / "src"
    shutil.copytree(nhanes_dir, src)
    dpq, _ = pyreadstat.read_xport(str(src / "DPQ_H.XPT"))
    dpq["SEQN"] = dpq["SEQN"].map(lambda v: f"{int(v)}")
    dpq.loc[2, "SEQN"] = "n/a"
    pyreadstat.write_xport(dpq, str(src / "DPQ_H.XPT"), table_name="DPQ_H", file_format_version=5)
    with pytest.raises(InputFormatError, match="column SEQN holds text") as err:
        cohort.build_cohort(src, tmp_path / "c.parquet", workers=1)
    assert "'n/a'" in str(err.value) and "DPQ_H.XPT" in err.value.where


@pytest.mark.parametrize("name,cls,expected", [
    ("nothing_here.parquet", MissingInputError, "no file at"),
    ("DEMO_H.XPT", InputFormatError, "is a SAS XPORT file"),
    ("table.csv", InputFormatError, "is not parquet"),
    ("cut.parquet", InputFormatError, "cut short"),
    (".", InputFormatError, "is a directory"),
])
def test_drift_inputs_that_are_missing_or_not_parquet(files, name, cls, expected):
    with pytest.raises(cls, match=expected):
        drift.read_frame(str(files / name), "reference")


def test_drift_reads_a_good_file(files):
    assert drift.read_frame(str(files / "good.parquet")).shape == (2, 2)


@pytest.mark.parametrize("dtype", ["bool", "boolean"])
def test_bool_columns_are_categorical_in_evidently_mode(tmp_path, dtype):
    rng = np.random.default_rng(1)
    ref = pd.DataFrame({"flag": pd.array(rng.random(4000) < 0.3, dtype=dtype), "x": rng.normal(size=4000)})
    cur = pd.DataFrame({"flag": pd.array(rng.random(3000) < 0.5, dtype=dtype), "x": rng.normal(size=3000)})
    if dtype == "boolean":
        ref.loc[::9, "flag"] = pd.NA
    ref.to_parquet(tmp_path / "ref.parquet")
    cur.to_parquet(tmp_path / "cur.parquet")
    r, c = drift.read_frame(tmp_path / "ref.parquet"), drift.read_frame(tmp_path / "cur.parquet")
    res = drift.psi_result(r, c, method="evidently")
    assert res.kinds["flag"] == "categorical"
    labels = drift.psi_categorical(r["flag"].dropna().map(str), c["flag"].dropna().map(str), method="evidently")
    assert res.psi["flag"] == pytest.approx(labels, rel=1e-12) and res.psi["flag"] > 0.1
    assert drift.psi_result(r, c, method="quantile").psi["flag"] > 0.1
