"""The activity family's configuration files, in the seed project's formats.

* Scaler JSON, two formats (both read, both written):
  ``{"mean": [6], "scale": [6]}`` (the seed's first format) and
  ``{"normalization_variant": ..., "scaler_mean": [6], "scaler_scale": [6]}`` (its newer one).
* Training config: the seed's ``data/prepared/config.json`` (``window_size, overlap, step_size,
  target_hz, sensor_cols, scaler_mean, scaler_scale, label_to_activity, n_classes,
  normalization_variant``). Read leniently: an inconsistent label map is a *diagnostic* finding
  (:mod:`biotune.activity.diagnose`), not a read error; :meth:`TrainingConfig.require_consistent`
  is the strict gate used before training.
* Pipeline config (``pipeline.json`` beside a device's session CSVs): how that device's CSVs become
  model input -- timestamp column and unit, declared input rate, target rate, which CSV column feeds
  which model channel (``"-ay"`` flips a sign), accelerometer and gyroscope units, label column,
  window and overlap, the scaler it applies. Unknown keys fail so a typo never changes processing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from biotune import storage
from biotune.activity import CLASSES, GRAVITY, OVERLAP, SENSOR_COLS, TARGET_HZ, WINDOW_SIZE
from biotune.errors import InputFormatError, MissingInputError

# unit name -> factor to the model's units (m/s^2 for the accelerometer, deg/s for the gyroscope)
ACCEL_UNITS = {"m/s^2": 1.0, "g": GRAVITY, "milli_g": GRAVITY / 1000.0}
GYRO_UNITS = {"deg/s": 1.0, "rad/s": 180.0 / math.pi}
TIMESTAMP_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9, "iso": None}

SCALER_FORMATS = ("mean_scale", "variant")
DEFAULT_VARIANT = "standard_scaler_fit_on_source_train"


# --------------------------------------------------------------------------------------------
# scaler


@dataclass(frozen=True)
class Scaler:
    """Per-channel standardisation ``(x - mean) / scale`` in model channel order (Ax..Gz)."""

    mean: np.ndarray
    scale: np.ndarray
    variant: str | None = None

    def transform(self, x: np.ndarray) -> np.ndarray:
        out = np.asarray(x, dtype=np.float32) - self.mean.astype(np.float32)
        out /= self.scale.astype(np.float32)
        return out

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(z, dtype=np.float64) * self.scale + self.mean

    @classmethod
    def fit(cls, values: np.ndarray, variant: str | None = DEFAULT_VARIANT) -> "Scaler":
        """StandardScaler statistics (population sd, as sklearn) of an (n x 6) sample matrix."""
        v = np.asarray(values, dtype=np.float64)
        scale = v.std(axis=0)
        scale[scale == 0] = 1.0  # sklearn's rule: a constant channel is left unscaled
        return cls(mean=v.mean(axis=0), scale=scale, variant=variant)

    def to_dict(self, fmt: str = "mean_scale") -> dict[str, Any]:
        if fmt == "mean_scale":
            return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}
        if fmt == "variant":
            return {"normalization_variant": self.variant or DEFAULT_VARIANT,
                    "scaler_mean": self.mean.tolist(), "scaler_scale": self.scale.tolist()}
        raise InputFormatError(f"unknown scaler format {fmt!r}", where="biotune.activity.config.Scaler.to_dict",
                               fix=f"use one of {', '.join(SCALER_FORMATS)}")

    def close_to(self, other: "Scaler", rtol: float = 1e-4) -> bool:
        return bool(np.allclose(self.mean, other.mean, rtol=rtol, atol=1e-6)
                    and np.allclose(self.scale, other.scale, rtol=rtol, atol=1e-6))


def _vector(raw: Any, key: str, where: str, n: int = len(SENSOR_COLS)) -> np.ndarray:
    if not isinstance(raw, (list, tuple)):
        raise InputFormatError(f"scaler key {key!r} must be a list of {n} numbers, got {type(raw).__name__}",
                               where=f"{where}: key {key!r}",
                               fix=f"write {key} as a JSON list of {n} numbers in the order {', '.join(SENSOR_COLS)}")
    if len(raw) != n:
        raise InputFormatError(
            f"scaler key {key!r} has {len(raw)} entries, the model has {n} channels ({', '.join(SENSOR_COLS)})",
            where=f"{where}: key {key!r}",
            fix=f"write one value per channel in the order {', '.join(SENSOR_COLS)} (refit the scaler on the "
                "training data if a channel is missing)")
    try:
        arr = np.array([float(v) for v in raw], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputFormatError(f"scaler key {key!r} holds a non-number: {raw}", where=f"{where}: key {key!r}",
                               fix="write plain JSON numbers") from exc
    if not np.isfinite(arr).all():
        bad = [SENSOR_COLS[i] for i in np.nonzero(~np.isfinite(arr))[0]]
        raise InputFormatError(f"scaler key {key!r} is not finite for {bad}", where=f"{where}: key {key!r}",
                               fix="refit the scaler on data without NaN")
    return arr


def scaler_from_dict(raw: Any, where: str) -> Scaler:
    """A :class:`Scaler` from either seed format (a typed error naming the key otherwise)."""
    if not isinstance(raw, dict):
        raise InputFormatError("a scaler must be a JSON object", where=where,
                               fix='write {"mean": [6 numbers], "scale": [6 numbers]}')
    if "mean" in raw or "scale" in raw:
        keys, variant = ("mean", "scale"), raw.get("normalization_variant")
    elif "scaler_mean" in raw or "scaler_scale" in raw:
        keys, variant = ("scaler_mean", "scaler_scale"), raw.get("normalization_variant")
    else:
        raise MissingInputError("no scaler statistics found (neither mean/scale nor scaler_mean/scaler_scale)",
                                where=where, fix='write {"mean": [6], "scale": [6]} or {"normalization_variant": '
                                '..., "scaler_mean": [6], "scaler_scale": [6]}')
    for k in keys:
        if k not in raw:
            raise MissingInputError(f"scaler key {k!r} is missing", where=where,
                                    fix=f"add {k!r} with one value per channel ({', '.join(SENSOR_COLS)})")
    mean = _vector(raw[keys[0]], keys[0], where)
    scale = _vector(raw[keys[1]], keys[1], where)
    if (scale <= 0).any():
        bad = [SENSOR_COLS[i] for i in np.nonzero(scale <= 0)[0]]
        raise InputFormatError(f"scaler {keys[1]!r} is <= 0 for {bad}", where=f"{where}: key {keys[1]!r}",
                               fix="a scale is a standard deviation: refit the scaler")
    return Scaler(mean=mean, scale=scale, variant=str(variant) if variant is not None else None)


def _read_json(path: str | Path, what: str) -> Any:
    path = str(path)
    if not storage.exists(path):
        raise MissingInputError(f"no {what} at {path}", where=path, fix=f"check the path to the {what}")
    try:
        return json.loads(storage.read_text(path))
    except json.JSONDecodeError as exc:
        raise InputFormatError(f"{what} is not valid JSON: {exc.msg}", where=f"{path}: line {exc.lineno}",
                               fix="fix the JSON syntax") from exc


def read_scaler(path: str | Path) -> Scaler:
    return scaler_from_dict(_read_json(path, "scaler JSON"), str(path))


def write_scaler(scaler: Scaler, path: str | Path, fmt: str = "mean_scale") -> str:
    return storage.write_text(str(path), json.dumps(scaler.to_dict(fmt), indent=2))


# --------------------------------------------------------------------------------------------
# training config (the seed's data/prepared/config.json)


@dataclass(frozen=True)
class TrainingConfig:
    window_size: int = WINDOW_SIZE
    overlap: float = OVERLAP
    target_hz: float = TARGET_HZ
    sensor_cols: tuple[str, ...] = SENSOR_COLS
    scaler: Scaler | None = None
    label_to_activity: dict[int, str] = field(default_factory=lambda: dict(enumerate(CLASSES)))
    n_classes: int = len(CLASSES)
    normalization_variant: str | None = DEFAULT_VARIANT
    accel_units: str = "m/s^2"
    gyro_units: str = "deg/s"
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def step_size(self) -> int:
        return step_size(self.window_size, self.overlap)

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.label_to_activity[i] for i in sorted(self.label_to_activity))

    def activity_to_label(self) -> dict[str, int]:
        return {name: i for i, name in self.label_to_activity.items()}

    def require_consistent(self) -> "TrainingConfig":
        """Strict gate before training/inference: labels 0..n-1, one name each, a scaler."""
        where = self.source or "training config"
        keys = sorted(self.label_to_activity)
        if keys != list(range(self.n_classes)):
            raise InputFormatError(
                f"label_to_activity has labels {keys}, n_classes is {self.n_classes}",
                where=f"{where}: key 'label_to_activity'",
                fix=f"map every label 0..{self.n_classes - 1} to one activity name (labels start at 0, not 1)")
        if len(set(self.label_to_activity.values())) != len(keys):
            raise InputFormatError("label_to_activity maps two labels to the same activity",
                                   where=f"{where}: key 'label_to_activity'", fix="give every label its own name")
        if self.scaler is None:
            raise MissingInputError("the training config has no scaler_mean / scaler_scale",
                                    where=where, fix="add the scaler the model was trained with")
        if tuple(self.sensor_cols) != SENSOR_COLS:
            raise InputFormatError(f"sensor_cols is {list(self.sensor_cols)}; the model reads {list(SENSOR_COLS)}",
                                   where=f"{where}: key 'sensor_cols'", fix=f"list the channels as {list(SENSOR_COLS)}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """The seed's config.json layout (plus the unit keys this platform adds)."""
        d = dict(self.extra)
        d.update({
            "window_size": int(self.window_size),
            "overlap": float(self.overlap),
            "step_size": int(self.step_size),
            "target_hz": self.target_hz,
            "sensor_cols": list(self.sensor_cols),
            "n_classes": int(self.n_classes),
            "label_to_activity": {str(k): v for k, v in sorted(self.label_to_activity.items())},
            "activity_to_label": {v: int(k) for k, v in sorted(self.label_to_activity.items())},
            "normalization_variant": self.normalization_variant,
            "accel_units": self.accel_units,
            "gyro_units": self.gyro_units,
        })
        if self.scaler is not None:
            d["scaler_mean"] = self.scaler.mean.tolist()
            d["scaler_scale"] = self.scaler.scale.tolist()
        return d


