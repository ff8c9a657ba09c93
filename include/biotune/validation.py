"""Run a Great Expectations suite from expectations/ on a data frame, a stream of frames or a file.

Suites are plain GX 1.x JSON files (``{"name", "expectations": [{"type", "kwargs"}], "meta"}``)
loaded into an ephemeral GX context: the GX Airflow provider cannot be installed beside
Airflow 3.3, and an ephemeral context keeps no state between runs. Every run writes the
result (JSON) and a readable HTML page; a failure raises DataValidationError listing
every failed expectation.

Safe by default, whatever a suite says: every float column, and every column of lists of
numbers, is checked for ``±inf`` and absurd magnitudes (``|x| > 1e15``, or the suite's
``meta.max_abs``), because Great Expectations' range checks let through whatever lies on an
unbounded side and summaries often drop non-finite values. A suite may exempt columns with
``meta.allow_non_finite``. NaN stays "missing" (not-null expectations judge it).

Files are validated whole: :func:`validate_file` streams them in chunks (a 9 GB XPORT file
never sits in memory) and runs the row-wise expectations on every chunk, adding the counts up.
Reading (format sniffing, readers, chunking) is :mod:`biotune.datafiles`; ``read_frame`` and
``sniff`` are re-exported here for existing callers.
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from biotune import settings, storage
from biotune.datafiles import DEFAULT_CHUNK_ROWS, READERS, iter_file, read_frame, sniff  # noqa: F401 (API)
from biotune.errors import (BiotuneError, DataValidationError, InputFormatError, MissingInputError, SpecError,
                            redact)

log = logging.getLogger(__name__)

DEFAULT_MAX_ABS = 1e15
"""Largest magnitude a numeric value may have unless the suite's ``meta.max_abs`` says otherwise."""

# expectations that judge each row on its own: counts over chunks add up exactly
_ROW_WISE = {
    "expect_column_values_to_be_between", "expect_column_values_to_be_in_set",
    "expect_column_values_to_not_be_in_set", "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_null", "expect_column_values_to_match_regex",
    "expect_column_values_to_not_match_regex", "expect_column_values_to_match_regex_list",
    "expect_column_values_to_not_match_regex_list", "expect_column_values_to_match_like_pattern",
    "expect_column_values_to_be_of_type", "expect_column_values_to_be_in_type_list",
    "expect_column_values_to_match_strftime_format", "expect_column_values_to_be_dateutil_parseable",
    "expect_column_value_lengths_to_be_between", "expect_column_value_lengths_to_equal",
    "expect_column_pair_values_to_be_equal", "expect_column_pair_values_a_to_be_greater_than_b",
    "expect_multicolumn_sum_to_equal", "expect_select_column_values_to_be_unique_within_record",
}
# expectations on the table's shape: checked once, on the first chunk
_SCHEMA = {"expect_column_to_exist", "expect_table_columns_to_match_set",
           "expect_table_columns_to_match_ordered_list", "expect_table_column_count_to_equal",
           "expect_table_column_count_to_be_between"}
_ROW_COUNT = "expect_table_row_count_to_be_between"
_NULL_TYPES = {"expect_column_values_to_not_be_null", "expect_column_values_to_be_null"}


@dataclass
class ValidationOutcome:
    suite: str
    success: bool
    evaluated: int
    failures: list[str] = field(default_factory=list)
    report_json: str = ""
    report_html: str = ""
    rows: int = 0
    skipped: list[str] = field(default_factory=list)
    chunks: int = 1

    def as_dict(self) -> dict:
        return self.__dict__.copy()


# ----------------------------------------------------------------------------------- suites

def suite_path(suite_name: str) -> Path:
    """``expectations/<family>/<suite>.json`` (a folder per family), or ``expectations/<suite>.json``."""
    root = settings.expectations_dir()
    direct = root / f"{suite_name}.json"
    if direct.exists():
        return direct
    found = sorted(root.glob(f"*/{suite_name}.json"))
    return found[0] if found else direct


