"""Personal data encrypted at rest; keyed pseudonyms; a clear error without the key."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from biotune.mood.personal import crypto, store
from biotune.mood.personal.minutes import MinuteSeries


@pytest.fixture
def key(monkeypatch):
    k = crypto.new_key()
    monkeypatch.setenv(crypto.ENV_KEY, k)
    return k


def test_pseudonyms_are_keyed_stable_and_opaque(key, monkeypatch):
    a = crypto.pseudonym("alice@clinic.example")
    assert crypto.PSEUDONYM.match(a) and "alice" not in a
    assert crypto.pseudonym("alice@clinic.example") == a and crypto.pseudonym(a) == a
    assert crypto.pseudonym("bob") != a
    monkeypatch.setenv(crypto.ENV_KEY, crypto.new_key())
    assert crypto.pseudonym("alice@clinic.example") != a      # someone without the key cannot recompute it


def test_missing_and_bad_key(monkeypatch):
    monkeypatch.delenv(crypto.ENV_KEY, raising=False)
    with pytest.raises(crypto.PersonalKeyError, match="no key for personal data") as err:
        crypto.encrypt(b"x")
    assert "new_key" in err.value.fix
    monkeypatch.setenv(crypto.ENV_KEY, "secret")
    with pytest.raises(crypto.PersonalKeyError, match="not a Fernet key"):
        crypto.pseudonym("alice")


def test_roundtrip_and_wrong_key(key, monkeypatch):
    token = crypto.encrypt(b"sleep 7.2 h")
    assert b"sleep" not in token and crypto.decrypt(token) == b"sleep 7.2 h"
    monkeypatch.setenv(crypto.ENV_KEY, crypto.new_key())
    with pytest.raises(crypto.PersonalKeyError, match="another key"):
        crypto.decrypt(token, where="x.enc")


def test_the_airflow_connection_comes_before_the_environment(key, monkeypatch):
    """In Airflow's processes the key is the password of the connection biotune_personal_key, read
    through Airflow (here its environment form; the fireworks DAG test reads one from its database)."""
    import json

    import biotune_airflow  # noqa: F401 (registers Airflow's connections with the library)

    other = crypto.new_key()
    monkeypatch.setenv("AIRFLOW_CONN_BIOTUNE_PERSONAL_KEY", json.dumps({"conn_type": "generic", "password": other}))
    token = crypto.encrypt(b"abc")
    monkeypatch.setenv(crypto.ENV_KEY, crypto.new_key())  # the environment's own key is not the one used
    assert crypto.decrypt(token) == b"abc"
    monkeypatch.delenv("AIRFLOW_CONN_BIOTUNE_PERSONAL_KEY")
    with pytest.raises(crypto.PersonalKeyError, match="another key"):
        crypto.decrypt(token)


def test_store_is_encrypted_and_pseudonymous(key, tmp_path, monkeypatch):
    T = 2 * 1440
    import datetime as dt

    s = MinuteSeries(dt.date(2024, 3, 1), np.zeros(T, np.float32), np.ones(T, np.int8), np.zeros(T, np.float32),
                     np.full(T, 60, np.float32), np.zeros(T, np.int16), np.zeros(T, bool))
    ep = pd.DataFrame({"sleep_start": ["2024-03-01 23:00"], "sleep_end": ["2024-03-02 07:00"], "time_in_bed": [480],
                       "minutes_sleep": [450], "minutes_awake": [30]})
    store.write_import("alice", s, ep, {"days": 2}, base=str(tmp_path))
    assert store.known_persons(str(tmp_path)) == [crypto.pseudonym("alice")]
    raw = b"".join(p.read_bytes() for p in (tmp_path / crypto.pseudonym("alice")).iterdir())
    assert b"2024-03-01" not in raw and b"alice" not in raw
    assert store.read_series("alice", str(tmp_path)).days == 2
    assert store.read_episodes(crypto.pseudonym("alice"), str(tmp_path))["minutes_sleep"].tolist() == [450]
    alias = crypto.pseudonym("alice")
    monkeypatch.setenv(crypto.ENV_KEY, crypto.new_key())
    with pytest.raises(crypto.PersonalKeyError, match="another key"):
        store.read_series(alias, str(tmp_path))
