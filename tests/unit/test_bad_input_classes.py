"""Error classes: bad input fails fast, infrastructure is retried (issue 10, item 12).

Each typed error says on its class whether its cause is the input (``bad_input = True``: never
retry) or the infrastructure (``False``: retry). The classification survives pickling and is
found through ``raise ... from``.
"""

from __future__ import annotations

import pickle

import pytest

from biotune import errors
from biotune.errors import (BAD_INPUT_ERRORS, BiotuneError, CohortError, ConsistencyError, DataValidationError,
                            DriftError, InputFormatError, MissingInputError, RegistryError, SpecError, StorageError,
                            WeightsError, is_bad_input)

BAD = [SpecError, InputFormatError, MissingInputError, DataValidationError, WeightsError, DriftError,
       ConsistencyError, CohortError]
INFRA = [RegistryError, StorageError]


@pytest.mark.parametrize("cls", BAD)
def test_bad_input_classes_fail_fast(cls):
    exc = cls("what", where="here", fix="do this")
    assert cls.bad_input is True and exc.bad_input and not exc.retryable and is_bad_input(exc)
    assert isinstance(exc, BAD_INPUT_ERRORS)


@pytest.mark.parametrize("cls", INFRA)
def test_infrastructure_classes_are_retried(cls):
    exc = cls("what", where="here", fix="do this")
    assert cls.bad_input is False and exc.retryable and not is_bad_input(exc)
    assert not isinstance(exc, BAD_INPUT_ERRORS)


def test_every_error_class_is_classified():
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, BiotuneError)]
    assert set(classes) - {BiotuneError} == set(BAD) | set(INFRA)
    assert all(isinstance(c.__dict__.get("bad_input", c.bad_input), bool) for c in classes)


@pytest.mark.parametrize("cls", BAD + INFRA)
def test_fields_and_class_survive_pickling(cls):
    exc = cls("what", where="here", fix="do this")
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is cls and (back.what, back.where, back.fix) == ("what", "here", "do this")
    assert back.bad_input == cls.bad_input


def test_classification_is_found_through_the_cause_chain():
    try:
        try:
            raise InputFormatError("truncated", where="f.xpt", fix="re-download")
        except InputFormatError as inner:
            raise RuntimeError("wrapped by a library") from inner
    except RuntimeError as outer:
        assert is_bad_input(outer)
    assert not is_bad_input(ValueError("plain"))
    assert not is_bad_input(OSError(28, "No space left on device"))


def test_data_validation_errors_keep_their_failures():
    exc = ConsistencyError("files disagree", where="a vs b", fix="re-download", failures=["1 of 2", "3 of 4"])
    assert exc.failures == ["1 of 2", "3 of 4"] and "  - 3 of 4" in str(exc)
    back = pickle.loads(pickle.dumps(exc))
    assert back.failures == exc.failures and back.what == "files disagree"