def load_suite_dict(suite_name: str) -> dict:
    path = suite_path(suite_name)
    if not path.exists():
        raise MissingInputError(f"no expectation suite named {suite_name}", where=str(path),
                                fix=f"add {path.name} to {settings.expectations_dir()}")
    try:
        suite = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SpecError(f"suite is not valid JSON: {exc}", where=str(path), fix="fix the JSON syntax") from exc
    except (UnicodeDecodeError, OSError) as exc:
        raise SpecError(f"suite cannot be read: {exc}", where=str(path), fix="save the suite as a UTF-8 JSON file") from exc
    if not isinstance(suite, dict) or not isinstance(suite.get("expectations"), list):
        raise SpecError("suite has no 'expectations' list", where=str(path),
                        fix='write {"name": ..., "expectations": [{"type": ..., "kwargs": {...}}]}')
    return suite


def _applicable(suite_dict: dict, columns) -> tuple[list[dict], list[str]]:
    """Expectations to run on a frame with ``columns``, and the ones skipped.

    A suite may list ``meta.required_columns``: expectations on any other column are skipped
    when that column is absent (files written from the codebook may omit what biotune never
    reads), while a missing required column always fails."""
    required = (suite_dict.get("meta") or {}).get("required_columns")
    if required is None:
        return list(suite_dict["expectations"]), []
    present, keep, skipped = set(columns), [], []
    for exp in suite_dict["expectations"]:
        column = exp.get("kwargs", {}).get("column")
        if column and column not in present and column not in required:
            skipped.append(f"{exp['type']} on optional column {column}: column absent, skipped")
        else:
            keep.append(exp)
    return keep, skipped


def _build_suite(suite_dict: dict, where: str, expectations_json: list[dict] | None = None):
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    expectations = []
    for i, exp in enumerate(suite_dict["expectations"] if expectations_json is None else expectations_json):
        try:
            expectations.append(ExpectationConfiguration(type=exp["type"], kwargs=exp.get("kwargs", {}),
                                                         meta=exp.get("meta")).to_domain_obj())
        except Exception as exc:  # GX raises several types for an unknown/malformed expectation
            raise SpecError(f"expectation #{i} ({exp.get('type')}) is not valid: {exc}", where=where,
                            fix="use an expectation type and kwargs from Great Expectations 1.x") from exc
    return gx.ExpectationSuite(name=suite_dict.get("name") or Path(where).stem, expectations=expectations)


class _Runner:
    """One ephemeral GX context and batch definition, reused for every chunk of a run."""

    def __init__(self, name: str) -> None:
        import great_expectations as gx

        logging.getLogger("great_expectations").setLevel(logging.WARNING)
        self.context = gx.get_context(mode="ephemeral")
        try:
            self.context.variables.progress_bars = {"globally": False}
        except Exception:  # cosmetic only
            pass
        self.batch_def = (self.context.data_sources.add_pandas("biotune").add_dataframe_asset(name=name)
                          .add_batch_definition_whole_dataframe("whole"))

    def validate(self, frame, suite, result_format: str | None = None):
        try:
            batch = self.batch_def.get_batch(batch_parameters={"dataframe": frame})
            return batch.validate(suite, result_format=result_format) if result_format else batch.validate(suite)
        except BiotuneError:
            raise
        except Exception as exc:  # GX fails as a whole on some data (unhashable cells...): same data, same failure
            raise InputFormatError(f"Great Expectations could not run suite {suite.name} on this data: "
                                   f"{type(exc).__name__}: {exc}", where=suite.name,
                                   fix="check the columns' types (lists where values are expected, mixed types)"
                                   ) from exc


def _columns_of(exp: dict) -> tuple | None:
    """The columns an expectation reads (None: it looks at the whole table)."""
    kw = exp.get("kwargs", {})
    if "column" in kw and exp["type"] not in _SCHEMA:
        return (kw["column"],)
    if "column_A" in kw and "column_B" in kw:
        return (kw["column_A"], kw["column_B"])
    if "column_list" in kw:
        return tuple(kw["column_list"])
    return None


