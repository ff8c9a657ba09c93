"""Bad input class: files that disagree with each other (issue 10, item 1).

A PAXMIN_H cut short on a record boundary passes every per-file suite; only the cross-file
checks (PAXHD_H says who has minutes, PAXDAY_H how many days) and the cohort's exclusion
guard can see it. Several cuts and edits of that class, each must fail naming the counts.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest

from biotune import validation
from biotune.errors import CohortError, ConsistencyError, DataValidationError
from biotune.mood import cohort, nhanes
from biotune.synthetic import nhanes as synth


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    out = tmp_path_factory.mktemp("nhanes_cut")
    synth.write_nhanes(out, participants=40, seed=5)
    return out


def _copy(source: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "src"
    shutil.copytree(source, dst)
    return dst


def _cut(path: Path, fraction: float) -> int:
    """Cut an XPORT file on a record boundary (whole rows, 80-byte records): it stays valid."""
    lay = nhanes.xpt_layout(path)
    step = 80 // math.gcd(80, lay.row_length)
    keep = int(lay.n_rows * fraction) // step * step
    with open(path, "r+b") as fh:
        fh.truncate(lay.data_offset + keep * lay.row_length)
    assert nhanes.xpt_layout(path).n_rows == keep  # still a well-formed file
    return keep


def _rewrite(path: Path, table: str, edit) -> None:
    df, _ = pyreadstat.read_xport(str(path))
    pyreadstat.write_xport(edit(df), str(path), table_name=table, file_format_version=5)


def test_intact_files_agree(source, tmp_path):
    outcome = nhanes.check_consistency(source, report_dir=str(tmp_path / "reports"))
    assert outcome.success and outcome.evaluated == 4
    assert Path(outcome.report_html).exists()


@pytest.mark.parametrize("fraction", [0.6, 0.25, 0.9])
def test_minute_file_cut_on_a_record_boundary_fails_with_counts(source, tmp_path, fraction):
    src = _copy(source, tmp_path)
    kept = _cut(src / "PAXMIN_H.XPT", fraction)
    with pytest.raises(ConsistencyError) as err:
        nhanes.check_consistency(src, report_dir=str(tmp_path / "reports"))
    text = str(err.value)
    assert "participants PAXHD_H marks PAXSTS 1" in text and "have none" in text
    assert f"after {kept:,} rows" in text and "cut short" in text
    assert "fewer days in PAXMIN_H than PAXDAY_H lists" in text
    assert err.value.bad_input and "re-download PAXMIN_H.XPT" in err.value.fix


def test_cut_inside_the_last_participant_is_caught_by_days(source, tmp_path):
    src = _copy(source, tmp_path)
    counts = nhanes.paxmin_counts(src / "PAXMIN_H.XPT")
    last_rows = int(counts["seqn_rows"][-1])
    lay = nhanes.xpt_layout(src / "PAXMIN_H.XPT")
    _cut(src / "PAXMIN_H.XPT", (lay.n_rows - last_rows // 2) / lay.n_rows)  # half of the last person left
    with pytest.raises(ConsistencyError) as err:
        nhanes.check_consistency(src, report_dir=str(tmp_path / "r"))
    assert f"SEQN {counts['last_seqn']}" in str(err.value)
    assert "PAXSTS 1" not in " ".join(err.value.failures)  # everyone still has some minutes


def test_minutes_for_someone_paxhd_does_not_list(source, tmp_path):
    src = _copy(source, tmp_path)
    hd, _ = pyreadstat.read_xport(str(src / "PAXHD_H.XPT"))
    dropped = int(hd.loc[hd.PAXSTS == 1, "SEQN"].iloc[3])
    _rewrite(src / "PAXHD_H.XPT", "PAXHD_H", lambda d: d[d.SEQN != dropped])
    with pytest.raises(ConsistencyError, match=f"does not list \\(e.g. SEQN {dropped}\\)"):
        nhanes.check_consistency(src, report_dir=str(tmp_path / "r"))


def test_paxsts_that_contradicts_the_minutes(source, tmp_path):
    src = _copy(source, tmp_path)
    hd, _ = pyreadstat.read_xport(str(src / "PAXHD_H.XPT"))
    with_minutes = int(hd.loc[hd.PAXSTS == 1, "SEQN"].iloc[0])
    without = hd.loc[hd.PAXSTS == 2, "SEQN"]
    _rewrite(src / "PAXHD_H.XPT", "PAXHD_H",
             lambda d: d.assign(PAXSTS=np.where(d.SEQN == with_minutes, 2.0,
                                                np.where(d.SEQN.isin(without), 1.0, d.PAXSTS))))
    with pytest.raises(ConsistencyError) as err:
        nhanes.check_consistency(src, report_dir=str(tmp_path / "r"))
    failures = " | ".join(err.value.failures)
    assert f"{len(without)} have none" in failures and f"SEQN {with_minutes}" in failures


@pytest.mark.parametrize("change", ["extra_day", "missing_day"])
def test_paxday_days_that_the_minutes_do_not_match(source, tmp_path, change):
    src = _copy(source, tmp_path)
    day, _ = pyreadstat.read_xport(str(src / "PAXDAY_H.XPT"))
    days = day.groupby("SEQN").size()
    who = int(days[days < 9].index[0])
    mine = day[day.SEQN == who]
    if change == "extra_day":
        extra = mine.tail(1).assign(PAXDAYD=str(len(mine) + 1))
        _rewrite(src / "PAXDAY_H.XPT", "PAXDAY_H", lambda d: pd.concat([d, extra], ignore_index=True))
        expected = f"SEQN {who}: {len(mine)} of {len(mine) + 1} days"
    else:
        _rewrite(src / "PAXDAY_H.XPT", "PAXDAY_H", lambda d: d.drop(index=mine.index[-1]))
        expected = f"SEQN {who}: {len(mine)} days, PAXDAY_H {len(mine) - 1}"
    with pytest.raises(ConsistencyError) as err:
        nhanes.check_consistency(src, report_dir=str(tmp_path / "r"))
    assert expected in str(err.value)


def test_cohort_whose_exclusions_jump_stops_with_counts(source, tmp_path):
    src = _copy(source, tmp_path)
    _cut(src / "PAXMIN_H.XPT", 0.55)
    out = tmp_path / "cohort.parquet"
    with pytest.raises(CohortError) as err:
        cohort.build_cohort(src, out, workers=1)
    assert "actigraphy participants" in err.value.what and "no_actigraphy" in err.value.what
    assert isinstance(err.value, DataValidationError) and err.value.bad_input
    assert not out.exists() and not Path(str(out) + ".report.json").exists()
    # the limit is configurable: the same files pass when a larger share may drop out
    report = cohort.build_cohort(src, out, workers=1, max_excluded_fraction=0.9)
    assert report.actigraphy["excluded"] > 0.3 * report.actigraphy["participants"]


def test_exclusion_guard_rules():
    cohort.check_exclusions({"too_little_wear": 3}, actigraphy=10)  # too small a group to judge
    cohort.check_exclusions({"too_little_wear": 30}, actigraphy=100)  # 30% is allowed
    with pytest.raises(CohortError, match="31 of 100"):
        cohort.check_exclusions({"too_little_wear": 20, "all_non_wear": 11}, actigraphy=100)
    with pytest.raises(CohortError, match="more than the 10% allowed"):
        cohort.check_exclusions({"no_actigraphy": 11}, actigraphy=100, max_fraction=0.1)


def test_paxday_suite_exists_and_checks_the_day_table(source, tmp_path):
    outcome = validation.validate_file(str(source / "PAXDAY_H.XPT"), "nhanes_paxday", "xpt", quarantine=False,
                                       report_dir=str(tmp_path / "r"))
    assert outcome.success and outcome.rows > 0 and not outcome.skipped
    src = _copy(source, tmp_path)
    _rewrite(src / "PAXDAY_H.XPT", "PAXDAY_H", lambda d: d.assign(PAXVMD=np.where(d.index == 2, 1500.0, d.PAXVMD)))
    with pytest.raises(DataValidationError, match="PAXVMD"):
        validation.validate_file(str(src / "PAXDAY_H.XPT"), "nhanes_paxday", "xpt", report_dir=str(tmp_path / "r"))
