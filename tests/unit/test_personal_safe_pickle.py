"""Model import: mood_ml pickles through the allow-list, XGBoost JSON/UBJ, malicious pickles refused."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pandas as pd
import pytest

from biotune.errors import InputFormatError
from biotune.mood.features import SLEEP_FEATURE_NAMES
from biotune.mood.personal.safe_pickle import UnsafeModelError, import_model, load_model_file, load_pickle


@pytest.fixture(scope="module")
def trained():
    from xgboost import XGBClassifier

    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(120, 36)), columns=SLEEP_FEATURE_NAMES)
    y = (x["Circadian_phase_Zscore"] + 0.3 * rng.normal(size=120) > 0).astype(int)
    model = XGBClassifier(n_estimators=8, max_depth=2).fit(x, y)
    return model, x


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_real_pickle_loads_and_predicts_the_same(tmp_path, trained, protocol):
    model, x = trained
    path = tmp_path / "XGBoost_DE.pkl"
    path.write_bytes(pickle.dumps(model, protocol=protocol))
    loaded = load_model_file(path)
    assert np.allclose(loaded.predict_proba(x)[:, 1], model.predict_proba(x)[:, 1])


def test_old_style_pickle_with_label_encoder_and_no_feature_names(tmp_path):
    from sklearn.preprocessing import LabelEncoder
    from xgboost import XGBClassifier

    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 36))
    model = XGBClassifier(n_estimators=4, max_depth=2).fit(x, (x[:, 0] > 0).astype(int))
    model._le = LabelEncoder().fit(np.array([0, 1]))           # what xgboost < 1.6 pickled with a classifier
    path = tmp_path / "XGBoost_ME.pkl"
    path.write_bytes(pickle.dumps(model, protocol=3))
    loaded = load_model_file(path)
    assert loaded.get_booster().feature_names == SLEEP_FEATURE_NAMES      # mood_ml's order assumed
    frame = pd.DataFrame(x, columns=SLEEP_FEATURE_NAMES)
    assert np.allclose(loaded.predict_proba(frame)[:, 1], model.predict_proba(x)[:, 1])


class _Shell:
    """What an attacker puts in a model file: unpickling it calls os.system."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _Eval:
    def __reduce__(self):
        return (eval, ("__import__('os').system('true')",))


class _Popen:
    def __reduce__(self):
        import subprocess

        return (subprocess.Popen, (["true"],))


def _tracker():
    class T:
        def __reduce__(self):
            from xgboost.tracker import RabitTracker

            return (RabitTracker, ("127.0.0.1", 1))
    return T()


@pytest.mark.parametrize("payload, named", [
    (lambda p: _Shell(f"touch {p}"), "system"),
    (lambda p: _Eval(), "builtins.eval"),
    (lambda p: _Popen(), "subprocess.Popen"),
    (lambda p: _tracker(), "RabitTracker"),
])
def test_malicious_pickle_refused_before_anything_runs(tmp_path, payload, named):
    marker = tmp_path / "pwned"
    path = tmp_path / "XGBoost_DE.pkl"
    path.write_bytes(pickle.dumps(payload(marker)))
    with pytest.raises(UnsafeModelError) as err:
        load_model_file(path)
    assert named in str(err.value) and str(path) in err.value.where and "save_model" in err.value.fix
    assert not marker.exists()
    with pytest.raises(UnsafeModelError):
        import_model(path, "mood_personal-depressive-xgb", register=False)


def test_malicious_object_hidden_inside_a_real_model(tmp_path, trained):
    model, _ = trained
    model = pickle.loads(pickle.dumps(model))
    model.callbacks = [_Shell(f"touch {tmp_path / 'pwned'}")]
    path = tmp_path / "XGBoost_DE.pkl"
    path.write_bytes(pickle.dumps(model))
    with pytest.raises(UnsafeModelError, match="system"):
        load_model_file(path)
    assert not (tmp_path / "pwned").exists()


def test_json_and_ubj_and_bad_models(tmp_path, trained):
    from xgboost import XGBClassifier, XGBRegressor

    model, x = trained
    for ext in ("json", "ubj"):
        model.save_model(tmp_path / f"m.{ext}")
        loaded = load_model_file(tmp_path / f"m.{ext}")
        assert np.allclose(loaded.predict_proba(x)[:, 1], model.predict_proba(x)[:, 1])
    reg = XGBRegressor(n_estimators=2).fit(x, np.arange(len(x), dtype=float))
    reg.save_model(tmp_path / "reg.json")
    with pytest.raises(InputFormatError, match="not a binary classifier"):
        load_model_file(tmp_path / "reg.json")
    small = XGBClassifier(n_estimators=2).fit(x.iloc[:, :5].to_numpy(), (x.iloc[:, 0] > 0).astype(int))
    small.save_model(tmp_path / "small.json")
    with pytest.raises(InputFormatError, match="takes 5 features"):
        load_model_file(tmp_path / "small.json")
    (tmp_path / "x.bin").write_bytes(b"GIF89a....")
    with pytest.raises(InputFormatError, match="unknown model file format"):
        load_model_file(tmp_path / "x.bin")
    good = pickle.dumps(model)
    (tmp_path / "cut.pkl").write_bytes(good[: len(good) // 2])
    with pytest.raises(InputFormatError, match="not a readable model pickle"):
        load_pickle(tmp_path / "cut.pkl")
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(InputFormatError, match="not an XGBoost classifier"):
        load_model_file(tmp_path / "list.pkl")


@pytest.mark.slow
def test_import_registers_a_challenger_once(tmp_path, trained, home):
    from biotune import registry

    model, _ = trained
    path = tmp_path / "XGBoost_DE.pkl"
    path.write_bytes(pickle.dumps(model))
    first = import_model(path, "mood_personal-depressive-xgb")
    assert first["version"] == "1" and not first["reused"] and first["features"] == 36
    again = import_model(path, "mood_personal-depressive-xgb")
    assert again["version"] == "1" and again["reused"]
    assert registry.get_alias("mood_personal-depressive-xgb", "challenger").version == "1"