def _groups(suite_dict: dict, where: str, exps: list[tuple[int, dict]], present) -> list[tuple]:
    """(columns or None, [tally index], GX suite) per set of columns read; columns "distinct"
    for the one group of single-column row-wise expectations (see :func:`_validate_distinct`).

    GX copies the frame it is given once per expectation (boolean-mask filtering), so a chunk
    is not given to GX whole: each multi-column or table expectation gets only its columns,
    and every single-column row-wise expectation is judged in one call on distinct values."""
    by: dict = {}
    for i, e in exps:
        cols = _columns_of(e)
        if cols is not None and not set(cols) <= set(present):
            cols = None  # a missing column: let GX say so on the whole table
        elif cols is not None and len(cols) == 1 and e["type"] in _ROW_WISE and "column" in e.get("kwargs", {}):
            cols = "distinct"
        by.setdefault(cols, []).append((i, e))
    return [(cols, [i for i, _ in items], _build_suite(suite_dict, where, [e for _, e in items]))
            for cols, items in by.items()]


def _validate_distinct(runner: _Runner, frame, suite) -> list[tuple[dict, bool, dict]]:
    """Single-column row-wise expectations, judged by GX on distinct values, counted per row.

    A row-wise expectation's verdict on a row depends only on that row's value, so GX judges
    each distinct value once and the unexpected ones are weighted by how often they occur:
    the counts are the ones GX would give on the whole column. Minute files repeat their
    values (codes, sample numbers, rounded MIMS), so one small GX call replaces a dozen big
    ones. Columns are padded to one length by repeating a value with weight 0."""
    import pandas as pd

    columns = []
    for exp in suite.expectations:
        col = exp.column
        if col not in columns:
            columns.append(col)
    values, weights, nulls = {}, {}, {}
    for col in columns:
        s = frame[col]
        codes, uniques = pd.factorize(s, use_na_sentinel=True)
        n_null = int((codes < 0).sum())
        w = np.bincount(codes[codes >= 0], minlength=len(uniques)).astype(np.int64)
        v = pd.Series(np.asarray(uniques), dtype=s.dtype)
        if n_null:
            v = pd.concat([v, s[codes < 0].iloc[:1]], ignore_index=True)
            w = np.append(w, n_null)
        values[col], weights[col], nulls[col] = v, w, n_null
    size = max([len(v) for v in values.values()] + [1])
    for col, v in values.items():
        if len(v) < size:  # pad with the first value, weight 0: same dtype, counts unchanged
            pad = v.iloc[:1] if len(v) else pd.Series([None], dtype=object)
            values[col] = pd.concat([v, pad.iloc[[0] * (size - len(v))]], ignore_index=True)
            weights[col] = np.append(weights[col], np.zeros(size - len(v), np.int64))
    small = pd.DataFrame(values)
    result = runner.validate(small, suite, result_format="COMPLETE")
    out = []
    for exp, r in zip(suite.expectations, result.results):
        col = exp.column
        detail = r.result or {}
        hit = np.asarray(detail.get("unexpected_index_list") or [], dtype=np.int64)
        w = weights[col]
        hit_w = w[hit] if hit.size else np.zeros(0, np.int64)
        sample = [v for v, k in zip(detail.get("unexpected_list") or [], hit_w) if k > 0][:20]
        summary = {"element_count": len(frame), "unexpected_count": int(hit_w.sum()), "partial_unexpected_list": sample}
        if "missing_count" in detail:
            summary["missing_count"] = nulls[col]
        out.append((summary, bool(r.success), r.exception_info))
    return out


# ---------------------------------------------------------------------------------- reporting

