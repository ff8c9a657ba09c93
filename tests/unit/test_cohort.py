"""NHANES files -> cohort parquet: clock placement, labels, exclusions, round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pyreadstat
import pytest

from biotune.errors import InputFormatError, MissingInputError
from biotune.mood import cohort as C
from biotune.synthetic import nhanes as synth


def _xpt(df: pd.DataFrame, path: Path, table: str) -> None:
    pyreadstat.write_xport(df, str(path), table_name=table, file_format_version=5)


def _minutes(seqn: int, n: int, predm, numeric_codes: bool, nonwear: slice | None = None) -> pd.DataFrame:
    k = np.arange(n)
    state = np.full(n, predm)
    if nonwear is not None:
        state[nonwear] = 3
    act = k.astype(float)  # activity value = minute number, so placement is checkable
    return pd.DataFrame({
        "SEQN": float(seqn), "PAXSSNMP": k * 4800.0, "PAXMTSM": act,
        "PAXPREDM": state.astype(float) if numeric_codes else state.astype(str)})


def _hand_set(tmp: Path, numeric_codes: bool = False, shuffle: bool = False) -> Path:
    """5 people: A placed exactly, B too little wear, C all non-wear, D no actigraphy, E no DPQ."""
    a = _minutes(1, 193 * 60, 1, numeric_codes)
    a.loc[700, "PAXMTSM"] = -0.01  # not computable -> NaN
    a.loc[800:859, "PAXPREDM"] = 2.0 if numeric_codes else "2"
    b = _minutes(2, 2 * 1440, 1, numeric_codes)
    c = _minutes(3, 8 * 1440, 3, numeric_codes)
    e = _minutes(5, 8 * 1440, 1, numeric_codes)
    mins = pd.concat([a, b, c, e], ignore_index=True)
    if shuffle:  # rows of one SEQN not contiguous: A, B interleaved
        mins = mins.sample(frac=1.0, random_state=0).reset_index(drop=True)
    _xpt(mins, tmp / "PAXMIN_H.XPT", "PAXMIN_H")
    _xpt(pd.DataFrame({"SEQN": [1.0, 2.0, 3.0, 4.0, 5.0], "PAXSTS": [1.0, 1.0, 1.0, 2.0, 1.0],
                       "PAXFTIME": ["13:37:00", "21:30:00", "09:11:00", "", " 9:11:00"]}),
         tmp / "PAXHD_H.XPT", "PAXHD_H")
    items = {f"DPQ0{i}0": [2.0, 0.0, 1.0, 0.0] for i in range(1, 10)}
    items["DPQ090"] = [2.0, 9.0, 1.0, 0.0]
    _xpt(pd.DataFrame({"SEQN": [1.0, 2.0, 3.0, 4.0], **items}), tmp / "DPQ_H.XPT", "DPQ_H")
    _xpt(pd.DataFrame({"SEQN": [1.0, 1.0, 2.0], "RXDUSE": [1.0, 1.0, 2.0],
                       "RXDDRGID": ["d00197", "d00732", ""]}), tmp / "RXQ_RX_H.XPT", "RXQ_RX_H")
    _xpt(synth._rx_drug(), tmp / "RXQ_DRUG.XPT", "RXQ_DRUG")
    return tmp


@pytest.mark.parametrize("numeric_codes", [False, True])
def test_clock_time_placement_is_exact(tmp_path, numeric_codes):
    src = _hand_set(tmp_path, numeric_codes)
    rep = C.build_cohort(src, tmp_path / "out" / "cohort.parquet", workers=1)
    frame, act, state = C.load_cohort_arrays(rep.out_path)
    assert list(frame["SEQN"]) == [1]
    # A starts 13:37 (minute 817 of day 1); day 1 is partial, so the best week is days 2-8 and
    # column 0 (midnight of day 2) is recording minute 1440 - 817 = 623.
    first = 1440 - 817
    expected = np.arange(first, first + 10080, dtype=np.float32)
    expected[700 - first] = np.nan
    assert act.shape == (1, 10080) and state.shape == (1, 10080)
    assert np.array_equal(act[0], expected, equal_nan=True)
    assert np.isnan(act[0, 700 - first])
    assert state[0, 800 - first] == 2 and state[0, 859 - first] == 2 and state[0, 860 - first] == 1
    assert frame.loc[0, "wear_days"] == 7
    assert frame.loc[0, "phq9_total"] == 18.0 and frame.loc[0, "depression"] == 1
    assert frame.loc[0, "benzodiazepine"] == 1 and frame.loc[0, "ssri"] == 0  # clonazepam: 69 in 2nd category
    assert rep.excluded == {"no_actigraphy": 1, "no_start_time": 0, "all_non_wear": 1,
                            "too_little_wear": 1, "no_phq9": 1}
    assert rep.n_candidates == 5 and rep.n_included == 1


def test_unsorted_rows_fall_back_to_one_worker(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ref = C.build_cohort(_hand_set(tmp_path / "a"), tmp_path / "a.parquet", workers=2, chunksize=5000)
    rep = C.build_cohort(_hand_set(tmp_path / "b", shuffle=True), tmp_path / "b.parquet", workers=2, chunksize=5000)
    assert rep.notes and "not grouped by SEQN" in rep.notes[0]
    _, a1, s1 = C.load_cohort_arrays(ref.out_path)
    _, a2, s2 = C.load_cohort_arrays(rep.out_path)
    assert np.array_equal(a1, a2, equal_nan=True) and np.array_equal(s1, s2)
    assert rep.excluded == ref.excluded


def test_phq9_scoring_with_7_and_9():
    rows = [[0] * 9, [2] * 9, [1] * 9 + [], [3, 3, 3, 1, 0, 0, 0, 0, 0], [1] * 8 + [7], [1] * 8 + [9],
            [1] * 8 + [np.nan]]
    dpq = pd.DataFrame(rows, columns=[f"DPQ0{i}0" for i in range(1, 10)], dtype=float)
    dpq.insert(0, "SEQN", np.arange(len(rows), dtype=float) + 1)
    out = C.phq9_scores(dpq)
    assert out["phq9_total"].tolist()[:4] == [0.0, 18.0, 9.0, 10.0]
    assert out["phq9_total"].iloc[4:].isna().all()
    assert out["depression"].tolist()[:4] == [0, 1, 0, 1]
    assert out["depression"].iloc[4:].isna().all() and str(out["depression"].dtype) == "Int8"


def test_drug_join_with_multi_drug_people():
    drug = synth._rx_drug()
    rx = pd.DataFrame({
        "SEQN": [1, 1, 2, 2, 2, 3, 3, 5],
        "RXDDRGID": ["d00168", "d00732", " D00880 ", "d00197", "d04105", "d00395", "d00181", ""],
    })
    out = C.drug_flags(rx, drug, np.array([1, 2, 3, 4, 5])).set_index("SEQN")
    assert out["benzodiazepine"].tolist() == [1, 1, 0, 0, 0]  # alprazolam; clonazepam (cat 2)
    assert out["ssri"].tolist() == [0, 1, 0, 0, 0]  # sertraline; trazodone/bupropion are not SSRIs
    assert str(out["ssri"].dtype) == "Int8"


def test_parse_clock():
    assert C.parse_clock("13:37:00") == 13 * 3600 + 37 * 60
    assert C.parse_clock(" 9:11:30") == 9 * 3600 + 11 * 60 + 30
    assert np.isnan(C.parse_clock("")) and np.isnan(C.parse_clock("25:00:00")) and np.isnan(C.parse_clock(None))


def test_round_trip_synthetic_40(tmp_path):
    src = tmp_path / "src"
    synth.write_nhanes(src, participants=40, seed=11)
    out = tmp_path / "cohort.parquet"
    seen = []
    rep = C.build_cohort(src, out, workers=2, progress=seen.append)
    assert seen and seen[-1] == "cohort done" and any("PAXMIN_H" in m for m in seen)
    assert rep.n_included + sum(rep.excluded.values()) == rep.n_candidates == 40
    assert rep.excluded["no_actigraphy"] >= 1 and rep.n_included >= 20
    report = json.loads(Path(str(out) + ".report.json").read_text())
    assert report["n_included"] == rep.n_included and report["excluded"] == rep.excluded
    assert not list(out.parent.glob(".*tmp"))  # atomic writes leave no temp files
    schema = pq.read_schema(out)
    assert str(schema.field("activity").type) == "list<element: float>"
    assert str(schema.field("state").type) == "list<element: int8>"
    assert str(schema.field("SEQN").type) == "int64"
    frame, act, state = C.load_cohort_arrays(out)
    assert act.dtype == np.float32 and state.dtype == np.int8 and act.shape == (rep.n_included, 10080)
    assert (frame["wear_days"] >= 4).all() and frame["SEQN"].is_unique
    truth = synth.latent_profiles(40, 11).set_index("SEQN").loc[frame["SEQN"]]
    known = frame["depression"].notna().to_numpy()
    assert (frame["depression"][known].astype(int).to_numpy() == truth["depressed"].to_numpy()[known]).all()
    assert (frame["benzodiazepine"].astype(int).to_numpy() == truth["benzo"].to_numpy()).all()
    assert (frame["ssri"].astype(int).to_numpy() == truth["ssri"].to_numpy()).all()
    # serial and parallel builds agree
    rep1 = C.build_cohort(src, tmp_path / "c1.parquet", workers=1, chunksize=7000)
    f1, a1, s1 = C.load_cohort_arrays(rep1.out_path)
    assert np.array_equal(act, a1, equal_nan=True) and np.array_equal(state, s1)
    pd.testing.assert_frame_equal(frame, f1)


def test_build_cohort_bad_inputs(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _hand_set(src)
    (src / "RXQ_DRUG.XPT").unlink()
    with pytest.raises(MissingInputError) as err:
        C.build_cohort(src, tmp_path / "x.parquet")
    assert "RXQ_DRUG.XPT" in str(err.value)
    _xpt(synth._rx_drug(), src / "RXQ_DRUG.XPT", "RXQ_DRUG")
    raw = (src / "PAXMIN_H.XPT").read_bytes()
    (src / "PAXMIN_H.XPT").write_bytes(raw[: len(raw) - 1000])
    with pytest.raises(InputFormatError) as err:
        C.build_cohort(src, tmp_path / "x.parquet")
    assert "PAXMIN_H.XPT" in str(err.value)
    (src / "PAXMIN_H.XPT").write_bytes(raw)
    _xpt(pd.DataFrame({"SEQN": [1.0, 1.0], "PAXFTIME": ["13:37:00", "13:38:00"]}), src / "PAXHD_H.XPT", "PAXHD_H")
    with pytest.raises(InputFormatError) as err:
        C.build_cohort(src, tmp_path / "x.parquet")
    assert "PAXHD_H.XPT" in str(err.value) and "1" in str(err.value)
    assert not (tmp_path / "x.parquet").exists()