def step_size(window_size: int, overlap: float) -> int:
    """The seed's rule: ``int(window_size * (1 - overlap))``, at least 1."""
    return max(1, int(window_size * (1 - overlap)))


_TRAINING_KEYS = {"window_size", "overlap", "step_size", "target_hz", "sensor_cols", "scaler_mean",
                  "scaler_scale", "label_to_activity", "activity_to_label", "n_classes",
                  "normalization_variant", "accel_units", "gyro_units"}


def training_config_from_dict(raw: Any, where: str) -> TrainingConfig:
    if not isinstance(raw, dict):
        raise InputFormatError("the training config must be a JSON object", where=where,
                               fix="use the seed's data/prepared/config.json layout")
    for key in ("window_size", "overlap", "target_hz", "sensor_cols", "label_to_activity", "n_classes"):
        if key not in raw:
            raise MissingInputError(f"training config key {key!r} is missing", where=where,
                                    fix=f"add {key!r} (the seed's prepare step writes it into config.json)")
    try:
        window = int(raw["window_size"])
        overlap = float(raw["overlap"])
        target_hz = float(raw["target_hz"])
        n_classes = int(raw["n_classes"])
    except (TypeError, ValueError) as exc:
        raise InputFormatError(f"training config has a non-numeric window_size/overlap/target_hz/n_classes: {exc}",
                               where=where, fix="write these keys as JSON numbers") from exc
    if not isinstance(raw["sensor_cols"], list) or not all(isinstance(c, str) for c in raw["sensor_cols"]):
        raise InputFormatError("sensor_cols must be a list of channel names", where=f"{where}: key 'sensor_cols'",
                               fix=f"write {list(SENSOR_COLS)}")
    lta = raw["label_to_activity"]
    if not isinstance(lta, dict):
        raise InputFormatError("label_to_activity must be an object {label: activity}",
                               where=f"{where}: key 'label_to_activity'", fix='write {"0": "ear_rubbing", ...}')
    try:
        label_map = {int(k): str(v) for k, v in lta.items()}
    except ValueError as exc:
        raise InputFormatError(f"label_to_activity has a non-integer label: {exc}",
                               where=f"{where}: key 'label_to_activity'", fix="labels are integers 0..n-1") from exc
    scaler = None
    if "scaler_mean" in raw or "scaler_scale" in raw:
        scaler = scaler_from_dict({"normalization_variant": raw.get("normalization_variant"),
                                   "scaler_mean": raw.get("scaler_mean"), "scaler_scale": raw.get("scaler_scale")},
                                  where)
    accel_units = str(raw.get("accel_units", "m/s^2"))
    gyro_units = str(raw.get("gyro_units", "deg/s"))
    _check_unit(accel_units, ACCEL_UNITS, "accel_units", where)
    _check_unit(gyro_units, GYRO_UNITS, "gyro_units", where)
    return TrainingConfig(
        window_size=window, overlap=overlap, target_hz=target_hz, sensor_cols=tuple(raw["sensor_cols"]),
        scaler=scaler, label_to_activity=label_map, n_classes=n_classes,
        normalization_variant=raw.get("normalization_variant"), accel_units=accel_units, gyro_units=gyro_units,
        source=where, extra={k: v for k, v in raw.items() if k not in _TRAINING_KEYS},
    )