def _exception_message(info) -> str | None:
    """The first exception message in a GX ``exception_info`` (flat, or keyed by metric id)."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception") and info.get("exception_message"):
        return str(info["exception_message"])
    for value in info.values():
        if isinstance(value, dict):
            msg = _exception_message(value)
            if msg:
                return msg
    return None


def _describe(exp_type: str, kwargs: dict, detail: dict, error: str | None) -> str:
    kwargs = {k: v for k, v in kwargs.items() if k not in ("batch_id", "result_format")}
    target = kwargs.pop("column", None)
    bits = []
    if detail.get("unexpected_count") is not None:
        bits.append(f"{detail['unexpected_count']} unexpected ({detail.get('unexpected_percent') or 0:.2f}%)")
        sample = detail.get("partial_unexpected_list") or []
        if sample:
            bits.append(f"e.g. {list(sample)[:5]}")
    if "observed_value" in detail:
        bits.append(f"observed {detail['observed_value']}")
    if error:
        hint = (" (the column holds text where numbers are expected?)"
                if "same type" in error or "not supported between" in error else "")
        bits.append(f"could not be evaluated: {error}{hint}")
    args = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    col = f"column {target}: " if target else ""
    return f"{col}{exp_type}({args})" + (f" -> {'; '.join(bits)}" if bits else "")


def _describe_failure(result) -> str:
    cfg = result.expectation_config
    return _describe(cfg.type, dict(cfg.kwargs), result.result or {}, _exception_message(result.exception_info))


def _describe_ok(exp_type: str, kwargs: dict) -> str:
    return f"{exp_type}({', '.join(f'{k}={v}' for k, v in kwargs.items() if k != 'batch_id')})"


def _render_html(suite: str, where: str, outcome_rows: list[tuple[bool, str]], success: bool, rows: int) -> str:
    status = "PASSED" if success else "FAILED"
    lines = "\n".join(
        f"<tr class={'ok' if ok else 'bad'}><td>{'✓' if ok else '✗'}</td><td>{html.escape(text)}</td></tr>"
        for ok, text in outcome_rows
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(suite)} {status}</title>
<style>body{{font-family:sans-serif;margin:2em}} .ok td:first-child{{color:green}} .bad{{background:#fee}}
.bad td:first-child{{color:#b00}} td{{padding:4px 8px;border-bottom:1px solid #ddd}}</style></head><body>
<h1>Great Expectations suite <code>{html.escape(suite)}</code>: {status}</h1>
<p>Data: <code>{html.escape(redact(where))}</code> ({rows} rows)</p>
<table>{lines}</table></body></html>"""


def _write_reports(outcome: ValidationOutcome, report_dir: str | None, where: str, result_json: dict,
                   rows: list[tuple[bool, str]]) -> None:
    if not report_dir:
        return
    outcome.report_json = storage.write_json(storage.join(report_dir, f"{outcome.suite}.json"), result_json)
    outcome.report_html = storage.write_text(storage.join(report_dir, f"{outcome.suite}.html"),
                                             _render_html(outcome.suite, where, rows, outcome.success, outcome.rows))


# ------------------------------------------------------------------------ the numeric guard

