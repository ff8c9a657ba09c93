"""XGBoost binary classifiers evaluated in numpy from their JSON model (serving without xgboost).

``import xgboost`` pulls in pandas, scikit-learn and scipy (~200 MB of memory); a daily
prediction needs only the trees. The JSON model (``save_model('x.json')`` / ``save_raw('json')``)
lists per tree the split feature, threshold (leaf value on leaves), children and the default
direction for missing values. As in XGBoost: go left when x < threshold, missing follows
``default_left``; margin = logit(base_score) + sum of leaf values; P = sigmoid(margin).
Only numerical splits and binary:logistic / binary:logitraw are accepted. A unit test holds
this to xgboost's own predictions, missing values included.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from biotune.errors import InputFormatError


@dataclass
class Forest:
    feature_names: list[str]
    base_margin: float
    objective: str
    # per tree: (split_index, threshold, left, right, default_left) arrays
    trees: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]

    @classmethod
    def from_json(cls, data: bytes | str, where: str = "xgb.json") -> "Forest":
        try:
            model = json.loads(data)
            learner = model["learner"]
            objective = learner["objective"]["name"]
            base = learner["learner_model_param"]["base_score"].strip("[]").split(",")[0]
            gb = learner["gradient_booster"]
            raw_trees = (gb["model"] if "model" in gb else gb["gbtree"]["model"])["trees"]
        except (ValueError, KeyError, TypeError) as exc:
            raise InputFormatError(f"not an XGBoost JSON model ({type(exc).__name__}: {exc})", where=where,
                                   fix="save the model with save_model('model.json')") from exc
        if objective not in ("binary:logistic", "binary:logitraw"):
            raise InputFormatError(f"objective {objective} is not a binary classifier", where=where,
                                   fix="serve binary episode classifiers only")
        p = float(base)
        margin = float(np.log(p / (1 - p))) if objective == "binary:logistic" else p
        trees = []
        for t in raw_trees:
            if any(int(s) != 0 for s in t.get("split_type", [])):
                raise InputFormatError("categorical splits are not supported", where=where,
                                       fix="train on the numerical mood_ml features")
            trees.append((np.asarray(t["split_indices"], np.int64), np.asarray(t["split_conditions"], np.float32),
                          np.asarray(t["left_children"], np.int64), np.asarray(t["right_children"], np.int64),
                          np.asarray(t["default_left"], bool)))
        return cls(list(learner.get("feature_names") or []), margin, objective, trees)

    def predict_margin(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        n = X.shape[0]
        out = np.full(n, self.base_margin, dtype=np.float64)
        rows = np.arange(n)
        for split, thr, left, right, dleft in self.trees:
            node = np.zeros(n, np.int64)
            active = left[node] != -1
            while active.any():
                a = node[active]
                v = X[rows[active], split[a]]
                go_left = np.where(np.isnan(v), dleft[a], v < thr[a])
                node[active] = np.where(go_left, left[a], right[a])
                active = left[node] != -1
            out += thr[node]
        return out

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.predict_margin(X)))
