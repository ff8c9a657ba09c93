"""Run a Great Expectations suite from expectations/ on a data frame or a parquet file.

Suites are plain GX 1.x JSON files (``{"name", "expectations": [{"type", "kwargs"}], "meta"}``)
loaded into an ephemeral GX context: the GX Airflow provider cannot be installed beside
Airflow 3.3, and an ephemeral context keeps no state between runs. Every run writes the
GX result (JSON) and a readable HTML page; a failure raises DataValidationError listing
every failed expectation.
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from biotune import settings, storage
from biotune.errors import DataValidationError, MissingInputError, SpecError

log = logging.getLogger(__name__)


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

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def suite_path(suite_name: str) -> Path:
    return settings.expectations_dir() / f"{suite_name}.json"


def load_suite_dict(suite_name: str) -> dict:
    path = suite_path(suite_name)
    if not path.exists():
        raise MissingInputError(f"no expectation suite named {suite_name}", where=str(path),
                                fix=f"add {path.name} to {settings.expectations_dir()}")
    try:
        suite = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SpecError(f"suite is not valid JSON: {exc}", where=str(path), fix="fix the JSON syntax") from exc
    if not isinstance(suite.get("expectations"), list):
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


def _describe_failure(result) -> str:
    cfg = result.expectation_config
    kwargs = {k: v for k, v in cfg.kwargs.items() if k != "batch_id"}
    target = kwargs.pop("column", None)
    detail = result.result or {}
    bits = []
    if detail.get("unexpected_count") is not None:
        bits.append(f"{detail['unexpected_count']} unexpected ({detail.get('unexpected_percent', 0):.2f}%)")
        sample = detail.get("partial_unexpected_list") or []
        if sample:
            bits.append(f"e.g. {sample[:5]}")
    if "observed_value" in detail:
        bits.append(f"observed {detail['observed_value']}")
    info = result.exception_info or {}
    if info.get("raised_exception"):
        bits.append(f"error: {info.get('exception_message')}")
    args = ", ".join(f"{k}={v}" for k, v in kwargs.items() if k not in ("result_format",))
    col = f"column {target}: " if target else ""
    return f"{col}{cfg.type}({args})" + (f" -> {'; '.join(bits)}" if bits else "")


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
<p>Data: <code>{html.escape(where)}</code> ({rows} rows)</p>
<table>{lines}</table></body></html>"""


def run_suite(frame, suite_name: str, where: str, report_dir: str | None = None) -> ValidationOutcome:
    """Validate ``frame`` against the suite; write the reports; return the outcome (never raises on failure)."""
    import great_expectations as gx

    suite_dict = load_suite_dict(suite_name)
    to_run, skipped = _applicable(suite_dict, frame.columns)
    suite = _build_suite(suite_dict, str(suite_path(suite_name)), to_run)
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    try:
        context.variables.progress_bars = {"globally": False}
    except Exception:  # cosmetic only
        pass
    batch_def = (context.data_sources.add_pandas("biotune").add_dataframe_asset(name=suite_name)
                 .add_batch_definition_whole_dataframe("whole"))
    result = batch_def.get_batch(batch_parameters={"dataframe": frame}).validate(suite)
    rows = [(r.success, _describe_failure(r) if not r.success else
             f"{r.expectation_config.type}({', '.join(f'{k}={v}' for k, v in r.expectation_config.kwargs.items() if k != 'batch_id')})")
            for r in result.results]
    outcome = ValidationOutcome(suite=suite_name, success=bool(result.success), evaluated=len(result.results),
                                failures=[text for ok, text in rows if not ok], rows=len(frame), skipped=skipped)
    rows += [(True, text) for text in skipped]
    if report_dir:
        outcome.report_json = storage.write_json(storage.join(report_dir, f"{suite_name}.json"), result.to_json_dict())
        outcome.report_html = storage.write_text(storage.join(report_dir, f"{suite_name}.html"),
                                                 _render_html(suite_name, where, rows, outcome.success, len(frame)))
    log.info("suite %s on %s: %s (%d expectations, %d failed)", suite_name, where,
             "passed" if outcome.success else "FAILED", outcome.evaluated, len(outcome.failures))
    return outcome


def validate_or_quarantine(frame, suite_name: str, source: str, run_id: str = "",
                           report_dir: str | None = None) -> ValidationOutcome:
    """Validate; on failure move ``source`` to quarantine with the report beside it and raise.

    ``frame`` is what was read from ``source`` (or a sample of it).
    """
    report_dir = report_dir or storage.lake_path("reports", "validation", _safe(run_id or "manual"))
    outcome = run_suite(frame, suite_name, where=source, report_dir=report_dir)
    if outcome.success:
        return outcome
    moved = storage.quarantine(source, reason=f"failed suite {suite_name}: " + "; ".join(outcome.failures),
                               run_id=run_id)
    dest_dir = moved.rsplit("/", 1)[0] if storage.is_s3(moved) else str(Path(moved).parent)
    for report in (outcome.report_json, outcome.report_html):
        storage.write_bytes(storage.join(dest_dir, "validation_" + Path(report).name), storage.read_bytes(report))
    raise DataValidationError(
        f"{source} failed expectation suite {suite_name} ({len(outcome.failures)} of {outcome.evaluated} failed)",
        where=source,
        fix=f"the input was moved to {moved} with the report beside it; correct the data and land it again",
        failures=outcome.failures,
    )


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def read_frame(path: str, reader: str, row_limit: int | None = None):
    """Read a landed file (or its first ``row_limit`` rows) into a frame for its suite.

    Readers: ``xpt`` (SAS XPORT through pyreadstat), ``csv``, ``jsonl``, ``parquet``.
    """
    import pandas as pd

    with storage.local_copy(path) as local:
        if reader == "xpt":
            from biotune.xport import read_table

            return read_table(local, row_limit=row_limit)
        if reader == "csv":
            return pd.read_csv(local, nrows=row_limit)
        if reader == "jsonl":
            return pd.read_json(local, lines=True, nrows=row_limit)
        if reader == "parquet":
            frame = pd.read_parquet(local)
            return frame.head(row_limit) if row_limit else frame
    raise ValueError(f"unknown reader {reader!r}: use xpt, csv, jsonl or parquet")
