"""Generated wrist-IMU sessions in the real file format, with a planted class signal.

Each session is one person wearing a watch through a shuffled sequence of activity bouts (the 11
classes); one CSV per session: ``timestamp`` (epoch ms), ``ax ay az`` (accelerometer), ``gx gy gz``
(gyroscope), ``label`` (class name). The motion model is physical enough for the diagnostic to
measure what it must: each class has a wrist posture (the direction of gravity in the watch frame)
and a movement (an orientation oscillation about an axis, whose rate is what the gyroscope reads,
plus a linear acceleration), with per-person variation. The accelerometer reads specific force:
+1 g along "up" at rest.

Two domains:

* ``source``: the lab's smartwatch, 50 Hz, m/s^2 and deg/s, clean.
* ``garmin``: the new device, 100 Hz, milli-g (integers, as Garmin exports) and deg/s, with its
  own gain, bias, noise floor and timestamp jitter, worn with a different wrist orientation (a
  fixed mounting rotation), by people who move at a slower tempo. A model trained on the source
  collapses on it; the shift is a true domain shift (the correct pipeline passes the diagnostic).

Planted pipeline mismatches (:data:`MISMATCHES`) write Garmin sessions whose pipeline config or CSV
layout is wrong in exactly one way, for the diagnostic's tests and demo.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from biotune.activity import CLASSES, GRAVITY, SENSOR_COLS
from biotune.activity.config import (
    ACCEL_UNITS,
    GYRO_UNITS,
    PIPELINE_FILE,
    PipelineConfig,
    Scaler,
    TrainingConfig,
    write_pipeline,
    write_scaler,
    write_training_config,
)

CSV_COLUMNS = ("timestamp", "ax", "ay", "az", "gx", "gy", "gz", "label")


@dataclass(frozen=True)
class Motion:
    """One class: posture (pitch = forearm elevation, roll = wrist rotation, degrees) and movement."""

    pitch: float
    roll: float
    wave: str  # sine | saw | taps | bursts | cycle | still
    freq: float  # Hz
    amp_deg: float  # orientation oscillation amplitude
    axis: tuple[float, float, float]  # rotation axis in the watch frame
    lin: float  # linear acceleration amplitude, m/s^2
    lin_axis: tuple[float, float, float]
    alt: tuple[float, float] | None = None  # smoking: the second posture (hand at mouth)


MOTIONS: dict[str, Motion] = {
    "ear_rubbing": Motion(55, 75, "sine", 2.5, 10, (0, 0, 1), 1.5, (0, 1, 0)),
    "forehead_rubbing": Motion(60, 15, "sine", 1.8, 8, (0, 1, 0), 2.0, (0, 0, 1)),
    "hair_pulling": Motion(75, 40, "saw", 0.6, 20, (0, 1, 0), 1.0, (1, 0, 0)),
    "hand_scratching": Motion(10, 20, "sine", 6.0, 5, (1, 0, 0), 3.5, (1, 0, 0)),
    "hand_tapping": Motion(5, 0, "taps", 4.0, 12, (0, 1, 0), 4.0, (0, 0, 1)),
    "knuckles_cracking": Motion(15, 55, "bursts", 8.0, 25, (1, 0, 0), 2.5, (0, 1, 0)),
    "nail_biting": Motion(65, -35, "sine", 3.5, 4, (0, 0, 1), 0.8, (0, 1, 0)),
    "nape_rubbing": Motion(70, 110, "sine", 2.0, 9, (1, 0, 0), 2.0, (0, 1, 0)),
    "sitting": Motion(0, -10, "still", 0.2, 2, (0, 1, 0), 0.05, (0, 0, 1)),
    "smoking": Motion(5, -20, "cycle", 1 / 9.0, 2, (0, 1, 0), 0.6, (1, 0, 0), alt=(65, -40)),
    "standing": Motion(-75, 10, "still", 0.3, 3, (0, 1, 0), 0.05, (1, 0, 0)),
}
assert tuple(MOTIONS) == CLASSES


@dataclass(frozen=True)
class Domain:
    """A device + population: how the true motion is sensed and written."""

    name: str
    hz: float
    accel_units: str
    gyro_units: str
    mount_deg: float = 0.0  # fixed rotation of the sensor frame against the source watch
    mount_axis: tuple[float, float, float] = (0.0, 1.0, 0.0)
    accel_gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    gyro_gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    accel_bias: tuple[float, float, float] = (0.0, 0.0, 0.0)  # m/s^2
    gyro_bias: tuple[float, float, float] = (0.0, 0.0, 0.0)  # deg/s
    accel_noise: float = 0.03  # m/s^2, sd
    gyro_noise: float = 0.5  # deg/s, sd
    tempo: float = 1.0  # this population's movement rate against the source people
    amplitude: float = 1.0
    posture_jitter_deg: float = 8.0
    jitter_ms: float = 0.0  # timestamp jitter
    person_prefix: str = "S"

    def pipeline(self, **kw) -> PipelineConfig:
        """The correct pipeline config for this domain's CSVs."""
        base = dict(device=self.name, input_hz=self.hz, accel_units=self.accel_units,
                    gyro_units=self.gyro_units, timestamp_unit="ms")
        base.update(kw)
        return PipelineConfig(**base)