def read_training_config(path: str | Path) -> TrainingConfig:
    return training_config_from_dict(_read_json(path, "training config"), str(path))


def write_training_config(cfg: TrainingConfig, path: str | Path) -> str:
    return storage.write_text(str(path), json.dumps(cfg.to_dict(), indent=2))


def _check_unit(value: str, table: dict, key: str, where: str) -> None:
    if value not in table:
        raise InputFormatError(f"unknown {key} {value!r}", where=f"{where}: key {key!r}",
                               fix=f"use one of {', '.join(table)}")


# --------------------------------------------------------------------------------------------
# pipeline config (one per device / deployment)

PIPELINE_FILE = "pipeline.json"


@dataclass(frozen=True)
class PipelineConfig:
    """How one device's session CSVs become model input. See the module docstring."""

    timestamp_col: str = "timestamp"
    timestamp_unit: str = "ms"
    input_hz: float | None = None  # None: measured from the timestamps
    target_hz: float = TARGET_HZ
    columns: dict[str, str] = field(default_factory=lambda: {c: c.lower() for c in SENSOR_COLS})
    accel_units: str = "m/s^2"
    gyro_units: str = "deg/s"
    label_col: str | None = "label"
    window_size: int = WINDOW_SIZE
    overlap: float = OVERLAP
    scaler: Scaler | None = None  # None: the training config's scaler
    scaler_path: str | None = None
    max_nan_run: int = 2  # NaN runs up to this many samples are interpolated, longer ones fail
    on_gap: str = "error"  # a gap longer than one window: "error" or "split" the session there
    ignore_columns: tuple[str, ...] = ()
    device: str = ""
    source: str = ""

    @property
    def step_size(self) -> int:
        return step_size(self.window_size, self.overlap)

    @property
    def window_seconds(self) -> float:
        return self.window_size / self.target_hz

    def column_for(self, channel: str) -> tuple[str, float]:
        """CSV column feeding ``channel`` and its sign (``"-ay"`` -> ("ay", -1))."""
        spec = self.columns[channel]
        return (spec[1:], -1.0) if spec.startswith("-") else (spec, 1.0)

    def unit_factors(self) -> np.ndarray:
        return np.array([ACCEL_UNITS[self.accel_units]] * 3 + [GYRO_UNITS[self.gyro_units]] * 3)

    def with_(self, **kw) -> "PipelineConfig":
        return replace(self, **kw)

    def to_dict(self) -> dict[str, Any]:
        d = {
            "device": self.device, "timestamp_col": self.timestamp_col, "timestamp_unit": self.timestamp_unit,
            "input_hz": self.input_hz, "target_hz": self.target_hz, "columns": dict(self.columns),
            "accel_units": self.accel_units, "gyro_units": self.gyro_units, "label_col": self.label_col,
            "window_size": self.window_size, "overlap": self.overlap, "max_nan_run": self.max_nan_run,
            "on_gap": self.on_gap, "ignore_columns": list(self.ignore_columns),
        }
        if self.scaler_path is not None:
            d["scaler"] = self.scaler_path
        elif self.scaler is not None:
            d["scaler"] = self.scaler.to_dict("mean_scale")
        else:
            d["scaler"] = None
        return d

    @classmethod
    def from_training(cls, cfg: TrainingConfig, **kw) -> "PipelineConfig":
        """The pipeline a model's own training data went through (its rate, units, window)."""
        base = dict(target_hz=cfg.target_hz, window_size=cfg.window_size, overlap=cfg.overlap,
                    accel_units=cfg.accel_units, gyro_units=cfg.gyro_units, scaler=cfg.scaler)
        base.update(kw)
        return cls(**base)


