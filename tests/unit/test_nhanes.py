"""NHANES XPORT writer/reader: layout, decoding, typed errors, expectation suites."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest

from biotune.errors import InputFormatError, MissingInputError
from biotune.mood import nhanes
from biotune.synthetic import nhanes as synth

EXPECTATIONS = Path(__file__).resolve().parents[2] / "expectations" / "mood"


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("nhanes20")
    return synth.write_nhanes(out, participants=20, seed=3)


def test_ibm_round_trip_and_missing():
    x = np.array([0.0, 1.0, -1.0, 0.5, -0.01, 73557.0, 123456789.123, 1e-5, 4800.0 * 11579, np.nan])
    back = nhanes.ibm_to_ieee(synth.ieee_to_ibm(x).astype(">u8"))
    assert np.array_equal(back, x, equal_nan=True)


def test_stream_writer_is_byte_identical_to_pyreadstat(tmp_path):
    df = pd.DataFrame({"SEQN": [73557.0, 73557.0, np.nan, 73558.0], "PAXPREDM": ["1", "2", "", "4"],
                       "PAXMTSM": [-0.01, 0.0, 12.345, 1e6], "PAXFLGSM": ["", "AB", "A", ""]})
    ref = tmp_path / "ref.xpt"
    pyreadstat.write_xport(df, str(ref), table_name="PAXMIN_H", file_format_version=5)
    cols = [synth.XptColumn("SEQN", "num"), synth.XptColumn("PAXPREDM", "char", 1),
            synth.XptColumn("PAXMTSM", "num"), synth.XptColumn("PAXFLGSM", "char", 2)]
    mine = tmp_path / "mine.xpt"
    with synth.XportStreamWriter(mine, cols, "PAXMIN_H") as w:
        w.write({c: df[c].to_numpy() for c in ["SEQN", "PAXPREDM"] + ["PAXMTSM", "PAXFLGSM"]})
    a, b = ref.read_bytes(), mine.read_bytes()
    stamp = re.compile(rb"\d\d[A-Z]{3}\d\d:\d\d:\d\d:\d\d")
    assert len(a) == len(b)
    assert stamp.sub(b"T" * 16, a) == stamp.sub(b"T" * 16, b)
    back, _ = pyreadstat.read_xport(str(mine))
    pd.testing.assert_frame_equal(back, df, check_dtype=False)


def test_synthetic_files_follow_the_codebook_layout(small_set):
    assert set(small_set) == {"PAXHD_H", "PAXDAY_H", "PAXMIN_H", "DPQ_H", "RXQ_RX_H", "RXQ_DRUG", "DEMO_H"}
    lay = nhanes.xpt_layout(small_set["PAXMIN_H"])
    kinds = {v.name: (v.kind, v.width) for v in lay.variables}
    assert kinds["SEQN"] == ("num", 8) and kinds["PAXSSNMP"] == ("num", 8) and kinds["PAXMTSM"] == ("num", 8)
    assert kinds["PAXPREDM"][0] == "char"
    assert lay.table_name == "PAXMIN_H"
    hd = nhanes.read_table(small_set["PAXHD_H"])
    assert hd["PAXFTIME"].dtype == object and hd.loc[hd.PAXSTS == 1, "PAXFTIME"].str.match(r"^\d\d:\d\d:\d\d$").all()
    mins = nhanes.read_paxmin(small_set["PAXMIN_H"], workers=1)
    assert len(mins) == lay.n_rows
    assert (mins["PAXSSNMP"] % 4800 == 0).all()
    assert set(np.unique(mins["PAXPREDM"])) <= {1, 2, 3, 4} and (mins["PAXPREDM"] == 3).any()
    assert mins["PAXMTSM"].isna().any()  # -0.01 planted -> NaN
    per = mins.groupby("SEQN").size()
    assert per.max() <= 194 * 60
    dpq = nhanes.read_table(small_set["DPQ_H"])
    assert set(np.unique(dpq[[f"DPQ0{i}0" for i in range(1, 10)]].stack())) <= {0, 1, 2, 3, 7, 9}
    drug = nhanes.read_table(small_set["RXQ_DRUG"])
    assert drug[[c for c in drug.columns if c.startswith("RXDDCI")]].isin([69]).any(axis=None)
    assert drug[[c for c in drug.columns if c.startswith("RXDDCI")]].isin([208]).any(axis=None)
    # pandas reads the streamed file too
    pdf = pd.read_sas(small_set["PAXMIN_H"], format="xport")
    assert len(pdf) == lay.n_rows
    # (pandas decodes an IBM zero as 5.4e-79, a known quirk of its XPORT reader)
    assert np.allclose(pdf["PAXSSNMP"].to_numpy(), mins["PAXSSNMP"].to_numpy().astype(float), rtol=0, atol=1e-70)


def test_numpy_and_pyreadstat_engines_agree(small_set):
    cols = ["SEQN", "PAXSSNMP", "PAXMTSM", "PAXPREDM", "PAXLXMM", "PAXFLGSM"]
    a = nhanes.read_paxmin(small_set["PAXMIN_H"], cols, workers=1, chunksize=50_000)
    b = nhanes.read_paxmin(small_set["PAXMIN_H"], cols, workers=1, chunksize=50_000, engine="pyreadstat")
    for c in a.columns:
        assert np.array_equal(a[c].to_numpy(), b[c].to_numpy(), equal_nan=True), c


def test_parallel_read_equals_serial(small_set):
    a = nhanes.read_paxmin(small_set["PAXMIN_H"], workers=1, chunksize=30_000)
    b = nhanes.read_paxmin(small_set["PAXMIN_H"], workers=2, chunksize=30_000)
    pd.testing.assert_frame_equal(a, b)


# --- bad inputs ---------------------------------------------------------------------------

def test_truncated_file_is_an_input_format_error(small_set, tmp_path):
    raw = Path(small_set["DPQ_H"]).read_bytes()
    bad = tmp_path / "DPQ_H.XPT"
    bad.write_bytes(raw[:-37])
    with pytest.raises(InputFormatError) as err:
        nhanes.read_table(bad)
    msg = str(err.value)
    assert "DPQ_H.XPT" in msg and "not a valid SAS XPORT" in msg and "re-download" in msg
    bad.write_bytes(raw[:300])  # header cut
    with pytest.raises(InputFormatError):
        nhanes.xpt_layout(bad)


def test_text_file_renamed_xpt(tmp_path):
    bad = tmp_path / "PAXMIN_H.XPT"
    bad.write_text("SEQN,PAXMTSM\n73557,1.0\n")
    with pytest.raises(InputFormatError) as err:
        nhanes.xpt_layout(bad)
    assert "PAXMIN_H.XPT" in str(err.value) and "CDC" in str(err.value)
    with pytest.raises(InputFormatError):
        nhanes.read_table(bad)


def test_missing_file_lists_expected_names(small_set, tmp_path):
    for k, p in small_set.items():
        if k != "DPQ_H":
            (tmp_path / Path(p).name.lower()).write_bytes(Path(p).read_bytes())  # lower-case names work
    with pytest.raises(MissingInputError) as err:
        nhanes.find_nhanes_files(tmp_path)
    msg = str(err.value)
    assert "DPQ_H.XPT" in msg and "PAXMIN_H.XPT" in msg and "RXQ_DRUG.XPT" in msg
    with pytest.raises(MissingInputError):
        nhanes.find_nhanes_files(tmp_path / "nope")


def test_missing_column_names_file_and_column(tmp_path):
    p = tmp_path / "PAXMIN_H.XPT"
    pyreadstat.write_xport(pd.DataFrame({"SEQN": [1.0], "PAXSSNMP": [0.0], "PAXMTSM": [1.0]}), str(p),
                           table_name="PAXMIN_H", file_format_version=5)
    with pytest.raises(MissingInputError) as err:
        nhanes.read_paxmin(p)
    assert "PAXMIN_H.XPT" in str(err.value) and "PAXPREDM" in str(err.value)
    with pytest.raises(MissingInputError):
        nhanes.read_table(p, ["SEQN", "DPQ010"])


def test_duplicate_seqn_named(tmp_path):
    p = tmp_path / "DPQ_H.XPT"
    pyreadstat.write_xport(pd.DataFrame({"SEQN": [73557.0, 73558.0, 73558.0, 73560.0, 73560.0]}), str(p),
                           table_name="DPQ_H", file_format_version=5)
    df = nhanes.read_table(p)
    with pytest.raises(InputFormatError) as err:
        nhanes.check_unique(df, p)
    assert "73558" in str(err.value) and "73560" in str(err.value) and "DPQ_H.XPT" in str(err.value)


# --- expectation suites -------------------------------------------------------------------

SUITES = ["nhanes_paxhd", "nhanes_paxmin", "nhanes_dpq", "nhanes_rxq_rx", "nhanes_rxq_drug", "nhanes_demo",
          "mood_cohort"]


@pytest.mark.parametrize("name", SUITES)
def test_expectation_suite_parses_and_types_exist(name):
    import great_expectations.expectations as gxe

    suite = json.loads((EXPECTATIONS / f"{name}.json").read_text())
    assert suite["name"] == name and suite["expectations"] and "dataset" in suite["meta"]
    for exp in suite["expectations"]:
        cls_name = "".join(part.capitalize() for part in exp["type"].split("_"))
        cls = getattr(gxe, cls_name, None)
        assert cls is not None, exp["type"]
        cls(**exp["kwargs"])  # kwargs validate against the GX model
