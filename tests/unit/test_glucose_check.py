"""The chat-JSONL checker: each bad case flagged with its line, the CLI, the typed error, tokens."""

from __future__ import annotations

import argparse
import json

import pytest

from biotune.errors import DataValidationError, MissingInputError, SpecError
from biotune.glucose import check, dataset, pii, synth, tokens
from biotune.glucose.cli import add_commands


@pytest.fixture(scope="module")
def good_rows(tmp_path_factory):
    root = tmp_path_factory.mktemp("glucose_chk")
    synth.write_patients(root / "src", n_patients=20, days=3, seed=5)
    return dataset.build_examples(root / "src", seed=5)


def _write(path, rows, raw_lines=()):
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps({"messages": row["messages"]} if "messages" in row and "example_id" in row else row) + "\n")
        for line in raw_lines:
            fh.write(line + "\n")
    return path


def _codes(report):
    return {(i.line, i.code) for i in report.issues}


def _ex(*pairs, extra=None):
    extra = extra or {}
    return {"messages": [dict(role=r, content=c, **extra.get(i, {})) for i, (r, c) in enumerate(pairs)]}


def test_generated_dataset_passes(good_rows, tmp_path):
    path = _write(tmp_path / "good.jsonl", good_rows)
    report = check.check_file(path)
    assert report.ok, report.failures()
    assert report.n_examples == len(good_rows) == 60 and not report.warnings
    t = report.token_stats
    assert 300 < t["min"] <= t["mean"] <= t["max"] < 2000 and t["n_over_limit"] == 0
    assert report.as_dict()["examples_per_s"] > 0


def test_openai_cookbook_checks_each_with_its_line(good_rows, tmp_path):
    sys_, user, asst = (m["content"] for m in good_rows[0]["messages"])
    bad = [
        [1, 2],                                                    # 11 data_type
        {"prompt": "x", "completion": "y"},                        # 12 missing_messages_list
        {"messages": [{"role": "user"}, {"role": "assistant", "content": asst}]},          # 13 missing key
        _ex(("user", "hi"), ("assistant", asst), extra={1: {"tool_calls": []}}),             # 14 unrecognized key
        _ex(("user", "hi"), ("bot", asst)),                                                # 15 unrecognized role
        _ex(("system", sys_), ("user", "hi"), ("assistant", "")),                          # 16 empty assistant
        _ex(("system", sys_), ("user", "hi")),                                             # 17 no assistant
    ]
    path = _write(tmp_path / "bad.jsonl", good_rows[:10] + bad)
    report = check.check_file(path)
    codes = _codes(report)
    for line, code in [(11, "data_type"), (12, "missing_messages_list"), (13, "message_missing_key"),
                       (14, "message_unrecognized_key"), (15, "unrecognized_role"), (16, "missing_content"),
                       (17, "example_missing_assistant_message"), (17, "role_order")]:
        assert (line, code) in codes, (line, code, sorted(codes))
    assert (16, "missing_content") in codes and "content is empty" in str(
        next(i for i in report.issues if i.line == 16 and i.code == "missing_content"))
    assert not any(i.line <= 10 for i in report.errors)


def test_role_order_weight_duplicates_pii_and_safety(good_rows, tmp_path):
    sys_, user, asst = (m["content"] for m in good_rows[0]["messages"])
    lows_user = next(r["messages"][1]["content"] for r in good_rows if r["frequent_lows"])
    calm_user = next(r["messages"][1]["content"] for r in good_rows if not r["frequent_lows"])
    unsafe = ("Based on your data, here are my recommendations:\n\n1. Title: Pre-bolus\nDescription: Take insulin "
              "earlier.\nCategory: insulin\nPriority: high\nAction: Bolus 15 minutes before meals\nTiming: Meals")
    extra = [
        _ex(("user", user), ("system", sys_), ("assistant", asst)),                          # 11 system not first
        _ex(("system", sys_), ("user", user), ("user", user), ("assistant", asst)),        # 12 user twice
        _ex(("system", sys_), ("user", user), ("assistant", asst), extra={2: {"weight": 2}}),  # 13 weight 2
        _ex(("system", sys_), ("user", user), ("assistant", asst), extra={1: {"weight": 1}}),  # 14 weight on user
        good_rows[3]["messages"] and {"messages": good_rows[3]["messages"]},                 # 15 duplicate of 4
        _ex(("system", sys_), ("user", "My name is Maria, email maria.g@example.com, phone (555) 123-4567, "
                                       "date of birth 03/14/1985.\n" + user), ("assistant", asst)),  # 16 PII
        _ex(("system", sys_), ("user", lows_user), ("assistant", unsafe)),                   # 17 unsafe
        _ex(("system", sys_), ("user", calm_user), ("assistant", "Eat less sugar.")),        # 18 format warning
    ]
    path = _write(tmp_path / "bad2.jsonl", good_rows[:10] + extra)
    report = check.check_file(path)
    codes = _codes(report)
    for line, code in [(11, "role_order"), (12, "role_order"), (13, "bad_weight"), (14, "bad_weight"),
                       (15, "duplicate"), (16, "pii_name"), (16, "pii_email"), (16, "pii_phone"), (16, "pii_dob"),
                       (17, "unsafe_lows"), (18, "answer_format")]:
        assert (line, code) in codes, (line, code, sorted(codes))
    assert "same messages as line 4" in str(next(i for i in report.issues if i.code == "duplicate"))
    pii_msg = str(next(i for i in report.issues if i.code == "pii_email"))
    assert "maria.g@example.com" not in pii_msg  # the report masks what it found
    assert next(i for i in report.issues if i.code == "answer_format").severity == "warning"
    assert {i.code for i in report.errors if i.line == 18} == set()