SOURCE = Domain("source", 50.0, "m/s^2", "deg/s", person_prefix="S")
GARMIN = Domain(
    "garmin", 100.0, "milli_g", "deg/s",
    mount_deg=72.0, mount_axis=(0.77, -0.36, 0.57),
    accel_gain=(1.06, 0.94, 1.10), gyro_gain=(0.88, 1.08, 0.92),
    accel_bias=(0.35, -0.30, 0.30), gyro_bias=(1.2, -0.9, 0.7),
    accel_noise=0.12, gyro_noise=2.0, tempo=0.8, amplitude=1.15,
    posture_jitter_deg=10.0, jitter_ms=1.0, person_prefix="G",
)
DOMAINS = {"source": SOURCE, "garmin": GARMIN}

MISMATCHES = ("wrong_rate", "wrong_units", "swapped_accel_gyro", "permuted_axes", "wrong_scaler", "wrong_window")
"""Planted pipeline bugs; each breaks exactly one thing (see :func:`write_mismatch`)."""


# --------------------------------------------------------------------------------------------
# geometry


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _up(pitch_deg, roll_deg) -> np.ndarray:
    """Unit 'up' vector in the watch frame (what a resting accelerometer reads, in g)."""
    p, r = np.radians(pitch_deg), np.radians(roll_deg)
    return np.stack([np.sin(p), -np.sin(r) * np.cos(p), np.cos(r) * np.cos(p)], axis=-1)


def _rotate(v: np.ndarray, axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rodrigues: rotate vectors ``v`` (n x 3 or 3) about unit ``axis`` by ``angle`` (radians, n)."""
    a = np.asarray(angle, dtype=np.float64)[..., None]
    k = np.broadcast_to(axis, np.broadcast_shapes(np.shape(v), (3,)))
    return v * np.cos(a) + np.cross(k, v) * np.sin(a) + k * (np.sum(k * v, axis=-1, keepdims=True)) * (1 - np.cos(a))


def _rotation_matrix(axis, deg: float) -> np.ndarray:
    return _rotate(np.eye(3), _unit(axis), np.full(3, np.radians(deg))).T


# --------------------------------------------------------------------------------------------
# one bout of one class


def _wave(kind: str, phase: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unit-amplitude movement waveform of a class."""
    if kind == "sine":
        return np.sin(phase)
    if kind == "saw":  # slow pull, quick release
        frac = (phase / (2 * np.pi)) % 1.0
        return np.where(frac < 0.8, frac / 0.8, (1.0 - frac) / 0.2) * 2 - 1
    if kind == "taps":  # sharp strike then recovery
        frac = (phase / (2 * np.pi)) % 1.0
        return np.exp(-frac / 0.08) * 2 - 0.3
    if kind == "bursts":  # ~0.5 s of fast cracking every ~3 s
        period = rng.uniform(2.5, 3.5)
        env = ((t + rng.uniform(0, period)) % period) < 0.5
        return np.sin(phase) * env
    if kind == "still":  # slow sway: a few low-frequency sinusoids
        out = np.zeros_like(t)
        for _ in range(3):
            out += np.sin(2 * np.pi * rng.uniform(0.05, 0.5) * t + rng.uniform(0, 2 * np.pi))
        return out / 3
    if kind == "cycle":
        return np.sin(phase)
    raise ValueError(kind)


def _bout(motion: Motion, n: int, hz: float, domain: Domain, person: dict, rng: np.random.Generator):
    """True specific force (m/s^2) and angular rate (deg/s) in the source watch frame, n x 3 each."""
    t = np.arange(n) / hz
    p = person[motion.wave if motion.wave in ("still",) else "move"]
    freq = motion.freq * domain.tempo * p * rng.uniform(0.9, 1.1)
    phase = 2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)
    amp = np.radians(motion.amp_deg) * domain.amplitude * rng.uniform(0.8, 1.2)
    jitter = person["posture"]
    pitch, roll = motion.pitch + jitter[0], motion.roll + jitter[1]
    if motion.wave == "cycle":  # smoking: rest <-> hand at mouth, smooth transitions
        lift = 0.5 - 0.5 * np.cos(phase)
        lift = np.clip((lift - 0.3) / 0.4, 0, 1)
        pitch = pitch + (motion.alt[0] - motion.pitch) * lift
        roll = roll + (motion.alt[1] - motion.roll) * lift
        up = _up(pitch, roll)
        d_lift = np.gradient(lift) * hz
        omega_pitch = np.radians(motion.alt[0] - motion.pitch) * d_lift
    else:
        up = np.broadcast_to(_up(pitch, roll), (n, 3))
        omega_pitch = np.zeros(n)
    axis = _unit(np.asarray(motion.axis) + rng.normal(0, 0.15, 3))
    theta = amp * _wave(motion.wave, phase, t, rng)
    # slow wander of the whole wrist (everyone fidgets a little)
    wander = np.radians(2.0) * _wave("still", phase, t, rng)
    wander_axis = _unit(rng.normal(size=3))
    g_frame = _rotate(_rotate(np.array(up), axis, -theta), wander_axis, -wander)
    accel = GRAVITY * g_frame
    lin_axis = _unit(np.asarray(motion.lin_axis) + rng.normal(0, 0.15, 3))
    lin = motion.lin * domain.amplitude * rng.uniform(0.8, 1.2) * _wave(
        motion.wave, phase + rng.uniform(0, 1.0), t, rng)
    accel = accel + lin[:, None] * lin_axis
    rate = np.degrees(np.gradient(theta) * hz)[:, None] * axis + np.degrees(np.gradient(wander) * hz)[:, None] * wander_axis
    rate[:, 1] -= np.degrees(omega_pitch)  # dv/dt = -omega x v for a world-fixed vector
    return accel, rate