class _NumericGuard:
    """±inf and |x| > max_abs in float columns and list-of-number columns, counted per column.

    Runs beside GX on every frame (or chunk), whatever the suite says, so no suite can let a
    non-finite or absurd value through by forgetting a bound."""

    def __init__(self, suite_dict: dict) -> None:
        meta = suite_dict.get("meta") or {}
        self.max_abs = float(meta.get("max_abs", DEFAULT_MAX_ABS))
        self.allowed = set(meta.get("allow_non_finite") or [])
        self.bad: dict[str, int] = {}
        self.checked: dict[str, int] = {}
        self.examples: dict[str, list] = {}
        self.rows: dict[str, list[int]] = {}
        self.offset = 0

    @staticmethod
    def _blocks(s, block_rows: int = 512):
        """(float64 values, row of each value, first row) blocks of a float column or of a column
        of number lists (rows taken a few hundred at a time: a cohort's 7,000 x 10,080 minutes
        never become one 560 MB array). Integer and bool data cannot be non-finite: skipped."""
        import pandas as pd

        dt = s.dtype
        if pd.api.types.is_float_dtype(dt):
            yield s.to_numpy(dtype=np.float64, na_value=np.nan), None, 0
            return
        if dt != object or not len(s):
            return
        first = next((v for v in s.head(50) if v is not None and not (isinstance(v, float) and np.isnan(v))), None)
        if not isinstance(first, (list, tuple, np.ndarray)):
            return
        if isinstance(first, np.ndarray) and first.dtype.kind in "biu":
            return
        cells = s.to_numpy()
        for start in range(0, len(cells), block_rows):
            parts, idx = [], []
            for i, v in enumerate(cells[start:start + block_rows], start):
                if v is None or (isinstance(v, float) and np.isnan(v)):
                    continue
                try:
                    a = np.asarray(v, dtype=np.float64).ravel()
                except (TypeError, ValueError):
                    return  # not numbers: the suite's own expectations judge it
                parts.append(a)
                idx.append(np.full(a.size, i, dtype=np.int64))
            if parts:
                yield np.concatenate(parts), np.concatenate(idx), 0

    def add(self, frame) -> None:
        for col in frame.columns:
            if col in self.allowed:
                continue
            for values, row_of, _ in self._blocks(frame[col]):
                with np.errstate(invalid="ignore"):
                    bad = np.isinf(values) | (np.abs(values) > self.max_abs)
                self.checked[col] = self.checked.get(col, 0) + int(values.size)
                if not bad.any():
                    continue
                hit = np.flatnonzero(bad)
                self.bad[col] = self.bad.get(col, 0) + int(hit.size)
                ex = self.examples.setdefault(col, [])
                ex.extend(float(v) for v in values[hit[: max(0, 5 - len(ex))]])
                rows = self.rows.setdefault(col, [])
                r = hit if row_of is None else np.unique(row_of[hit])
                rows.extend(int(self.offset + k) for k in r[: max(0, 5 - len(rows))])
        self.offset += len(frame)

    def lines(self) -> list[tuple[bool, str]]:
        rule = f"values must be finite and within ±{self.max_abs:g} (biotune's check on every numeric column)"
        out = [(False, f"column {c}: {rule} -> {n} unexpected value(s); e.g. {self.examples[c]} at row(s) "
                       f"{self.rows[c]}") for c, n in self.bad.items()]
        ok = [c for c in self.checked if c not in self.bad]
        if ok:
            out.append((True, f"{rule}: {len(ok)} column(s) clean ({', '.join(map(str, ok[:12]))}"
                              f"{' ...' if len(ok) > 12 else ''})"))
        return out


# ------------------------------------------------------------------------------ running

def run_suite(frame, suite_name: str, where: str, report_dir: str | None = None) -> ValidationOutcome:
    """Validate ``frame`` against the suite; write the reports; return the outcome (never raises on failure)."""
    suite_dict = load_suite_dict(suite_name)
    to_run, skipped = _applicable(suite_dict, frame.columns)
    suite = _build_suite(suite_dict, str(suite_path(suite_name)), to_run)
    guard = _NumericGuard(suite_dict)
    guard.add(frame)
    result = _Runner(suite_name).validate(frame, suite)
    rows = [(r.success, _describe_failure(r) if not r.success else
             _describe_ok(r.expectation_config.type, dict(r.expectation_config.kwargs)))
            for r in result.results]
    rows += guard.lines()
    success = bool(result.success) and not guard.bad
    outcome = ValidationOutcome(suite=suite_name, success=success, evaluated=len(rows),
                                failures=[text for ok, text in rows if not ok], rows=len(frame), skipped=skipped)
    rows += [(True, text) for text in skipped]
    report = result.to_json_dict()
    report["biotune_numeric_guard"] = [{"success": ok, "text": text} for ok, text in guard.lines()]
    _write_reports(outcome, report_dir, where, report, rows)
    log.info("suite %s on %s: %s (%d checks, %d failed)", suite_name, redact(where),
             "passed" if outcome.success else "FAILED", outcome.evaluated, len(outcome.failures))
    return outcome