def test_file_level_problems(good_rows, tmp_path):
    lines = [json.dumps({"messages": r["messages"]}) for r in good_rows[:12]]
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\n")
    assert (1, "bom") in _codes(check.check_file(bom))
    crlf = tmp_path / "crlf.jsonl"
    crlf.write_bytes("\r\n".join(lines).encode() + b"\r\n")
    r = check.check_file(crlf)
    assert (1, "crlf") in _codes(r) and r.counts["crlf"] == 1 and "12 line(s)" in r.failures()[0]
    assert r.n_examples == 12  # the lines themselves are still checked
    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(("\n".join(lines[:5]) + '\n{"messages": [\n\n' + "\n".join(lines[5:]) + "\n").encode()
                       + b'{"messages": "\xff"}\n')
    r = check.check_file(broken)
    assert {(6, "invalid_json"), (7, "blank_line"), (15, "invalid_utf8")} <= _codes(r)
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert (0, "empty_file") in _codes(check.check_file(empty))
    few = _write(tmp_path / "few.jsonl", good_rows[:9])
    assert (0, "too_few_examples") in _codes(check.check_file(few))
    some = _write(tmp_path / "some.jsonl", good_rows[:20])
    r = check.check_file(some)
    assert r.ok and (0, "few_examples") in _codes(r)
    with pytest.raises(MissingInputError):
        check.check_file(tmp_path / "absent.jsonl")


def test_token_limit_and_long_lines(good_rows, tmp_path):
    path = _write(tmp_path / "t.jsonl", good_rows[:12])
    r = check.check_file(path, max_tokens=400)
    assert r.counts["too_many_tokens"] == r.token_stats["n_over_limit"] > 0
    assert "over the 400-token limit" in str(next(i for i in r.issues if i.code == "too_many_tokens"))
    with pytest.raises(SpecError, match="max-tokens"):
        check.check_file(path, model="accounts/fireworks/models/some-model")
    big = tmp_path / "long.jsonl"
    with open(big, "w") as fh:
        for row in good_rows[:11]:
            fh.write(json.dumps({"messages": row["messages"]}) + "\n")
        fh.write(json.dumps({"messages": [{"role": "user", "content": "x" * 5000}]}) + "\n")
    r = check.check_file(big, max_line_bytes=4096)
    assert (12, "line_too_long") in _codes(r) and r.n_lines == 12


def test_issues_are_capped_but_counted(good_rows, tmp_path):
    path = _write(tmp_path / "many.jsonl", [], raw_lines=["{not json"] * 300)
    r = check.check_file(path, max_issues_per_code=50)
    assert r.counts["invalid_json"] == 300 and sum(i.code == "invalid_json" for i in r.issues) == 50


def test_validate_raises_typed_error_with_failures(good_rows, tmp_path):
    path = _write(tmp_path / "v.jsonl", good_rows[:10], raw_lines=["{oops"])
    with pytest.raises(DataValidationError) as exc:
        check.validate_file(path)
    assert exc.value.failures[0].startswith("line 11: invalid_json") and exc.value.where == str(path)
    ok = _write(tmp_path / "ok.jsonl", good_rows[:12])
    assert check.validate_file(ok).ok


def test_cli_check(good_rows, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    ok = _write(tmp_path / "ok.jsonl", good_rows[:12])
    args = parser.parse_args(["glucose", "check", str(ok), "--json"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["n_examples"] == 12
    bad = _write(tmp_path / "bad.jsonl", good_rows[:12], raw_lines=["[]"])
    args = parser.parse_args(["glucose", "check", str(bad)])
    assert args.func(args) == 1
    out = capsys.readouterr().out
    assert "line 13: data_type" in out and out.strip().endswith("FAILED")


def test_token_counts_match_openai_vocabulary():
    # ids from OpenAI's o200k_base / cl100k_base vocabularies (tiktoken); the wheel ships them
    assert list(tokens.get_encoder("cl100k_base").encode("hello world")) == [15339, 1917]
    assert list(tokens.get_encoder("o200k_base").encode("hello world")) == [24912, 2375]
    msgs = [{"role": "system", "content": "hi"}, {"role": "user", "content": "hello world", "name": "x"}]
    total, asst = tokens.count_messages(msgs)
    assert total == 3 + (3 + 1 + 1) + (3 + 1 + 2 + 1 + 1) and asst == 0  # role tokens: system/user = 1 each
    assert tokens.encoding_name("gpt-3.5-turbo-0125") == "cl100k_base" and tokens.encoding_name("gpt-4o-mini") == "o200k_base"
    assert tokens.default_epochs(10) == 10 and tokens.default_epochs(100) == 3 and tokens.default_epochs(20000) == 1


def test_pii_rules_and_no_false_alarms_on_clinical_text(good_rows):
    found = dict(pii.find_pii("Patient: Linda Martinez, DOB: 1990-02-11, call +44 20 7946 0958 or write to l.m@x.org"))
    assert set(found) == {"name", "dob", "phone", "email"}
    assert pii.find_pii("Hi Robert, your glucose rose 40 mg/dL at 07:30 on 2024-03-01.")[0] == ("name", "Robert")
    assert pii.find_pii("Dawn phenomenon: +42.0 mg/dL from 02:35; Grace period 70-180 mg/dL; born in 1985") == [
        ("dob", "born in 1985")]
    for row in good_rows:
        for m in row["messages"]:
            assert pii.find_pii(m["content"]) == [], m["content"][:200]
