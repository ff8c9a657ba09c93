"""Episode labels in the biotune database: overlaps refused, DSM-5 warnings, undo, day targets, CLI."""

from __future__ import annotations

import argparse
import datetime as dt
import json

import numpy as np
import pytest

from biotune.errors import InputFormatError, MissingInputError
from biotune.mood.personal import crypto, labels


@pytest.fixture
def db(tmp_path, monkeypatch):
    monkeypatch.setenv(crypto.ENV_KEY, crypto.new_key())
    uri = f"sqlite:///{tmp_path / 'biotune.db'}"
    monkeypatch.setenv("BIOTUNE_DRIFT_DB", uri)
    monkeypatch.setenv("BIOTUNE_LAKE", str(tmp_path / "lake"))
    yield uri
    from biotune import monitoring

    monitoring.dispose(uri)


def test_store_list_and_pseudonymous_ids(db):
    lab, warnings = labels.add("alice", "depressive", "2024-03-01", "2024-03-20", 3, require_known=False)
    assert warnings == [] and lab.days == 20 and lab.person == crypto.pseudonym("alice")
    labels.add("alice", "baseline", "2024-02-01", "2024-02-29", require_known=False)
    labels.add("bob", "manic", "2024-03-01", "2024-03-09", require_known=False)
    rows = labels.list_labels("alice")
    assert [r.kind for r in rows] == ["baseline", "depressive"]
    assert all("alice" not in r.person for r in labels.list_labels())
    import sqlalchemy as sa

    with labels.engine(db).connect() as conn:
        stored = [r.person for r in conn.execute(sa.text(f"select person from {labels.TABLE}"))]
    assert "alice" not in stored and "bob" not in stored


def test_overlap_refused_naming_both(db):
    labels.add("alice", "depressive", "2024-03-01", "2024-03-20", require_known=False)
    with pytest.raises(labels.LabelOverlapError) as err:
        labels.add("alice", "manic", "2024-03-15", "2024-03-25", require_known=False)
    msg = str(err.value)
    assert "manic label 2024-03-15..2024-03-25" in msg and "depressive 2024-03-01..2024-03-20" in msg
    with pytest.raises(labels.LabelOverlapError):
        labels.add("alice", "baseline", "2024-03-20", "2024-04-01", require_known=False)   # inclusive end
    labels.add("alice", "baseline", "2024-03-21", "2024-04-01", require_known=False)
    labels.add("bob", "manic", "2024-03-15", "2024-03-25", require_known=False)           # another person


def test_dsm5_minimum_durations_warn(db):
    for kind, days in (("depressive", 14), ("manic", 7), ("hypomanic", 4), ("mixed", 7)):
        start = dt.date(2024, 1, 1) + dt.timedelta(days=40 * ["depressive", "manic", "hypomanic", "mixed"].index(kind))
        _, warnings = labels.add("carol", kind, start, start + dt.timedelta(days=days - 2), require_known=False)
        assert len(warnings) == 1 and f"at least {days} days" in warnings[0]
        _, warnings = labels.add("dan", kind, start, start + dt.timedelta(days=days - 1), require_known=False)
        assert warnings == []


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="depressive", start="2024-03-10", end="2024-03-01"), "ends"),
    (dict(kind="sad", start="2024-03-01", end="2024-03-10"), "unknown label kind"),
    (dict(kind="manic", start="2024-03-01", end="2024-03-10", severity=7), "outside 1-5"),
    (dict(kind="manic", start="March 1", end="2024-03-10"), "not a date"),
])
def test_bad_labels(db, kwargs, message):
    with pytest.raises(InputFormatError, match=message):
        labels.add("alice", kwargs["kind"], kwargs["start"], kwargs["end"], kwargs.get("severity"),
                   require_known=False)
    assert labels.list_labels("alice") == []