def unchunkable(suite_dict: dict) -> list[str]:
    """The expectation types of a suite that cannot be added up over chunks (empty: streamable)."""
    return sorted({e["type"] for e in suite_dict["expectations"]
                   if e["type"] not in _ROW_WISE | _SCHEMA | {_ROW_COUNT}})


class _Tally:
    """Counts of one row-wise expectation over chunks."""

    def __init__(self, exp: dict) -> None:
        self.exp, self.success, self.error = exp, True, None
        self.element = self.missing = self.unexpected = 0
        self.sample: list = []
        self.observed = None

    def add(self, detail: dict, success: bool, exception_info=None) -> None:
        detail = detail or {}
        self.element += int(detail.get("element_count") or 0)
        self.missing += int(detail.get("missing_count") or 0)
        self.unexpected += int(detail.get("unexpected_count") or 0)
        if len(self.sample) < 20:
            self.sample.extend(list(detail.get("partial_unexpected_list") or [])[: 20 - len(self.sample)])
        if "observed_value" in detail and not success:
            self.observed = detail["observed_value"]
        error = _exception_message(exception_info)
        if error and not self.error:
            self.error = error
        self.success = self.success and bool(success)

    def finish(self) -> tuple[bool, str]:
        kwargs = self.exp.get("kwargs", {})
        if self.error:
            ok = False
        elif self.exp["type"] in _ROW_WISE:
            denominator = self.element if self.exp["type"] in _NULL_TYPES else self.element - self.missing
            mostly = float(kwargs.get("mostly", 1.0))
            ok = denominator == 0 or (1.0 - self.unexpected / denominator) >= mostly - 1e-12
        else:
            ok = self.success
        if ok:
            return True, _describe_ok(self.exp["type"], kwargs)
        detail: dict = {}
        if self.exp["type"] in _ROW_WISE:
            denominator = self.element if self.exp["type"] in _NULL_TYPES else self.element - self.missing
            detail = {"unexpected_count": self.unexpected,
                      "unexpected_percent": 100.0 * self.unexpected / denominator if denominator else 0.0,
                      "partial_unexpected_list": self.sample}
        elif self.observed is not None:
            detail = {"observed_value": self.observed}
        return False, _describe(self.exp["type"], dict(kwargs), detail, self.error)


