"""The seed's 1D-CNN-BiLSTM in Keras 3 (TensorFlow backend): build, train, save, load, predict.

Layer list (the seed's, in order)::

    Conv1D(16, k=2, relu) BatchNorm Dropout(.1)
    Conv1D(32, k=2, relu) BatchNorm Dropout(.2)
    Bidirectional(LSTM(64, return_sequences)) BatchNorm Dropout(.2)
    Bidirectional(LSTM(32, return_sequences)) BatchNorm Dropout(.2)
    Flatten  Dense(32, relu) BatchNorm Dropout(.5)  Dense(11, softmax)

With 200 x 6 input that is 499,131 parameters (the seed's "~499K"); the Flatten of the 198 x 64
sequence feeds Dense(32), which alone holds 405,536 of them. ``size`` scales the widths for tests
(``"tiny"``, ``"small"``) without changing the layer list. TensorFlow is imported inside the
functions: DAG files import this module at parse time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from biotune.activity import CLASSES, SENSOR_COLS, WINDOW_SIZE
from biotune.errors import InputFormatError, MissingInputError, WeightsError

SIZES: dict[str, dict[str, Any]] = {
    "seed": {"conv": (16, 32), "lstm": (64, 32), "dense": 32},
    "small": {"conv": (8, 16), "lstm": (16, 8), "dense": 16},
    "tiny": {"conv": (4, 8), "lstm": (8, 4), "dense": 8},
}
DROPOUT = (0.1, 0.2, 0.2, 0.2, 0.5)
SEED_PARAMETERS = 499_131

# The architecture, as layer classes in order (the check for a lab's .keras file).
SIGNATURE = (
    "Conv1D", "BatchNormalization", "Dropout",
    "Conv1D", "BatchNormalization", "Dropout",
    "Bidirectional", "BatchNormalization", "Dropout",
    "Bidirectional", "BatchNormalization", "Dropout",
    "Flatten", "Dense", "BatchNormalization", "Dropout", "Dense",
)
LAYER_NAMES = (
    "conv1", "bn1", "drop1", "conv2", "bn2", "drop2", "bilstm1", "bn3", "drop3", "bilstm2", "bn4", "drop4",
    "flatten", "dense", "bn5", "drop5", "output",
)

_THREADS_SET = False


def configure_threads(threads: int | None = None) -> None:
    """Cap TensorFlow's thread pools (``BIOTUNE_TF_THREADS``, default: leave TF's choice).

    Must run before TensorFlow executes its first op; later calls are ignored (TF refuses).
    """
    global _THREADS_SET
    n = threads if threads is not None else int(os.environ.get("BIOTUNE_TF_THREADS", "0") or 0)
    if _THREADS_SET or n <= 0:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, n)))
    except RuntimeError:  # TF already initialised: keep its pools
        pass
    _THREADS_SET = True


def size_config(size: str | dict) -> dict[str, Any]:
    if isinstance(size, dict):
        cfg = {**SIZES["seed"], **size}
    elif size in SIZES:
        cfg = dict(SIZES[size])
    else:
        raise InputFormatError(f"unknown model size {size!r}", where="biotune.activity.model",
                               fix=f"use one of {', '.join(SIZES)} or a dict with conv/lstm/dense widths")
    return cfg


def build_model(size: str | dict = "seed", n_classes: int = len(CLASSES), window: int = WINDOW_SIZE,
                channels: int = len(SENSOR_COLS), seed: int | None = 0):
    """The seed's CNN-BiLSTM (uncompiled). ``seed`` fixes the initial weights."""
    configure_threads()
    import keras
    from keras import layers

    if seed is not None:
        keras.utils.set_random_seed(seed)
    cfg = size_config(size)
    (c1, c2), (l1, l2), d = cfg["conv"], cfg["lstm"], cfg["dense"]
    p = DROPOUT
    n = iter(LAYER_NAMES)
    stack = [
        layers.Conv1D(c1, 2, activation="relu", name=next(n)), layers.BatchNormalization(name=next(n)),
        layers.Dropout(p[0], name=next(n)),
        layers.Conv1D(c2, 2, activation="relu", name=next(n)), layers.BatchNormalization(name=next(n)),
        layers.Dropout(p[1], name=next(n)),
        layers.Bidirectional(layers.LSTM(l1, return_sequences=True), name=next(n)),
        layers.BatchNormalization(name=next(n)), layers.Dropout(p[2], name=next(n)),
        layers.Bidirectional(layers.LSTM(l2, return_sequences=True), name=next(n)),
        layers.BatchNormalization(name=next(n)), layers.Dropout(p[3], name=next(n)),
        layers.Flatten(name=next(n)), layers.Dense(d, activation="relu", name=next(n)),
        layers.BatchNormalization(name=next(n)), layers.Dropout(p[4], name=next(n)),
        layers.Dense(n_classes, activation="softmax", name=next(n)),
    ]
    return keras.Sequential([keras.Input((window, channels), name="imu"), *stack], name="cnn_bilstm")


