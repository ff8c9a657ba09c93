"""Personal data at rest and person pseudonyms.

One secret, ``BIOTUNE_PERSONAL_KEY``: a Fernet key (``new_key()`` makes one). It comes from the
Airflow connection ``biotune_personal_key`` (its password; read through biotune.connections in
Airflow's processes) or else from the environment; never from code, params, XCom or logs. Without it every personal
operation stops with a typed error saying how to set it.

- ``encrypt`` / ``decrypt``: Fernet (AES-128-CBC + HMAC-SHA256, with a timestamp) for files
  in the personal store and for adapters.
- ``pseudonym(person)``: ``p-`` + 20 hex characters of HMAC-SHA256 under a key derived from the
  secret (HKDF, its own ``info``), so the id is stable, not reversible without the secret, and
  a leaked pseudonym list cannot be matched against guessed names. Everything that leaves the
  encrypted store (labels table, MLflow, logs, the UI) uses it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from biotune.errors import BiotuneError, InputFormatError

ENV_KEY = "BIOTUNE_PERSONAL_KEY"
PSEUDONYM = re.compile(r"^p-[0-9a-f]{20}$")
CONN_ID = "biotune_personal_key"


class PersonalKeyError(BiotuneError):
    """The personal-data key is missing or malformed, or a file was encrypted under another key."""


def new_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode("ascii")


def _key_text() -> str:
    from biotune import connections

    conn = connections.fields(CONN_ID) or {}
    if conn.get("password"):
        return str(conn["password"]).strip()
    value = os.environ.get(ENV_KEY, "").strip()
    if not value:
        raise PersonalKeyError(
            "no key for personal data", where=f"environment variable {ENV_KEY}",
            fix=f"set {ENV_KEY} to a Fernet key (python -c 'from biotune.mood.personal.crypto import new_key; "
                f"print(new_key())'), kept in a secret store; in Airflow, the password of the connection {CONN_ID}")
    return value


def _fernet():
    from cryptography.fernet import Fernet

    text = _key_text()
    try:
        return Fernet(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise PersonalKeyError("the personal-data key is not a Fernet key (32 url-safe base64 bytes)",
                               where=ENV_KEY, fix="generate one with crypto.new_key()") from exc


def _pseudonym_key() -> bytes:
    import base64

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    raw = base64.urlsafe_b64decode(_key_text().encode("ascii"))
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"biotune", info=b"person pseudonym").derive(raw)


def pseudonym(person: str) -> str:
    """Keyed, stable pseudonym of a person id; a pseudonym passed in is returned unchanged."""
    return pseudonyms([person])[0]


def pseudonyms(persons, where: str = "--person") -> list[str]:
    """:func:`pseudonym` of many ids (a day's batch), the key read once: in Airflow each read is a
    connection lookup."""
    key = None
    out = []
    for person in persons:
        person = str(person).strip()
        if not person:
            raise InputFormatError("empty person id", where=where, fix="give the person's id")
        if PSEUDONYM.match(person):
            out.append(person)
            continue
        if key is None:
            _fernet()                          # same checks and message for a missing/bad key
            key = _pseudonym_key()
        out.append("p-" + hmac.new(key, person.encode("utf-8"), hashlib.sha256).hexdigest()[:20])
    return out


def encrypt(data: bytes) -> bytes:
    return _fernet().encrypt(data)


def decrypt(token: bytes, where: str = "") -> bytes:
    from cryptography.fernet import InvalidToken

    try:
        return _fernet().decrypt(token)
    except InvalidToken as exc:
        raise PersonalKeyError("cannot decrypt: the file was encrypted under another key or is damaged",
                               where=where, fix=f"set {ENV_KEY} to the key the store was written with") from exc