def _sense(accel: np.ndarray, rate: np.ndarray, domain: Domain, rng: np.random.Generator):
    """What the domain's device writes: mounting rotation, gain, bias, noise, units."""
    if domain.mount_deg:
        R = _rotation_matrix(domain.mount_axis, domain.mount_deg)
        accel, rate = accel @ R.T, rate @ R.T
    accel = accel * np.asarray(domain.accel_gain) + np.asarray(domain.accel_bias)
    rate = rate * np.asarray(domain.gyro_gain) + np.asarray(domain.gyro_bias)
    accel = accel + rng.normal(0, domain.accel_noise, accel.shape)
    rate = rate + rng.normal(0, domain.gyro_noise, rate.shape)
    return accel / ACCEL_UNITS[domain.accel_units], rate / GYRO_UNITS[domain.gyro_units]


def _round(accel: np.ndarray, rate: np.ndarray, domain: Domain):
    if domain.accel_units == "milli_g":  # Garmin writes integer milli-g
        accel = np.rint(accel)
    else:
        accel = np.round(accel, 4)
    return accel, np.round(rate, 3 if domain.gyro_units == "deg/s" else 5)


# --------------------------------------------------------------------------------------------
# sessions


@dataclass
class Session:
    """A generated session in the domain's written units (what the CSV holds)."""

    name: str
    person: str
    timestamp_ms: np.ndarray
    accel: np.ndarray
    gyro: np.ndarray
    labels: np.ndarray  # class index per sample
    domain: Domain = field(repr=False, default=SOURCE)

    def model_units(self) -> np.ndarray:
        """(n x 6) in m/s^2 and deg/s (no resampling)."""
        return np.hstack([self.accel * ACCEL_UNITS[self.domain.accel_units],
                          self.gyro * GYRO_UNITS[self.domain.gyro_units]])


