"""Bad input class: labels and minute lists of the wrong kind in a batch (issue 10, item 3).

Labels that are text ("yes"/"no"), out of the 0/1 set, and minute lists that are null must
fail the batch suite (and be quarantined), never become NaN labels or reach scoring.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from biotune import storage, validation
from biotune.errors import DataValidationError
from biotune.mood import scoring
from biotune.synthetic.batches import batch_table, day_batch


def _land(day: str, edit_table) -> str:
    """Write a day's batch whose arrow table was edited (a malformed batch, on purpose)."""
    path = storage.lake_path("landing", "mood", day, "batch.parquet")
    table = edit_table(batch_table(day_batch(day, persons=5, seed=2)))
    with storage.atomic_local_path(path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp)
    return path


def _set(table: pa.Table, name: str, values) -> pa.Table:
    i = table.column_names.index(name)
    return table.set_column(i, name, pa.array(values))


def _summary(labels) -> pd.DataFrame:
    """A batch summary as validation_frame makes it, with the label column as landed."""
    n = len(labels)
    return pd.DataFrame({"person_id": [f"p{i}" for i in range(n)], "activity_minutes": [10080.0] * n,
                         "activity_valid_fraction": [0.9] * n, "activity_mean": [10.0] * n,
                         "activity_min": [0.0] * n, "activity_max": [100.0] * n, "state_minutes": [10080.0] * n,
                         "state_bad_codes": [0.0] * n, "state_worn_fraction": [0.8] * n,
                         "depression": pd.Series(labels, dtype=object), "benzodiazepine": [np.nan] * n,
                         "ssri": [np.nan] * n})


@pytest.mark.parametrize("labels", [["yes", "no", None], ["1", "0", "1"], [2, 0, 1], [0.5, 1, 0], [-1, 0, None],
                                    [True, "maybe", 0]])
def test_labels_outside_0_1_fail_the_batch_suite(labels):
    outcome = validation.run_suite(_summary(labels), "mood_batch", where="inline")
    assert not outcome.success
    assert any(f.startswith("column depression: expect_column_values_to_be_in_set") for f in outcome.failures)


@pytest.mark.parametrize("labels", [[0, 1, None], [1.0, 0.0, np.nan], [None, None, None]])
def test_labels_that_are_0_1_or_missing_pass(labels):
    assert validation.run_suite(_summary(labels), "mood_batch", where="inline").success


@pytest.mark.parametrize("labels", [["yes", "no", "yes", None, "no"], ["positive", "", "0", "1", "0"]])
def test_text_labels_in_a_landed_batch_fail_validation(home, labels):
    path = _land("2026-02-01", lambda t: _set(t, "depression", labels))
    with pytest.raises(DataValidationError, match="depression"):
        scoring.validate_batch("2026-02-01", run_id="r")


@pytest.mark.parametrize("column,rows", [("activity", [1]), ("state", [0, 3]), ("activity", [0, 1, 2, 3, 4])])
def test_a_null_minute_list_fails_validation_and_is_quarantined(home, column, rows):
    def edit(t: pa.Table) -> pa.Table:
        col = t.column(column).combine_chunks()
        values = [None if i in rows else v for i, v in enumerate(col.to_pylist())]
        return t.set_column(t.column_names.index(column), column, pa.array(values, type=col.type))

    day = "2026-02-02"
    path = _land(day, edit)
    with pytest.raises(DataValidationError) as err:
        scoring.validate_batch(day, run_id=f"r-{column}-{len(rows)}")
    assert f"column {column}_minutes: expect_column_values_to_not_be_null" in str(err.value)
    assert f"{len(rows)} unexpected" in str(err.value)
    assert not storage.exists(path) and "moved to" in err.value.fix
