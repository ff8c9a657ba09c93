"""Typed errors. Each says what went wrong, where, and how to fix it.

DAG tasks let these propagate: Airflow shows the message in the task log, and the
quarantine/registry code relies on the type to decide that no model may move.
"""

from __future__ import annotations


class BiotuneError(Exception):
    """Base error: ``what`` happened at ``where``; ``fix`` tells the user what to do."""

    def __init__(self, what: str, where: str = "", fix: str = "") -> None:
        self.what, self.where, self.fix = what, str(where), fix
        parts = [what]
        if where:
            parts.append(f"  where: {where}")
        if fix:
            parts.append(f"  fix: {fix}")
        super().__init__("\n".join(parts))

    def __reduce__(self):  # keep the three fields when pickled across processes
        return (self.__class__, (self.what, self.where, self.fix))


class SpecError(BiotuneError):
    """A models/*.yaml spec is malformed: unknown field, wrong type, bad value."""


class InputFormatError(BiotuneError):
    """A data file is not in the format it claims (truncated, wrong type, wrong layout)."""


class MissingInputError(BiotuneError):
    """A required file, table or column is absent."""


class DataValidationError(BiotuneError):
    """A data set failed its Great Expectations suite; ``failures`` lists each failed expectation."""

    def __init__(self, what: str, where: str = "", fix: str = "", failures: list[str] | None = None) -> None:
        self.failures = list(failures or [])
        detail = what
        if self.failures:
            detail = what + "\n" + "\n".join(f"  - {f}" for f in self.failures)
        super().__init__(detail, where, fix)
        self.what = what

    def __reduce__(self):
        return (self.__class__, (self.what, self.where, self.fix, self.failures))


class WeightsError(BiotuneError):
    """A pretrained weight file does not fit the model it is loaded into."""


class RegistryError(BiotuneError):
    """The MLflow registry is unreachable or in a state that forbids the operation."""


class StorageError(BiotuneError):
    """The data lake cannot be read or written (missing credentials, bad URL, permissions)."""


class DriftError(BiotuneError):
    """Drift cannot be computed (no reference, empty batch, columns that do not match)."""