def generate_session(domain: Domain, person: int, seed: int = 0, session: int = 1,
                     session_seconds: float | None = None, bout_seconds: tuple[float, float] = (25.0, 45.0),
                     bouts_per_class: int = 2) -> Session:
    """One person's session: every class ``bouts_per_class`` times (or cycles until
    ``session_seconds``), shuffled, each bout ``bout_seconds`` long."""
    rng = np.random.default_rng([seed, zlib.crc32(domain.name.encode()), person, session])
    traits = {
        "posture": rng.normal(0, domain.posture_jitter_deg, 2),
        "move": rng.uniform(0.85, 1.15),
        "still": rng.uniform(0.85, 1.15),
    }
    order: list[int] = []
    if session_seconds is None:
        for _ in range(bouts_per_class):
            order += list(rng.permutation(len(CLASSES)))
    hz = domain.hz
    chunks_a, chunks_g, chunks_y = [], [], []
    total = 0
    target = None if session_seconds is None else int(session_seconds * hz)
    i = 0
    while True:
        if target is None:
            if i >= len(order):
                break
            c = int(order[i])
        else:
            if total >= target:
                break
            if i % len(CLASSES) == 0:
                order = list(rng.permutation(len(CLASSES)))
            c = int(order[i % len(CLASSES)])
        n = int(rng.uniform(*bout_seconds) * hz)
        if target is not None:
            n = min(n, target - total)
        a, g = _bout(MOTIONS[CLASSES[c]], n, hz, domain, traits, rng)
        chunks_a.append(a)
        chunks_g.append(g)
        chunks_y.append(np.full(n, c, dtype=np.int16))
        total += n
        i += 1
    accel, gyro = _sense(np.vstack(chunks_a), np.vstack(chunks_g), domain, rng)
    accel, gyro = _round(accel, gyro, domain)
    start = 1_700_000_000_000 + int(rng.integers(0, 86_400_000)) + 86_400_000 * (person * 7 + session)
    ts = start + np.arange(total) * (1000.0 / hz)
    if domain.jitter_ms:
        ts = ts + rng.uniform(-domain.jitter_ms, domain.jitter_ms, total)
    ts = np.rint(ts).astype(np.int64)
    ts = np.maximum.accumulate(ts)  # jitter never reorders samples ...
    ts[1:] = np.maximum(ts[1:], ts[:-1] + 1)  # ... nor duplicates them
    name = f"{domain.person_prefix}{person:02d}_s{session}"
    return Session(name=name, person=f"{domain.person_prefix}{person:02d}", timestamp_ms=ts, accel=accel,
                   gyro=gyro, labels=np.concatenate(chunks_y), domain=domain)