def parameter_count(size: str | dict = "seed", n_classes: int = len(CLASSES), window: int = WINDOW_SIZE) -> int:
    """Closed form (no TensorFlow): conv, BiLSTM, BN, dense parameters for the layer list."""
    cfg = size_config(size)
    (c1, c2), (l1, l2), d = cfg["conv"], cfg["lstm"], cfg["dense"]
    ch = len(SENSOR_COLS)
    total = (2 * ch * c1 + c1) + 4 * c1 + (2 * c1 * c2 + c2) + 4 * c2
    total += 2 * 4 * (l1 * (c2 + l1) + l1) + 4 * 2 * l1
    total += 2 * 4 * (l2 * (2 * l1 + l2) + l2) + 4 * 2 * l2
    steps = window - 2
    total += steps * 2 * l2 * d + d + 4 * d + d * n_classes + n_classes
    return int(total)


def signature(model) -> tuple[str, ...]:
    return tuple(type(layer).__name__ for layer in model.layers)


def check_architecture(model, where: str, n_classes: int = len(CLASSES), window: int = WINDOW_SIZE,
                       channels: int = len(SENSOR_COLS)) -> None:
    """Refuse a model that is not the seed's CNN-BiLSTM for (window x channels) -> n_classes."""
    sig = signature(model)
    if sig != SIGNATURE:
        first = next((i for i, (a, b) in enumerate(zip(sig, SIGNATURE)) if a != b), min(len(sig), len(SIGNATURE)))
        got = sig[first] if first < len(sig) else "(end of model)"
        want = SIGNATURE[first] if first < len(SIGNATURE) else "(end of model)"
        raise WeightsError(
            f"the model is not the seed's 1D-CNN-BiLSTM: layer {first} is {got}, expected {want} "
            f"({len(sig)} layers: {', '.join(sig[:8])}{'...' if len(sig) > 8 else ''})",
            where=where,
            fix="drop the lab's CNN-BiLSTM .keras file (Conv1D x2, BiLSTM x2, Dense x2 with BatchNorm/Dropout) into "
                "models/pretrained/, or remove the file to train one on the source domain")
    in_shape = tuple(model.input_shape[1:])
    if in_shape != (window, channels):
        raise WeightsError(f"the model reads windows of shape {in_shape}, the pipeline makes ({window}, {channels})",
                           where=where, fix=f"use a model trained on {window} x {channels} windows "
                                            f"({', '.join(SENSOR_COLS)}), or change window_size in the config")
    out = model.layers[-1]
    units = getattr(out, "units", None)
    act = getattr(getattr(out, "activation", None), "__name__", "")
    if units != n_classes or act != "softmax":
        raise WeightsError(f"the model's output is Dense({units}, {act}), expected Dense({n_classes}, softmax)",
                           where=where, fix=f"use a model trained on the {n_classes} classes of the label map")


