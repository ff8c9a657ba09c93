"""Typed errors. Each says what went wrong, where, and how to fix it.

DAG tasks let these propagate: Airflow shows the message in the task log, and the
quarantine/registry code relies on the type to decide that no model may move.

Two families of errors, told apart by the class attribute ``bad_input``:

- bad input (``bad_input = True``): a spec, a file or a value is wrong. Retrying cannot help,
  so a task fails fast, at once, every time (SpecError, InputFormatError, MissingInputError,
  DataValidationError and its subclasses, WeightsError, DriftError).
- infrastructure (``bad_input = False``): a server, a disk or credentials failed. The same
  call may succeed later, so it is retried (RegistryError, StorageError).

Every message is passed through :func:`redact` when the error is made, so no typed error can
carry a credential (``scheme://user:password@host``, ``?token=...``, ``Bearer ...``) into a log,
the CLI or the UI, whoever raised it.
"""

from __future__ import annotations

import re

_REDACTED = "***"

# scheme://user:password@host -> scheme://user:***@host; scheme://token@host -> scheme://***@host
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/?#\s'\"<>]+)@")
# names whose value is a secret, in a query string, a key=value pair or a JSON/YAML mapping
# (the secret word ends the name: ``max_tokens=`` or ``design=`` are left alone)
_SECRET_NAME = (r"[A-Za-z0-9_.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|"
                r"private[_-]?key|signature|credential|session[_-]?key|auth|sig)")
_ASSIGNMENT = re.compile(rf"(?i)(?P<name>{_SECRET_NAME})(?P<sep>=)(?P<value>[^\s&;,'\"<>)\]}}]+)")
_MAPPING = re.compile(rf"(?i)(?P<name>[\"']{_SECRET_NAME}[\"'])(?P<sep>\s*:\s*)(?P<value>[\"'][^\"']*[\"'])")
_BEARER = re.compile(r"(?i)\b(?P<kind>bearer|basic)(?P<sep>\s+)(?P<value>[A-Za-z0-9._~+/=-]{8,})")


def _userinfo(m: re.Match) -> str:
    user, colon, _secret = m.group("userinfo").partition(":")
    return f"{m.group('scheme')}{user}:{_REDACTED}@" if colon else f"{m.group('scheme')}{_REDACTED}@"


def redact(text) -> str:
    """``text`` with every credential it may carry replaced by ``***``.

    Covers the user-info of any URI (``postgresql://user:pw@host``, ``https://token@host``),
    query or ``key=value`` parameters whose name says secret (``?token=``, ``X-Amz-Signature=``,
    ``password=``, ``AWS_SECRET_ACCESS_KEY=``), JSON/YAML mappings of such names, and
    ``Bearer``/``Basic`` authorization values. Idempotent; never raises.
    """
    if text is None:
        return ""
    s = str(text)
    if not s:
        return s
    s = _USERINFO.sub(_userinfo, s)
    s = _ASSIGNMENT.sub(lambda m: f"{m.group('name')}{m.group('sep')}{_REDACTED}", s)
    s = _MAPPING.sub(lambda m: f"{m.group('name')}{m.group('sep')}\"{_REDACTED}\"", s)
    s = _BEARER.sub(lambda m: f"{m.group('kind')}{m.group('sep')}{_REDACTED}", s)
    return s


class BiotuneError(Exception):
    """Base error: ``what`` happened at ``where``; ``fix`` tells the user what to do.

    ``bad_input`` (class attribute): True when the cause is the input (fail fast, never
    retry), False when it is the infrastructure (retry). The base says True: an error nobody
    classified is deterministic until shown otherwise. The three fields are redacted.
    """

    bad_input: bool = True

    def __init__(self, what: str, where: str = "", fix: str = "") -> None:
        self.what, self.where, self.fix = redact(what), redact(where), redact(fix)
        parts = [self.what]
        if self.where:
            parts.append(f"  where: {self.where}")
        if self.fix:
            parts.append(f"  fix: {self.fix}")
        super().__init__("\n".join(parts))

    @property
    def retryable(self) -> bool:
        return not self.bad_input

    def __reduce__(self):  # keep the three fields when pickled across processes
        return (self.__class__, (self.what, self.where, self.fix))


def is_bad_input(exc: BaseException) -> bool:
    """True when ``exc`` (or an error it was raised from) is a bad-input BiotuneError."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, BiotuneError):
            return bool(exc.bad_input)
        exc = exc.__cause__ or exc.__context__
    return False


class SpecError(BiotuneError):
    """A models/*.yaml spec is malformed: unknown field, wrong type, bad value."""

    bad_input = True


class InputFormatError(BiotuneError):
    """A data file is not in the format it claims (truncated, wrong type, wrong layout)."""

    bad_input = True


class MissingInputError(BiotuneError):
    """A required file, table or column is absent."""

    bad_input = True


class DataValidationError(BiotuneError):
    """A data set failed its Great Expectations suite; ``failures`` lists each failed expectation."""

    bad_input = True

    def __init__(self, what: str, where: str = "", fix: str = "", failures: list[str] | None = None) -> None:
        self.failures = [redact(f) for f in (failures or [])]
        detail = what
        if self.failures:
            detail = what + "\n" + "\n".join(f"  - {f}" for f in self.failures)
        super().__init__(detail, where, fix)
        self.what = redact(what)

    def __reduce__(self):
        return (self.__class__, (self.what, self.where, self.fix, self.failures))


class ConsistencyError(DataValidationError):
    """Files that must agree with each other do not (e.g. PAXMIN_H against PAXHD_H/PAXDAY_H)."""


class CohortError(DataValidationError):
    """The cohort built from valid-looking files is implausible (e.g. exclusions jumped)."""


class WeightsError(BiotuneError):
    """A pretrained weight file does not fit the model it is loaded into."""

    bad_input = True


class DriftError(BiotuneError):
    """Drift cannot be computed (no reference, empty batch, columns that do not match)."""

    bad_input = True


class RegistryError(BiotuneError):
    """The MLflow registry is unreachable or in a state that forbids the operation."""

    bad_input = False


class StorageError(BiotuneError):
    """The data lake cannot be read or written (missing credentials, bad URL, permissions, disk full)."""

    bad_input = False


BAD_INPUT_ERRORS = tuple(c for c in (SpecError, InputFormatError, MissingInputError, DataValidationError,
                                     WeightsError, DriftError))
"""The bad-input classes, for ``except BAD_INPUT_ERRORS`` (subclasses included)."""