def write_session_csv(session: Session, path: str | Path, columns: tuple[str, ...] = CSV_COLUMNS,
                      swap_accel_gyro: bool = False, axis_order: tuple[int, int, int] = (0, 1, 2),
                      labelled: bool = True) -> str:
    """Write a session as CSV (pyarrow's writer: fast, shortest float repr)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    accel, gyro = session.accel[:, list(axis_order)], session.gyro[:, list(axis_order)]
    if swap_accel_gyro:
        accel, gyro = gyro, accel
    int_accel = session.domain.accel_units == "milli_g" and not swap_accel_gyro
    arrays = [pa.array(session.timestamp_ms)]
    for j in range(3):
        arrays.append(pa.array(accel[:, j].astype(np.int32) if int_accel else accel[:, j]))
    for j in range(3):
        col = gyro[:, j]
        if swap_accel_gyro and session.domain.accel_units == "milli_g":
            col = col.astype(np.int32)
        arrays.append(pa.array(col))
    names = list(columns[:7])
    if labelled:
        arrays.append(pa.DictionaryArray.from_arrays(pa.array(session.labels.astype(np.int32)), pa.array(CLASSES))
                      .cast(pa.string()))
        names.append(columns[7])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pacsv.write_csv(pa.table(arrays, names=names), str(tmp),
                    write_options=pacsv.WriteOptions(quoting_style="none", quoting_header="none"))
    tmp.replace(path)
    return str(path)


def write_domain(out_dir: str | Path, domain: str | Domain = "source", persons: int = 6, seed: int = 0,
                 sessions_per_person: int = 1, session_seconds: float | None = None,
                 bouts_per_class: int = 2, bout_seconds: tuple[float, float] = (25.0, 45.0),
                 labelled: bool = True, pipeline: bool = True) -> list[str]:
    """Write ``persons x sessions_per_person`` session CSVs (and the domain's correct pipeline.json)."""
    dom = DOMAINS[domain] if isinstance(domain, str) else domain
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for p in range(1, persons + 1):
        for s in range(1, sessions_per_person + 1):
            sess = generate_session(dom, p, seed=seed, session=s, session_seconds=session_seconds,
                                    bout_seconds=bout_seconds, bouts_per_class=bouts_per_class)
            paths.append(write_session_csv(sess, out / f"{sess.name}.csv", labelled=labelled))
    if pipeline:
        write_pipeline(dom.pipeline(label_col="label" if labelled else None), out / PIPELINE_FILE)
    return paths


def source_scaler(persons: int = 6, seed: int = 0, **kw) -> Scaler:
    """StandardScaler statistics of the source domain (model units, 50 Hz), as the seed fit them."""
    data = [generate_session(SOURCE, p, seed=seed, **kw).model_units() for p in range(1, persons + 1)]
    return Scaler.fit(np.vstack(data), variant="standard_scaler_source")


def write_training_config(out_dir: str | Path, scaler: Scaler, scaler_format: str = "variant") -> dict[str, str]:
    """The seed-format ``config.json`` and a scaler JSON beside it."""
    from biotune.activity.config import write_training_config as _write

    out = Path(out_dir)
    cfg = TrainingConfig(scaler=scaler, normalization_variant=scaler.variant)
    return {
        "config": _write(cfg, out / "config.json"),
        "scaler": write_scaler(scaler, out / "scaler.json", fmt=scaler_format),
    }


# --------------------------------------------------------------------------------------------
# planted pipeline mismatches


def write_mismatch(out_dir: str | Path, kind: str, persons: int = 2, seed: int = 0,
                   training_scaler: Scaler | None = None, **kw) -> str:
    """Garmin sessions + a pipeline.json with exactly one planted bug; returns the folder.

    * ``wrong_rate``: 100 Hz data, the pipeline declares 50 Hz (rows taken as 50 Hz samples).
    * ``wrong_units``: milli-g data, the pipeline declares m/s^2.
    * ``swapped_accel_gyro``: the CSV's ax..az columns hold the gyroscope and gx..gz the accelerometer.
    * ``permuted_axes``: the CSV's ax and ay columns are exchanged.
    * ``wrong_scaler``: the pipeline applies a scaler refit on the new device's data, not the model's.
    * ``wrong_window``: the pipeline cuts 100-sample windows with 25% overlap.
    """
    if kind not in MISMATCHES:
        raise ValueError(f"unknown mismatch {kind!r}; use one of {MISMATCHES}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pipe = GARMIN.pipeline()
    sessions = [generate_session(GARMIN, p, seed=seed, **kw) for p in range(1, persons + 1)]
    for sess in sessions:
        write_session_csv(sess, out / f"{sess.name}.csv",
                          swap_accel_gyro=kind == "swapped_accel_gyro",
                          axis_order=(1, 0, 2) if kind == "permuted_axes" else (0, 1, 2))
    if kind == "wrong_rate":
        pipe = replace(pipe, input_hz=50.0)
    elif kind == "wrong_units":
        pipe = replace(pipe, accel_units="m/s^2")
    elif kind == "wrong_window":
        pipe = replace(pipe, window_size=100, overlap=0.25)
    elif kind == "wrong_scaler":
        refit = Scaler.fit(np.vstack([s.model_units()[::2] for s in sessions]), variant="refit_on_garmin")
        write_scaler(refit, out / "scaler.json", fmt="mean_scale")
        pipe = replace(pipe, scaler=refit, scaler_path="scaler.json")
    write_pipeline(pipe, out / PIPELINE_FILE)
    (out / "PLANTED.json").write_text(json.dumps({"mismatch": kind, "doc": write_mismatch.__doc__}, indent=2))
    return str(out)


def write_demo(out_dir: str | Path, seed: int = 0, source_persons: int = 8, garmin_persons: int = 6,
               mismatches: bool = True, **kw) -> dict[str, str | dict[str, str]]:
    """Everything the activity DAG and diagnostic need: source and Garmin sessions, the model's
    training config and scaler, and one folder per planted mismatch."""
    out = Path(out_dir)
    write_domain(out / "source", "source", persons=source_persons, seed=seed, **kw)
    write_domain(out / "garmin", "garmin", persons=garmin_persons, seed=seed, **kw)
    scaler = source_scaler(persons=source_persons, seed=seed, **kw)
    files = write_training_config(out / "model", scaler)
    result: dict[str, str | dict[str, str]] = {"source": str(out / "source"), "garmin": str(out / "garmin"), **files}
    if mismatches:
        result["mismatch"] = {k: write_mismatch(out / "mismatch" / k, k, seed=seed, **kw) for k in MISMATCHES}
    return result


__all__ = ["CSV_COLUMNS", "DOMAINS", "Domain", "GARMIN", "MISMATCHES", "MOTIONS", "SENSOR_COLS", "SOURCE",
           "Session", "generate_session", "source_scaler", "write_demo", "write_domain", "write_mismatch",
           "write_session_csv", "write_training_config"]
