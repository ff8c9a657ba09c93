"""XGBoost on the 36 mood_ml sleep/circadian features."""

from __future__ import annotations

import numpy as np

from biotune.specs import ModelSpec


def train_xgb(spec: ModelSpec, x_train, y_train, x_val, y_val, progress=None):
    """Fit with early stopping on validation AUC; class imbalance through scale_pos_weight."""
    from xgboost import XGBClassifier

    params = dict(spec.architecture.params)
    y_train = np.asarray(y_train).astype(int)
    pos = max(int(y_train.sum()), 1)
    model = XGBClassifier(
        learning_rate=spec.training.learning_rate,
        scale_pos_weight=(len(y_train) - pos) / pos,
        eval_metric="auc",
        early_stopping_rounds=spec.training.early_stopping_patience,
        random_state=spec.training.seed,
        n_jobs=2,
        tree_method="hist",
        **params,
    )
    model.fit(x_train, y_train, eval_set=[(x_val, np.asarray(y_val).astype(int))], verbose=False)
    if progress:
        progress(f"xgboost: best iteration {model.best_iteration}, validation AUC {model.best_score:.4f}")
    return model
