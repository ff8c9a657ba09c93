"""The contract tests see every registered family plus the toy family that exists only here."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import toyfamily  # noqa: E402,F401  (registers the toy family)
