"""The prepared dataset (windows, participant-level split, drift features) and daily batches."""

from __future__ import annotations

import pytest

from biotune import drift
from biotune.eeg.dataset import batch_summary, load_split, prepare_dataset, read_batch, reference_frame
from biotune.eeg.synth import write_batch, write_dataset
from biotune.errors import InputFormatError


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("eeg_ds")
    gen = write_dataset(str(root / "src"), participants=10, seconds=20, seed=8)
    return prepare_dataset(gen["source"], gen["labels"], str(root / "run"), window_seconds=4), gen


def test_prepared_dataset(prepared):
    ds, gen = prepared
    assert ds["n_participants"] == 10 and set(ds["splits"]) == {"train", "val", "test"}
    assert sum(v["windows"] for v in ds["splits"].values()) == ds["n_windows"]
    seen = set()
    for which in ("train", "val", "test"):
        part = load_split(ds, which)
        assert part.x.shape[1:] == (16, 4, 64) and len(part) == ds["splits"][which]["windows"]
        assert set(part.y) == {0, 1}  # stratified: both classes in every split
        assert not seen & set(part.participants)  # no participant in two splits
        seen |= set(part.participants)
        assert all(gen["remission"][p] == y for p, y in zip(part.participants, part.y))
    ref = reference_frame(ds)
    assert list(ref.columns) == [*ds["features"], "Remission"] and len(ref) == ds["splits"]["train"]["windows"]
    assert ds["dataset_name"] == f"EEG_4s_TP9-AF7-AF8-TP10_{ds['n_windows']}windows_primary"


def test_batches_and_drift(tmp_path, prepared):
    ds, _ = prepared
    calm = write_batch(str(tmp_path / "a" / "batch.parquet"), participants=4, seconds=20, seed=1, window_seconds=4,
                       label_fraction=0.0)
    moved = write_batch(str(tmp_path / "b" / "batch.parquet"), participants=4, seconds=20, seed=2, window_seconds=4,
                        shifted=True)
    a, b = read_batch(calm), read_batch(moved)
    assert a.x.shape[1:] == (16, 4, 64) and a.windows["Remission"].isna().all()  # an unlabelled batch reads
    assert b.windows["Remission"].notna().any() and b.windows["Participant"].str.startswith("S0002-").all()
    summary = batch_summary(calm)
    assert {"window_id", "rms_AF7", "alpha_asymmetry", "n_sub"} <= set(summary.columns)
    ref = reference_frame(ds)[ds["features"]]
    psi_calm = drift.psi(ref, a.windows[ds["features"]])
    psi_moved = drift.psi(ref, b.windows[ds["features"]])
    assert psi_moved.max() > 0.25 and psi_moved.median() > psi_calm.median() + 0.1


def test_batch_with_conflicting_labels_fails(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = write_batch(str(tmp_path / "batch.parquet"), participants=2, seconds=12, seed=3, window_seconds=4,
                       label_fraction=1.0)
    table = pq.read_table(path)
    rem = table.column("Remission").to_numpy().copy()
    rem[5] = 1 - rem[5]
    table = table.set_column(table.column_names.index("Remission"), "Remission", pa.array(rem, pa.int8()))
    pq.write_table(table, path)
    with pytest.raises(InputFormatError, match="two Remission labels"):
        read_batch(path)
