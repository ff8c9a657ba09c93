"""The encrypted personal store: ``<root>/<pseudonym>/`` (root: ``<lake>/personal``).

Every file is a Fernet token (``*.enc``, see crypto.py); the directory is named by the
person's pseudonym, so a listing reveals no ids. Files: ``minutes.npz.enc`` (the local-clock
minute series; numpy, so the serving path needs no pandas), ``sleep_episodes.csv.enc``
(mood_ml format), ``import_report.json.enc``, ``daily.npz.enc`` (the daily features cache) and
what calibration adds (``calibration/<task>/...``).
"""

from __future__ import annotations

import io
import json

from biotune import storage
from biotune.errors import MissingInputError
from biotune.mood.personal import crypto
from biotune.mood.personal.minutes import MinuteSeries

MINUTES, EPISODES, REPORT = "minutes.npz.enc", "sleep_episodes.csv.enc", "import_report.json.enc"


def root(base: str | None = None) -> str:
    return base or storage.lake_path("personal")


def person_dir(person: str, base: str | None = None) -> str:
    return storage.join(root(base), crypto.pseudonym(person))


def write_file(person: str, name: str, data: bytes, base: str | None = None) -> str:
    """Encrypt and write one file of the person's store (atomically); returns its URI."""
    return storage.write_bytes(storage.join(person_dir(person, base), name), crypto.encrypt(data))


def read_file(person: str, name: str, base: str | None = None) -> bytes:
    uri = storage.join(person_dir(person, base), name)
    if not storage.exists(uri):
        raise MissingInputError(f"no {name} for person {crypto.pseudonym(person)}", where=uri,
                                fix="run `biotune mood import-health EXPORT.zip --person P` (or the calibration) "
                                    "first")
    return crypto.decrypt(storage.read_bytes(uri), where=uri)


def exists(person: str, name: str, base: str | None = None) -> bool:
    return storage.exists(storage.join(person_dir(person, base), name))


def write_import(person: str, series: MinuteSeries, episodes, report: dict,
                 base: str | None = None) -> dict[str, str]:
    return {"minutes": write_file(person, MINUTES, series.to_npz(), base),
            "episodes": write_file(person, EPISODES, episodes.to_csv(index=False).encode(), base),
            "report": write_file(person, REPORT, json.dumps({**report, "source": series.source}, indent=2,
                                                            default=str).encode(), base)}


def read_series(person: str, base: str | None = None) -> MinuteSeries:
    return MinuteSeries.from_npz(read_file(person, MINUTES, base), where=storage.join(person_dir(person, base), MINUTES))


def read_episodes(person: str, base: str | None = None):
    import pandas as pd

    return pd.read_csv(io.BytesIO(read_file(person, EPISODES, base)))


def read_report(person: str, base: str | None = None) -> dict:
    return json.loads(read_file(person, REPORT, base))


def known_persons(base: str | None = None) -> list[str]:
    """Pseudonyms with imported data."""
    r = root(base)
    return [p for p in storage.listdir(r) if crypto.PSEUDONYM.match(p) and storage.exists(storage.join(r, p, MINUTES))]
