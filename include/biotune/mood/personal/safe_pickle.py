"""Importing a user's episode models: mood_ml pickles through an allow-list, or XGBoost JSON/UBJ.

A pickle runs code while it loads (any ``module.name`` it names is imported and called), so
``XGBoost_DE.pkl`` is never given to ``pickle.load``. ``load_pickle`` uses an Unpickler whose
``find_class`` admits only:

- XGBoost model classes (subclasses of ``xgboost.XGBModel`` and ``xgboost.Booster``);
- scikit-learn estimator classes (subclasses of ``sklearn.base.BaseEstimator``, e.g. the
  LabelEncoder older XGBClassifier pickles carry);
- the numpy pieces an array or scalar pickles to (``_reconstruct``, ``_frombuffer``, ``ndarray``,
  ``dtype`` and its classes, ``scalar``);
- a few inert builtins (bytearray, bytes, set, frozenset, complex), ``_codecs.encode`` (how
  protocol 2 writes bytes), ``copyreg._reconstructor`` and ``collections.OrderedDict``.

The module is checked *before* anything is imported, so a pickle naming ``os.system``,
``builtins.eval``, ``subprocess.Popen`` or an unknown module fails with ``UnsafeModelError``
naming it, and nothing has run. Persistent ids are refused too. What loads must be an XGBoost
binary classifier over the 36 mood_ml features; it is re-saved as XGBoost JSON (a data format,
never a pickle) and, with ``register``, logged to MLflow and registered as a ``challenger``.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tempfile
from pathlib import Path

from biotune.errors import InputFormatError, MissingInputError

_INERT_BUILTINS = {"bytearray", "bytes", "set", "frozenset", "complex"}
_NUMPY_EXACT = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
}
_OTHER_EXACT = {("_codecs", "encode"), ("copyreg", "_reconstructor"), ("collections", "OrderedDict")}


class UnsafeModelError(InputFormatError):
    """A model file asks to load something outside the allow-list (it could run code)."""


class _AllowListUnpickler(pickle.Unpickler):
    def __init__(self, fh, where: str) -> None:
        super().__init__(fh)
        self.where = where

    def _refuse(self, module: str, name: str, why: str):
        raise UnsafeModelError(
            f"refused to load {module}.{name} from the pickle: {why}", where=self.where,
            fix="only XGBoost / scikit-learn model classes and numpy arrays may be in a model pickle; if the file "
                "is genuine, save it with model.save_model('model.json') where it was made and import the JSON")

    def find_class(self, module: str, name: str):
        top = module.split(".")[0]
        if (module, name) in _NUMPY_EXACT or (module, name) in _OTHER_EXACT:
            return super().find_class(module, name)
        if module in ("builtins", "__builtin__"):
            if name in _INERT_BUILTINS:
                return super().find_class(module, name)
            self._refuse(module, name, "a builtin that is not a plain data type")
        if top == "numpy" and module in ("numpy.dtypes",):
            import numpy as np

            cls = super().find_class(module, name)
            if isinstance(cls, type) and issubclass(cls, np.dtype):
                return cls
            self._refuse(module, name, "not a numpy dtype class")
        if top == "xgboost":
            import xgboost

            cls = super().find_class(module, name)
            if isinstance(cls, type) and issubclass(cls, (xgboost.XGBModel, xgboost.Booster)):
                return cls
            self._refuse(module, name, "not an XGBoost model class")
        if top == "sklearn":
            from sklearn.base import BaseEstimator

            cls = super().find_class(module, name)
            if isinstance(cls, type) and issubclass(cls, BaseEstimator):
                return cls
            self._refuse(module, name, "not a scikit-learn estimator class")
        self._refuse(module, name, "not on the allow-list (xgboost, numpy, sklearn classes only)")

    def persistent_load(self, pid):
        raise UnsafeModelError("the pickle uses persistent ids", where=self.where,
                               fix="export the model with save_model('model.json') instead")


def load_pickle(path: str | os.PathLike):
    """Unpickle through the allow-list. Raises UnsafeModelError / InputFormatError."""
    path = str(path)
    data = Path(path).read_bytes()
    try:
        return _AllowListUnpickler(io.BytesIO(data), path).load()
    except UnsafeModelError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            ImportError, KeyError, UnicodeDecodeError) as exc:
        raise InputFormatError(f"not a readable model pickle ({type(exc).__name__}: {exc})", where=path,
                               fix="check the file (truncated download?) or import the model as XGBoost JSON") from exc


def _sniff(path: str, data: bytes) -> str:
    ext = Path(path).suffix.lower()
    if ext in (".pkl", ".pickle"):
        return "pickle"
    if ext == ".json":
        return "json"
    if ext == ".ubj":
        return "ubj"
    if data[:1] == b"\x80":
        return "pickle"
    if data.lstrip()[:2] == b'{"':
        return "json"
    if data[:1] == b"{":
        return "ubj"
    raise InputFormatError("unknown model file format", where=path,
                           fix="give a mood_ml pickle (.pkl), an XGBoost JSON (.json) or UBJSON (.ubj) model")


def load_model_file(path: str | os.PathLike):
    """An ``xgboost.XGBClassifier`` from a pickle (allow-listed), JSON or UBJ file; checked."""
    import xgboost

    path = str(path)
    if not Path(path).exists():
        raise MissingInputError(f"no file at {path}", where=path, fix="check the path of the model file")
    data = Path(path).read_bytes()
    kind = _sniff(path, data)
    if kind == "pickle":
        obj = load_pickle(path)
        if isinstance(obj, xgboost.Booster):
            model = xgboost.XGBClassifier()
            model._Booster = obj
        elif isinstance(obj, xgboost.XGBClassifier):
            model = obj
        else:
            raise InputFormatError(f"the pickle holds a {type(obj).__module__}.{type(obj).__name__}, not an "
                                   "XGBoost classifier", where=path, fix="import an XGBClassifier (mood_ml's "
                                                                         "XGBoost_DE/ME/HME.pkl)")
    else:
        booster = xgboost.Booster()
        try:
            booster.load_model(bytearray(data))
        except xgboost.core.XGBoostError as exc:
            raise InputFormatError(f"XGBoost cannot read this {kind.upper()} model: {str(exc).splitlines()[0]}",
                                   where=path, fix="save it again with model.save_model('model.json')") from exc
        _objective_checked(booster, path)
        model = xgboost.XGBClassifier()
        try:
            model.load_model(bytearray(data))
        except (xgboost.core.XGBoostError, TypeError) as exc:
            raise InputFormatError(f"the model is not an XGBoost classifier: {exc}", where=path,
                                   fix="import the episode classifiers (binary:logistic)") from exc
    return _checked(model, path)


def _objective_checked(booster, where: str) -> None:
    import json

    objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    if objective not in ("binary:logistic", "binary:logitraw"):
        raise InputFormatError(f"the model's objective is {objective}, not a binary classifier", where=where,
                               fix="import the episode classifiers (binary:logistic), e.g. XGBoost_DE.pkl")


def _checked(model, where: str):
    """A binary classifier over the 36 mood_ml features (names set when the file has none)."""
    from biotune.mood.features import SLEEP_FEATURE_NAMES

    booster = model.get_booster()
    _objective_checked(booster, where)
    n = booster.num_features()
    names = booster.feature_names
    if names is None:
        if n != len(SLEEP_FEATURE_NAMES):
            raise InputFormatError(f"the model takes {n} features, mood_ml's take {len(SLEEP_FEATURE_NAMES)}",
                                   where=where, fix="import a model trained on the 36 mood_ml features")
        booster.feature_names = list(SLEEP_FEATURE_NAMES)      # mood_ml's column order
    else:
        unknown = [f for f in names if f not in SLEEP_FEATURE_NAMES]
        if unknown:
            raise InputFormatError(f"the model uses features biotune does not compute: {unknown[:5]}", where=where,
                                   fix=f"biotune computes the 36 mood_ml features: {', '.join(SLEEP_FEATURE_NAMES[:3])}...")
    return model


def import_model(path: str | os.PathLike, name: str, *, register: bool = True, out_dir: str | None = None) -> dict:
    """Check and convert a user's model to XGBoost JSON; with ``register``, log + register it as ``name``.

    Returns {name, format, sha256, json, features, run_id?, version?}. Re-importing the same file
    finds the version registered the first time (tag dag_run_id = import-<sha256 prefix>).
    """
    path = str(path)
    model = load_model_file(path)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    result = {"name": name, "format": _sniff(path, Path(path).read_bytes()[:16]), "sha256": digest,
              "features": len(model.get_booster().feature_names or [])}
    keep = out_dir or tempfile.mkdtemp(prefix="biotune-import-")
    json_path = str(Path(keep) / "model.json")
    Path(keep).mkdir(parents=True, exist_ok=True)
    model.save_model(json_path)
    result["json"] = json_path
    if register:
        result.update(_register(name, json_path, digest, Path(path).name))
    return result


def _register(name: str, json_path: str, digest: str, source_name: str) -> dict:
    from biotune import registry
    from biotune.specs import get_spec

    spec = get_spec(name)
    run_tag = f"import-{digest[:12]}"
    existing = registry.find_version(name, run_tag)
    if existing is not None:
        return {"version": existing.version, "run_id": existing.run_id, "reused": True}

    def log_model():
        import mlflow.pyfunc
        import numpy as np
        from mlflow.models import ModelSignature
        from mlflow.types import ColSpec, Schema, TensorSpec

        from biotune.mood.features import SLEEP_FEATURE_NAMES
        from biotune.mood.pyfunc import XGBPyfunc

        signature = ModelSignature(inputs=Schema([ColSpec("double", c) for c in SLEEP_FEATURE_NAMES]),
                                   outputs=Schema([TensorSpec(np.dtype(np.float64), (-1,))]))
        return mlflow.pyfunc.log_model(name="model", python_model=XGBPyfunc(), signature=signature,
                                       artifacts={"model": json_path})

    run_id, model_uri = registry.log_training_run(
        spec, dag_run_id=run_tag, params={"imported_from": source_name, "sha256": digest}, metrics={},
        log_model=log_model)
    version = registry.register(spec, run_id=run_id, model_uri=model_uri, dag_run_id=run_tag)
    return {"version": version.version, "run_id": run_id, "reused": False}