def load_model(path: str | Path, n_classes: int = len(CLASSES), window: int = WINDOW_SIZE):
    """Load a lab's ``.keras`` file and check it is this architecture (WeightsError otherwise)."""
    configure_threads()
    import keras

    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"no model file at {path}", where=str(path),
                                fix="check the path, or train one on the source domain")
    if path.suffix != ".keras":
        raise WeightsError(f"{path.name} is not a Keras 3 .keras file", where=str(path),
                           fix="save the model with model.save('name.keras') (Keras 3 format)")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # keras raises ValueError/OSError/zipfile errors for foreign files
        raise WeightsError(f"cannot load {path.name}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
                           where=str(path), fix="re-save the model with Keras 3 (model.save('name.keras'))") from exc
    check_architecture(model, str(path), n_classes=n_classes, window=window)
    return model


def save_model(model, path: str | Path) -> str:
    """Atomic ``.keras`` save (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)
    return str(path)


def compile_model(model, learning_rate: float) -> None:
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])


class _Progress:
    """A Keras callback that reports one line per epoch (to a DAG log or a CLI)."""

    def __new__(cls, progress: Callable[[str], None] | None, label: str):
        import keras

        class Cb(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if progress:
                    logs = logs or {}
                    progress(f"{label} epoch {epoch + 1}: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(logs.items())))

        return Cb()


def fit(model, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, *, epochs: int,
        batch_size: int, learning_rate: float, patience: int, seed: int = 0,
        progress: Callable[[str], None] | None = None, label: str = "train") -> dict[str, list[float]]:
    """Adam + sparse cross-entropy, early stop on validation accuracy (best weights restored)."""
    configure_threads()
    import keras

    keras.utils.set_random_seed(seed)
    compile_model(model, learning_rate)
    stop = keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=patience,
                                         restore_best_weights=True)
    hist = model.fit(x, y.astype(np.int32), validation_data=(x_val, y_val.astype(np.int32)), epochs=epochs,
                     batch_size=batch_size, shuffle=True, verbose=0, callbacks=[stop, _Progress(progress, label)])
    return {k: [float(v) for v in vals] for k, vals in hist.history.items()}


def train_source(train, val, size: str | dict = "seed", epochs: int = 30, batch_size: int = 64,
                 learning_rate: float = 1e-3, patience: int = 5, seed: int = 0,
                 progress: Callable[[str], None] | None = None):
    """The seed's recipe on source-domain windows: Adam 1e-3, batch 64, early stop on val accuracy.

    ``train``/``val``: labelled :class:`~biotune.activity.windows.WindowSet`. Returns (model, history).
    """
    for name, ws in (("training", train), ("validation", val)):
        if not ws.labelled or len(ws) == 0:
            raise InputFormatError(f"the {name} windows are empty or unlabelled", where="biotune.activity.model",
                                   fix="train on labelled source-domain sessions")
    model = build_model(size, seed=seed)
    history = fit(model, train.x, train.y, val.x, val.y, epochs=epochs, batch_size=batch_size,
                  learning_rate=learning_rate, patience=patience, seed=seed, progress=progress, label="source")
    return model, history


def predict_proba(model, x: np.ndarray, batch_size: int = 256, dtype=np.float64) -> np.ndarray:
    """Class probabilities (n x k) -- or any model's outputs -- through ``predict_on_batch`` (one traced function
    reused for every batch; ``model(x)`` would run the LSTM loop eagerly, op by op)."""
    configure_threads()
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3:
        raise InputFormatError(f"windows must be (n, window, channels), got {x.shape}",
                               where="biotune.activity.model.predict_proba", fix="pass a WindowSet's x")
    out = [np.asarray(model.predict_on_batch(x[i:i + batch_size]), dtype=dtype)
           for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.empty((0, *model.output_shape[1:]), dtype=dtype)
