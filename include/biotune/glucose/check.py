"""Chat-JSONL checker for fine-tuning files: streaming, every problem with its line number.

Checks, in the order a line meets them:

file/line   ``empty_file``, ``bom`` (a UTF-8 byte-order mark), ``crlf`` (Windows line ends;
            reported once with the first line and the count), ``blank_line``,
            ``line_too_long`` (over ``max_line_bytes``: skipped without being held in memory),
            ``invalid_utf8``, ``invalid_json`` (with the column)
OpenAI      the chat-format checker of OpenAI's cookbook, same codes: ``data_type`` (not an
            object), ``missing_messages_list``, ``message_missing_key`` (role/content),
            ``message_unrecognized_key`` (keys other than role, content, name, function_call,
            weight), ``unrecognized_role`` (system, user, assistant, function),
            ``missing_content`` (empty or not a string, no function_call),
            ``example_missing_assistant_message``; plus the cookbook's warnings
            ``missing_system_message`` / ``missing_user_message``
biotune     ``role_order`` (system only first; user and assistant alternate, starting with
            user, ending with assistant), ``bad_weight`` (``weight`` only on assistant
            messages, 0 or 1; not every assistant message at 0), ``too_many_tokens`` (over
            the target model's training limit, :mod:`biotune.glucose.tokens`),
            ``duplicate`` (same messages as an earlier line), ``pii_email``/``pii_phone``/
            ``pii_dob``/``pii_name``, ``unsafe_lows`` (the prompt states frequent lows and the
            answer neither says how to treat them nor to get care), ``answer_format``
            (warning: an answer without the six recommendation fields)
file        ``too_few_examples`` (< 10, OpenAI's minimum), ``few_examples`` (warning, < 50)

Memory stays bounded: lines are read one at a time (a line longer than ``max_line_bytes`` is
skipped in chunks), issues are kept up to ``max_issues_per_code`` per code (all are counted),
and duplicates are found through an 8-byte digest per example (~100 bytes of Python objects
each: 100 MB of JSONL ~ 30,000 examples ~ 3 MB).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from biotune.errors import DataValidationError, MissingInputError
from biotune.glucose import answers, pii, prompt, tokens

ALLOWED_KEYS = ("role", "content", "name", "function_call", "weight")
ROLES = ("system", "user", "assistant", "function")
BOM = b"\xef\xbb\xbf"
MIN_EXAMPLES, WARN_EXAMPLES = 10, 50

WARNINGS = {"few_examples", "answer_format", "missing_system_message", "missing_user_message"}
FIXES = {
    "bom": "save the file as UTF-8 without a byte-order mark",
    "crlf": "convert line endings to LF (\\n), e.g. `dos2unix FILE`",
    "blank_line": "remove empty lines: JSONL holds exactly one JSON object per line",
    "invalid_json": "each line must be one complete JSON object",
    "invalid_utf8": "save the file as UTF-8",
    "too_many_tokens": "shorten the example or split the conversation",
    "duplicate": "remove repeated examples; they weight training and leak across splits",
    "unsafe_lows": "add a recommendation to treat lows (15 g fast-acting carbs, recheck) and to contact the care team",
    "too_few_examples": "add examples: OpenAI needs at least 10",
}


@dataclass
class Issue:
    line: int
    code: str
    message: str

    @property
    def severity(self) -> str:
        return "warning" if self.code in WARNINGS else "error"

    def __str__(self) -> str:
        return f"line {self.line}: {self.code}: {self.message}" if self.line else f"{self.code}: {self.message}"


@dataclass
class CheckReport:
    path: str
    model: str
    encoding: str
    token_limit: int
    n_lines: int = 0
    n_examples: int = 0
    issues: list[Issue] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    token_stats: dict = field(default_factory=dict)
    seconds: float = 0.0
    bytes: int = 0

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def n_errors(self) -> int:
        return sum(n for code, n in self.counts.items() if code not in WARNINGS)

    @property
    def ok(self) -> bool:
        return self.n_errors == 0

    def as_dict(self) -> dict:
        return {
            "path": self.path, "ok": self.ok, "model": self.model, "encoding": self.encoding,
            "token_limit": self.token_limit, "n_lines": self.n_lines, "n_examples": self.n_examples,
            "n_errors": self.n_errors, "counts": dict(sorted(self.counts.items())),
            "errors": [vars(i) for i in self.errors], "warnings": [vars(i) for i in self.warnings],
            "tokens": self.token_stats, "seconds": round(self.seconds, 3), "bytes": self.bytes,
            "examples_per_s": round(self.n_examples / self.seconds, 1) if self.seconds else None,
        }

    def failures(self, limit: int = 200) -> list[str]:
        return [str(i) for i in self.errors[:limit]]

    def raise_for_errors(self) -> None:
        """A typed error listing each failure (line: code: message) when the file has errors."""
        if self.ok:
            return
        codes = ", ".join(f"{c} x{n}" for c, n in sorted(self.counts.items()) if c not in WARNINGS)
        first = self.errors[0].code if self.errors else ""
        raise DataValidationError(
            f"chat JSONL check failed: {self.n_errors} problem(s) ({codes})", where=self.path,
            fix=FIXES.get(first, "fix each listed line and re-run `biotune glucose check`"),
            failures=self.failures())


class _Checker:
    def __init__(self, report: CheckReport, max_issues_per_code: int, check_safety: bool, check_pii: bool):
        self.r = report
        self.cap = max_issues_per_code
        self.seen: dict[int, int] = {}
        self.check_safety, self.check_pii = check_safety, check_pii
        self.tok_n = self.tok_sum = self.tok_max = self.asst_sum = self.over = 0
        self.tok_min = None
        self.billing = 0

    def add(self, line: int, code: str, message: str) -> None:
        self.r.counts[code] += 1
        if self.r.counts[code] <= self.cap:
            self.r.issues.append(Issue(line, code, message))

    def example(self, line: int, ex) -> None:
        r = self.r
        r.n_examples += 1
        if not isinstance(ex, dict):
            self.add(line, "data_type", f"the line is a JSON {type(ex).__name__}, not an object with \"messages\"")
            return
        messages = ex.get("messages", None)
        if not messages or not isinstance(messages, list):
            self.add(line, "missing_messages_list", "no non-empty \"messages\" list")
            return
        roles = []
        for i, m in enumerate(messages, 1):
            if not isinstance(m, dict):
                self.add(line, "message_missing_key", f"message {i} is not an object")
                roles.append(None)
                continue
            if "role" not in m or "content" not in m:
                missing = [k for k in ("role", "content") if k not in m]
                self.add(line, "message_missing_key", f"message {i} has no {' or '.join(missing)}")
            extra = [k for k in m if k not in ALLOWED_KEYS]
            if extra:
                self.add(line, "message_unrecognized_key", f"message {i} has unrecognized key(s) {extra}")
            role = m.get("role", None)
            if role not in ROLES:
                self.add(line, "unrecognized_role", f"message {i} has role {role!r}; use one of {', '.join(ROLES)}")
            content, function_call = m.get("content", None), m.get("function_call", None)
            if (not content and not function_call) or not isinstance(content, str):
                what = "empty" if content == "" else "missing" if content is None else f"a {type(content).__name__}"
                self.add(line, "missing_content", f"message {i} ({role}) content is {what}")
            if "weight" in m:
                w = m["weight"]
                if role != "assistant":
                    self.add(line, "bad_weight", f"message {i} ({role}) has a weight; only assistant messages may")
                elif type(w) is not int or w not in (0, 1):
                    self.add(line, "bad_weight", f"message {i} weight is {w!r}; use 0 or 1")
            roles.append(role)
        if "assistant" not in roles:
            self.add(line, "example_missing_assistant_message", "no assistant message")
        else:
            weights = [m.get("weight", 1) for m in messages if isinstance(m, dict) and m.get("role") == "assistant"]
            if all(w == 0 for w in weights):
                self.add(line, "bad_weight", "every assistant message has weight 0: nothing to learn")
        if "system" not in roles:
            self.add(line, "missing_system_message", "no system message")
        if "user" not in roles:
            self.add(line, "missing_user_message", "no user message")
        self._role_order(line, roles)

        n_tokens, n_asst = tokens.count_messages(messages, r.encoding)
        self.tok_n += 1
        self.tok_sum += n_tokens
        self.asst_sum += n_asst
        self.tok_max = max(self.tok_max, n_tokens)
        self.tok_min = n_tokens if self.tok_min is None else min(self.tok_min, n_tokens)
        self.billing += min(n_tokens, r.token_limit)
        if n_tokens > r.token_limit:
            self.over += 1
            self.add(line, "too_many_tokens", f"{n_tokens:,} tokens, over the {r.token_limit:,}-token limit of {r.model}")

        canon = json.dumps(messages, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        digest = int.from_bytes(hashlib.blake2b(canon.encode("utf-8"), digest_size=8).digest(), "big")
        first = self.seen.setdefault(digest, line)
        if first != line:
            self.add(line, "duplicate", f"same messages as line {first}")

        if self.check_pii:
            for i, m in enumerate(messages, 1):
                if isinstance(m, dict) and isinstance(m.get("content"), str):
                    found = pii.find_pii(m["content"])
                    for kind in sorted({k for k, _ in found}):
                        hits = [pii.mask(t) for k, t in found if k == kind]
                        self.add(line, f"pii_{kind}",
                                 f"message {i} ({m.get('role')}) contains a {kind}: {', '.join(hits[:3])}")
        self._content(line, messages)

    def _role_order(self, line: int, roles: list) -> None:
        if None in roles or any(r not in ROLES for r in roles):
            return  # already reported
        if "system" in roles[1:]:
            self.add(line, "role_order",
                     f"a system message at position {roles.index('system', 1) + 1}; only the first may be system")
            return
        turns = [r for r in roles if r in ("user", "assistant")]
        if turns and turns[0] != "user":
            self.add(line, "role_order", "the first message after the system message must be from the user")
            return
        for i in range(1, len(turns)):
            if turns[i] == turns[i - 1]:
                self.add(line, "role_order",
                         f"two {turns[i]} messages in a row (turn {i + 1}); user and assistant must alternate")
                return
        if turns and turns[-1] != "assistant":
            self.add(line, "role_order", "the example ends with a user message; it must end with the assistant's answer")

    def _content(self, line: int, messages: list) -> None:
        user = None
        for m in messages:
            if not isinstance(m, dict) or not isinstance(m.get("content"), str):
                continue
            if m.get("role") == "user":
                user = m["content"]
            elif m.get("role") == "assistant" and m["content"]:
                if self.check_safety and user is not None and not answers.safety_ok(user, m["content"]):
                    nums = prompt.parse_user_message(user)
                    self.add(line, "unsafe_lows",
                             f"the prompt states frequent lows ({nums.get('lows_pct')}% below 70, "
                             f"{nums.get('low_episodes')} episodes) and the answer neither says how to treat "
                             "them nor to contact the care team")
                if user is not None and not answers.format_ok(m["content"]):
                    self.add(line, "answer_format", "the answer is not numbered recommendations with Title, "
                                                    "Description, Category, Priority, Action and Timing")

    def finish(self) -> None:
        r = self.r
        epochs = tokens.default_epochs(r.n_examples)
        r.token_stats = {
            "n": self.tok_n, "min": self.tok_min, "max": self.tok_max,
            "mean": round(self.tok_sum / self.tok_n, 1) if self.tok_n else None,
            "mean_assistant": round(self.asst_sum / self.tok_n, 1) if self.tok_n else None,
            "n_over_limit": self.over, "total": self.tok_sum, "default_epochs": epochs,
            "billing_tokens_estimate": self.billing * epochs,
        }


def check_file(path, model: str = tokens.DEFAULT_MODEL, max_tokens: int | None = None,
               min_examples: int = MIN_EXAMPLES, warn_examples: int = WARN_EXAMPLES,
               max_issues_per_code: int = 100, max_line_bytes: int = 8 * 1024 * 1024,
               check_safety: bool = True, check_pii: bool = True) -> CheckReport:
    """Check a chat JSONL file line by line; returns the report (``report.raise_for_errors()`` to fail)."""
    p = Path(path)
    if not p.is_file():
        raise MissingInputError(f"no file at {path}", where=str(path), fix="check the path")
    limit = tokens.token_limit(model, max_tokens)
    report = CheckReport(path=str(path), model=model, encoding=tokens.encoding_name(model), token_limit=limit)
    chk = _Checker(report, max_issues_per_code, check_safety, check_pii)
    t0 = time.perf_counter()
    crlf_first, crlf_n, content_lines = 0, 0, 0
    with open(p, "rb") as fh:
        lineno = 0
        while True:
            raw = fh.readline(max_line_bytes + 1)
            if not raw:
                break
            lineno += 1
            report.bytes += len(raw)
            if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):  # skip the rest of the line in chunks
                    raw = fh.readline(max_line_bytes)
                    report.bytes += len(raw)
                chk.add(lineno, "line_too_long", f"the line is longer than {max_line_bytes:,} bytes; not read")
                content_lines += 1
                continue
            if lineno == 1 and raw.startswith(BOM):
                chk.add(1, "bom", "the file starts with a UTF-8 byte-order mark")
                raw = raw[len(BOM):]
            if raw.endswith(b"\r\n"):
                crlf_n += 1
                crlf_first = crlf_first or lineno
                raw = raw[:-2]
            elif raw.endswith(b"\n"):
                raw = raw[:-1]
            if not raw.strip():
                chk.add(lineno, "blank_line", "empty line")
                continue
            content_lines += 1
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                chk.add(lineno, "invalid_utf8", f"byte {exc.start + 1} is not UTF-8")
                continue
            try:
                ex = json.loads(text)
            except json.JSONDecodeError as exc:
                chk.add(lineno, "invalid_json", f"{exc.msg} at column {exc.colno}")
                continue
            chk.example(lineno, ex)
    report.n_lines = lineno
    if crlf_n:
        chk.add(crlf_first, "crlf", f"{crlf_n} line(s) end with CRLF (Windows line endings), the first is line {crlf_first}")
    if content_lines == 0:
        chk.add(0, "empty_file", "the file has no examples" + (" (0 bytes)" if report.bytes == 0 else " (only blank lines)"))
    elif report.n_examples < min_examples:
        chk.add(0, "too_few_examples", f"{report.n_examples} example(s); OpenAI needs at least {min_examples}")
    elif report.n_examples < warn_examples:
        chk.add(0, "few_examples", f"{report.n_examples} examples; {warn_examples}+ usually needed to see an improvement")
    chk.finish()
    report.issues.sort(key=lambda i: (i.line, i.code))
    report.seconds = time.perf_counter() - t0
    return report


def validate_file(path, **kwargs) -> CheckReport:
    """Check and raise :class:`DataValidationError` (with each failure) when the file has errors."""
    report = check_file(path, **kwargs)
    report.raise_for_errors()
    return report
