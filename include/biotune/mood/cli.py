"""The mood family's commands: `biotune mood import-health | label | predict` (personal calibration)."""

from __future__ import annotations


def add_commands(subparsers) -> None:
    from biotune.mood.personal.cli import add_commands as add_personal

    mood = subparsers.add_parser("mood", help="mood family: Apple Health import, episode labels, personal predictions")
    add_personal(mood.add_subparsers(dest="cmd", required=True))