def run_suite_chunked(frames: Iterable, suite_name: str, where: str, report_dir: str | None = None) -> ValidationOutcome:
    """Validate a table given as a stream of frames (all rows, bounded memory).

    Row-wise expectations run on every chunk and their counts add up (``mostly`` judged on the
    totals); schema expectations run on the first chunk; the row count is judged on the total.
    Suites with expectations that cannot be added up (unique, mean...) -> SpecError: use
    :func:`run_suite` on the whole frame for those (small tables).
    """
    suite_dict = load_suite_dict(suite_name)
    where_suite = str(suite_path(suite_name))
    blocked = unchunkable(suite_dict)
    if blocked:
        raise SpecError(f"suite {suite_name} cannot be checked chunk by chunk: {', '.join(blocked)}", where=where_suite,
                        fix="run it on the whole table (run_suite), or use row-wise expectations only")
    runner = guard = None
    tallies: dict[int, _Tally] = {}
    skipped: list[str] = []
    first_groups: list[tuple] = []
    rest_groups: list[tuple] = []
    row_count_exps: list[dict] = []
    rows = chunks = 0
    for frame in frames:
        if runner is None:
            runner, guard = _Runner(suite_name), _NumericGuard(suite_dict)
            to_run, skipped = _applicable(suite_dict, frame.columns)
            row_count_exps = [e for e in to_run if e["type"] == _ROW_COUNT]
            first = [e for e in to_run if e["type"] != _ROW_COUNT]
            tallies = {i: _Tally(e) for i, e in enumerate(first)}
            first_groups = _groups(suite_dict, where_suite, list(enumerate(first)), frame.columns)
            rest_groups = _groups(suite_dict, where_suite,
                                  [(i, e) for i, e in enumerate(first) if e["type"] not in _SCHEMA], frame.columns)
            groups = first_groups
        else:
            groups = rest_groups
        for cols, order, suite in groups:
            if cols == "distinct":
                verdicts = _validate_distinct(runner, frame, suite)
            else:
                part = frame if cols is None else frame[list(cols)]
                verdicts = [(r.result, r.success, r.exception_info)
                            for r in runner.validate(part, suite, result_format="BASIC").results]
            for i, verdict in zip(order, verdicts):
                tallies[i].add(*verdict)
        guard.add(frame)
        rows += len(frame)
        chunks += 1
    if runner is None:
        raise InputFormatError("the table is empty (no rows and no columns were read)", where=where,
                               fix="land the complete file again")
    lines = [tallies[i].finish() for i in sorted(tallies)]
    for e in row_count_exps:
        kw = e.get("kwargs", {})
        lo, hi = kw.get("min_value"), kw.get("max_value")
        ok = (lo is None or rows >= lo) and (hi is None or rows <= hi)
        lines.append((ok, _describe_ok(e["type"], kw) if ok else _describe(e["type"], dict(kw), {"observed_value": rows}, None)))
    lines += guard.lines()
    success = all(ok for ok, _ in lines)
    outcome = ValidationOutcome(suite=suite_name, success=success, evaluated=len(lines),
                                failures=[t for ok, t in lines if not ok], rows=rows, skipped=skipped, chunks=chunks)
    report = {"suite": suite_name, "data": redact(where), "success": success, "rows": rows, "chunks": chunks,
              "results": [{"success": ok, "text": t} for ok, t in lines], "skipped": skipped}
    _write_reports(outcome, report_dir, where, report, lines + [(True, t) for t in skipped])
    log.info("suite %s on %s: %s (%d rows in %d chunks, %d checks, %d failed)", suite_name, redact(where),
             "passed" if success else "FAILED", rows, chunks, outcome.evaluated, len(outcome.failures))
    return outcome


def report_checks(name: str, lines: list[tuple[bool, str]], where: str, report_dir: str | None = None,
                  rows: int = 0, details: dict | None = None) -> ValidationOutcome:
    """An outcome (with the same JSON + HTML reports) for checks computed outside GX, such as
    cross-file consistency: ``lines`` are (passed, text)."""
    success = all(ok for ok, _ in lines)
    outcome = ValidationOutcome(suite=name, success=success, evaluated=len(lines),
                                failures=[t for ok, t in lines if not ok], rows=rows)
    report = {"checks": name, "data": redact(where), "success": success,
              "results": [{"success": ok, "text": t} for ok, t in lines], "details": details or {}}
    _write_reports(outcome, report_dir, where, report, lines)
    log.info("checks %s on %s: %s (%d checks, %d failed)", name, redact(where), "passed" if success else "FAILED",
             len(lines), len(outcome.failures))
    return outcome


# ---------------------------------------------------------------------------- quarantine

def quarantine_input(source: str, error: BiotuneError, run_id: str = "") -> BiotuneError:
    """Move ``source`` to quarantine because of ``error``; return the error to raise.

    The returned error has the same type and failures as ``error``; its fix says where the
    input went, or, when the move failed (read-only or full quarantine folder), that the input
    is still in place and why it could not be moved: the original cause is never hidden."""
    return _quarantine(source, error, run_id)[0]


