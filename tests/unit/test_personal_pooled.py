"""Pooled person-days for the population episode models (family mood_personal) and its batches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from biotune.errors import InputFormatError, MissingInputError
from biotune.mood.personal import pooled
from biotune.mood.personal.names import SLEEP_FEATURE_NAMES


def test_person_level_splits_cover_every_task_when_possible():
    pos = {f"p{i}": s for i, s in enumerate([{"depressive"}, {"depressive", "hypomanic"}, {"manic"},
                                             {"depressive", "manic"}, {"hypomanic"}, {"depressive"}, set(),
                                             {"hypomanic", "manic"}, {"depressive"}, set()])}
    a = pooled._assign_splits(list(pos), pos, 0.2, 0.2)
    assert a == pooled._assign_splits(list(reversed(list(pos))), pos, 0.2, 0.2)      # deterministic
    assert set(a) == set(pos) and set(a.values()) == {"train", "val", "test"}
    for split in ("train", "val", "test"):
        covered = set().union(*[pos[p] for p in a if a[p] == split])
        assert covered == {"depressive", "manic", "hypomanic"}, split


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from biotune.mood.personal.synth_files import generate_persons

    root = tmp_path_factory.mktemp("pooled")
    generate_persons(3, root / "persons", days=70, seed=4, filler=0.0)
    return root, pooled.build_dataset(str(root / "persons"), str(root / "run"), "run-1")


def test_build_dataset(dataset):
    root, info = dataset
    table = pd.read_parquet(info["features"])
    assert info["persons"] == 3 and info["rows"] == len(table) > 100
    assert list(table.columns[:3]) == ["person_id", "date", "split"]
    assert set(SLEEP_FEATURE_NAMES) <= set(table.columns) and {"depressive", "manic", "hypomanic"} <= set(table.columns)
    assert table.groupby("person_id")["split"].nunique().max() == 1          # a person is in one split only
    assert not any(name in "".join(table["person_id"]) for name in ("person-000", "person-001"))
    assert table["depressive"].isin([0.0, 1.0]).all()


def test_too_few_persons_and_bad_labels(dataset, tmp_path):
    root, _ = dataset
    with pytest.raises(MissingInputError, match="person folder"):
        pooled.person_folders(str(tmp_path))
    bad = tmp_path / "labels.csv"
    bad.write_text("person_id,kind,start,end,severity\nx,sad,2024-01-01,2024-01-09,\n")
    with pytest.raises(InputFormatError, match="line 2"):
        pooled._labels(bad)


@pytest.mark.parametrize("frame, message", [
    (pd.DataFrame({"person_id": ["a"], "ST_long_MN": [7.0]}), "lacks columns"),
    (pd.DataFrame({"person_id": ["a"], "weight": [70.0], **{c: [1.0] for c in SLEEP_FEATURE_NAMES}}), "unknown columns"),
    (pd.DataFrame({"person_id": ["a"], **{c: ["x"] for c in SLEEP_FEATURE_NAMES}}), "not numeric"),
])
def test_bad_batches(tmp_path, frame, message):
    path = tmp_path / "batch.parquet"
    frame.to_parquet(path)
    with pytest.raises(InputFormatError, match=message):
        pooled.read_batch(str(path))


def test_batch_not_parquet_and_labels_filled(tmp_path, monkeypatch):
    from biotune.mood.personal import crypto

    monkeypatch.setenv(crypto.ENV_KEY, crypto.new_key())
    path = tmp_path / "batch.parquet"
    path.write_bytes(b"this is not a batch file")
    with pytest.raises(InputFormatError, match="not a parquet batch"):
        pooled.read_batch(str(path))
    known = crypto.pseudonym("c")
    good = pd.DataFrame({"person_id": ["a", "s-demo00010", known, None],
                         **{c: np.r_[1.0, np.nan, 2.0, 3.0] for c in SLEEP_FEATURE_NAMES}})
    good.to_parquet(path)
    frame = pooled.read_batch(str(path))
    assert frame["manic"].isna().all() and len(frame) == 4
    # a raw id becomes the keyed pseudonym the store and registered models use; the others stay as
    # they are, and a missing one stays missing for the batch suite to fail
    assert list(frame["person_id"][:3]) == [crypto.pseudonym("a"), "s-demo00010", known]
    assert frame["person_id"].isna().tolist() == [False, False, False, True]