_PIPELINE_KEYS = {"device", "timestamp_col", "timestamp_unit", "input_hz", "target_hz", "columns", "accel_units",
                  "gyro_units", "label_col", "window_size", "overlap", "scaler", "max_nan_run", "on_gap",
                  "ignore_columns"}


def pipeline_from_dict(raw: Any, where: str, base_dir: str | None = None) -> PipelineConfig:
    if not isinstance(raw, dict):
        raise InputFormatError("a pipeline config must be a JSON object", where=where,
                               fix="see biotune.activity.config for the keys")
    unknown = sorted(set(raw) - _PIPELINE_KEYS)
    if unknown:
        raise InputFormatError(f"unknown pipeline config key(s) {unknown}", where=where,
                               fix=f"use only {sorted(_PIPELINE_KEYS)} (check the spelling)")
    kw: dict[str, Any] = {"source": where}
    for key in ("device", "timestamp_col", "label_col", "on_gap"):
        if key in raw:
            kw[key] = None if raw[key] is None and key == "label_col" else str(raw[key])
    if kw.get("on_gap", "error") not in ("error", "split"):
        raise InputFormatError(f"on_gap must be 'error' or 'split', got {kw['on_gap']!r}", where=f"{where}: key 'on_gap'",
                               fix="use 'error' (default) or 'split'")
    if "timestamp_unit" in raw:
        kw["timestamp_unit"] = str(raw["timestamp_unit"])
        _check_unit(kw["timestamp_unit"], TIMESTAMP_UNITS, "timestamp_unit", where)
    for key in ("accel_units", "gyro_units"):
        if key in raw:
            kw[key] = str(raw[key])
            _check_unit(kw[key], ACCEL_UNITS if key == "accel_units" else GYRO_UNITS, key, where)
    try:
        for key, cast in (("input_hz", float), ("target_hz", float), ("window_size", int), ("overlap", float),
                          ("max_nan_run", int)):
            if key in raw and raw[key] is not None:
                kw[key] = cast(raw[key])
    except (TypeError, ValueError) as exc:
        raise InputFormatError(f"pipeline config has a non-numeric value: {exc}", where=where,
                               fix="write input_hz, target_hz, window_size, overlap, max_nan_run as numbers") from exc
    if kw.get("window_size", 1) < 2 or not 0 <= kw.get("overlap", 0.0) < 1 or kw.get("target_hz", 1.0) <= 0 \
            or (kw.get("input_hz") is not None and kw["input_hz"] <= 0):
        raise InputFormatError("pipeline config needs window_size >= 2, 0 <= overlap < 1, positive rates",
                               where=where, fix="correct window_size / overlap / input_hz / target_hz")
    if "columns" in raw:
        cols = raw["columns"]
        if not isinstance(cols, dict) or sorted(cols) != sorted(SENSOR_COLS):
            raise InputFormatError(f"pipeline 'columns' must map each of {list(SENSOR_COLS)} to a CSV column",
                                   where=f"{where}: key 'columns'",
                                   fix='write {"Ax": "ax", "Ay": "ay", ..., "Gz": "gz"} ("-ay" flips a sign)')
        kw["columns"] = {k: str(v) for k, v in cols.items()}
    if "ignore_columns" in raw:
        kw["ignore_columns"] = tuple(str(c) for c in raw["ignore_columns"] or ())
    scaler = raw.get("scaler")
    if isinstance(scaler, str):
        path = scaler if (scaler.startswith("s3://") or Path(scaler).is_absolute() or base_dir is None) \
            else storage.join(base_dir, scaler)
        kw["scaler"] = read_scaler(path)
        kw["scaler_path"] = scaler
    elif isinstance(scaler, dict):
        kw["scaler"] = scaler_from_dict(scaler, f"{where}: key 'scaler'")
    elif scaler is not None:
        raise InputFormatError("pipeline 'scaler' must be a path, an object or null", where=f"{where}: key 'scaler'",
                               fix="point to a scaler JSON, inline {mean, scale}, or null for the model's own")
    return PipelineConfig(**kw)


def read_pipeline(path: str | Path) -> PipelineConfig:
    path = str(path)
    base = path.rsplit("/", 1)[0] if storage.is_s3(path) else str(Path(path).parent)
    return pipeline_from_dict(_read_json(path, "pipeline config"), path, base_dir=base)


def write_pipeline(cfg: PipelineConfig, path: str | Path) -> str:
    return storage.write_text(str(path), json.dumps(cfg.to_dict(), indent=2))