def _quarantine(source: str, error: BiotuneError, run_id: str) -> tuple[BiotuneError, str | None]:
    failures = list(getattr(error, "failures", []) or [])
    reason = error.what + ("\n" + "\n".join(failures) if failures else "")
    moved = None
    try:
        moved = storage.quarantine(source, reason=reason, run_id=run_id)
        fix = f"{error.fix} (the input was moved to {moved})" if error.fix else f"the input was moved to {moved}"
        what = error.what
    except BiotuneError as qexc:
        what = f"{error.what}; it could NOT be moved to quarantine ({qexc.what}) and is still at {source}"
        fix = (f"{error.fix}; " if error.fix else "") + f"do not use {source} until it is corrected; {qexc.fix}"
    cls = type(error)
    where = error.where or source
    if isinstance(error, DataValidationError):
        try:
            return cls(what, where=where, fix=fix, failures=failures), moved
        except TypeError:
            return DataValidationError(what, where=where, fix=fix, failures=failures), moved
    try:
        return cls(what, where=where, fix=fix), moved
    except TypeError:  # a subclass with another signature
        return InputFormatError(what, where=where, fix=fix), moved


def _fail(outcome: ValidationOutcome, suite_name: str, source: str, run_id: str) -> BiotuneError:
    error = DataValidationError(
        f"{source} failed expectation suite {suite_name} ({len(outcome.failures)} of {outcome.evaluated} "
        "checks failed)", where=source, fix="correct the data and land it again", failures=outcome.failures)
    raised, moved = _quarantine(source, error, run_id)
    if moved:  # the reports go beside the quarantined input (best effort: the move already happened)
        dest_dir = moved.rsplit("/", 1)[0] if storage.is_s3(moved) else str(Path(moved).parent)
        for report in (outcome.report_json, outcome.report_html):
            if report:
                try:
                    storage.write_bytes(storage.join(dest_dir, "validation_" + Path(report).name),
                                        storage.read_bytes(report))
                except BiotuneError as exc:
                    log.warning("could not copy %s beside the quarantined input: %s", report, exc)
    return raised


def validate_or_quarantine(frame, suite_name: str, source: str, run_id: str = "",
                           report_dir: str | None = None) -> ValidationOutcome:
    """Validate; on failure move ``source`` to quarantine with the report beside it and raise.

    ``frame`` is what was read from ``source``. When the quarantine itself fails, the raised
    DataValidationError still lists every failed expectation and says the input stayed put.
    """
    report_dir = report_dir or storage.lake_path("reports", "validation", _safe(run_id or "manual"))
    outcome = run_suite(frame, suite_name, where=source, report_dir=report_dir)
    if outcome.success:
        return outcome
    raise _fail(outcome, suite_name, source, run_id)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def validate_file(path: str, suite_name: str, reader: str, run_id: str = "", report_dir: str | None = None,
                  quarantine: bool = True, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> ValidationOutcome:
    """Validate a landed file, every row of it; on failure quarantine it and raise.

    Suites whose expectations add up over chunks are streamed (bounded memory, any size); the
    others (unique keys, means...) read the file whole. A file that cannot be read is bad input
    too: it is quarantined and InputFormatError says why. With ``quarantine=False`` nothing is
    moved (the CLI's check). A quarantine that fails never hides the validation failure.
    """
    report_dir = report_dir or storage.lake_path("reports", "validation", _safe(run_id or "manual"))
    suite_dict = load_suite_dict(suite_name)
    try:
        with storage.local_copy(path) as local:
            if not unchunkable(suite_dict):
                outcome = run_suite_chunked(iter_file(path, local, reader, chunk_rows), suite_name, where=path,
                                            report_dir=report_dir)
            else:
                frames = list(iter_file(path, local, reader, chunk_rows))
                import pandas as pd

                frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
                outcome = run_suite(frame, suite_name, where=path, report_dir=report_dir)
    except InputFormatError as exc:
        raise (quarantine_input(path, exc, run_id) if quarantine else exc) from exc
    if outcome.success or not quarantine:
        return outcome
    raise _fail(outcome, suite_name, path, run_id)