def test_unknown_person_and_missing_key(db, monkeypatch):
    with pytest.raises(MissingInputError, match="unknown person"):
        labels.add("nobody", "manic", "2024-03-01", "2024-03-10")
    monkeypatch.delenv(crypto.ENV_KEY)
    with pytest.raises(crypto.PersonalKeyError, match="no key for personal data") as err:
        labels.add("alice", "manic", "2024-03-01", "2024-03-10", require_known=False)
    assert crypto.ENV_KEY in err.value.where and "new_key" in err.value.fix
    monkeypatch.setenv(crypto.ENV_KEY, "not-a-key")
    with pytest.raises(crypto.PersonalKeyError, match="not a Fernet key"):
        labels.add("alice", "manic", "2024-03-01", "2024-03-10", require_known=False)


def test_undo_withdraws_the_last_entry(db):
    labels.add("alice", "depressive", "2024-03-01", "2024-03-20", require_known=False)
    wrong, _ = labels.add("alice", "manic", "2024-04-01", "2024-04-03", require_known=False)
    undone = labels.undo("alice")
    assert undone.id == wrong.id and undone.deleted_at is not None
    assert [r.kind for r in labels.list_labels("alice")] == ["depressive"]
    assert len(labels.list_labels("alice", include_deleted=True)) == 2
    labels.add("alice", "manic", "2024-04-01", "2024-04-09", require_known=False)   # the slot is free again
    assert labels.last_change("alice") >= undone.deleted_at
    labels.undo("alice")
    labels.undo("alice")
    with pytest.raises(MissingInputError, match="no label to undo"):
        labels.undo("alice")


def test_day_targets_next_day_rule(db):
    labels.add("eve", "baseline", "2024-02-20", "2024-02-29", require_known=False)
    labels.add("eve", "mixed", "2024-03-01", "2024-03-07", require_known=False)
    labels.add("eve", "hypomanic", "2024-03-08", "2024-03-11", require_known=False)
    dates = [dt.date(2024, 2, 18) + dt.timedelta(days=i) for i in range(25)]
    y = labels.day_targets(labels.list_labels("eve"), dates)
    at = lambda d: y.loc[dt.date.fromisoformat(d)]  # noqa: E731
    assert np.isnan(at("2024-02-18")["depressive"])                       # 02-19 unlabelled
    assert at("2024-02-19").tolist() == [0.0, 0.0, 0.0]                   # 02-20 baseline
    assert at("2024-02-29").tolist() == [1.0, 1.0, 0.0]                   # 03-01 mixed: depressive and manic
    assert at("2024-03-07").tolist() == [0.0, 0.0, 1.0]                   # 03-08 hypomanic
    assert np.isnan(at("2024-03-11")["hypomanic"])                        # 03-12 unlabelled


def test_cli_label_commands(db, capsys):
    from biotune.mood.personal import cli

    parser = argparse.ArgumentParser()
    mood = parser.add_subparsers(dest="group").add_parser("mood").add_subparsers(dest="cmd")
    cli.add_commands(mood)

    def run(*argv):
        args = parser.parse_args(["mood", "label", *argv])
        return args.func(args)

    assert run("episode", "--person", "frank", "--kind", "hypomanic", "--from", "2024-05-01", "--to", "2024-05-02",
               "--severity", "2", "--new-person") == 0
    out = capsys.readouterr()
    assert "stored p-" in out.out and "frank" not in out.out and "at least 4 days" in out.err
    assert run("baseline", "--person", "frank", "--from", "2024-04-01", "--to", "2024-04-30", "--new-person") == 0
    capsys.readouterr()
    assert run("list", "--person", "frank", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["kind"] for r in rows] == ["baseline", "hypomanic"]
    assert run("undo", "--person", "frank") == 0 and "withdrew" in capsys.readouterr().out
    with pytest.raises(labels.LabelOverlapError):
        run("episode", "--person", "frank", "--kind", "manic", "--from", "2024-04-20", "--to", "2024-05-01",
            "--new-person")
    with pytest.raises(MissingInputError):
        run("episode", "--person", "ghost", "--kind", "manic", "--from", "2024-04-20", "--to", "2024-05-01")
