"""Pipeline diagnostic: is the deployed pipeline feeding the model what it was trained on?

Inputs: the model's training config (the seed's ``config.json``), a folder of session CSVs, and
the pipeline config that turns them into windows (``pipeline.json`` in the folder unless given).

The seed's eight checks, each now measured where the seed could only compare configs or warn:

1. ``window_size``   pipeline vs training (fail on mismatch)
2. ``overlap``       pipeline vs training (warn: changes the window count, not the windows)
3. ``sampling_rate`` pipeline target rate vs training (fail); window = 4 s at that rate (warn)
4. ``sensor_channels`` the pipeline produces the training's channels, in its order (fail)
5. ``normalization`` windows after the pipeline's scaler: mean ~0, sd ~1 per channel
6. ``label_mapping`` labels 0..n-1, one name each, n_classes entries; the data's labels in the map
7. ``data_shape``    windows are (n, window_size, channels) with n > 0
8. ``feature_distributions`` unscaled data vs the training scaler: sd ratio and mean shift per channel

and what the data itself shows:

* ``input_files``     every CSV reads cleanly (typed reader errors: file, line, column, fix)
* ``measured_rate``   rate from the timestamps vs the declared input rate
* ``channel_order``   accelerometer and gyroscope swapped (gravity sits in the "gyro" columns)
* ``accel_units``     magnitude at rest: ~9.81 m/s^2 (vs ~1000 milli-g, ~1 g in the CSV)
* ``gyro_units``      gyro spread vs training: deg/s vs rad/s (a factor of 57)
* ``axes``            mean gravity direction vs training's, and the frame's handedness from the
                      gyroscope vs the accelerometer (exchanged / mirrored axes)
* ``scaler_stats``    the pipeline's scaler is the model's scaler

Each check is pass / warn / fail with the measured value, the expected one and the fix. Any fail
means the pipeline is wrong: no fine-tuning until it is fixed.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from biotune import storage
from biotune.activity import ACCEL, GRAVITY, GYRO, SENSOR_COLS
from biotune.activity.config import (
    ACCEL_UNITS,
    GYRO_UNITS,
    PIPELINE_FILE,
    PipelineConfig,
    TrainingConfig,
    read_pipeline,
    read_training_config,
)
from biotune.activity.readers import Segment, read_sessions
from biotune.activity.windows import WindowSet, make_windows

PASS, WARN, FAIL = "pass", "warn", "fail"

# thresholds (module constants so tests and the report quote the same numbers)
RATE_TOL = 0.05  # measured vs declared input rate
GRAVITY_TOL = 0.15  # at-rest magnitude within 15% of 1 g
UNIT_MATCH_TOL = 0.25  # "looks like" another unit: within 25% of its 1 g value
AXES_WARN_DEG, AXES_FAIL_DEG = 35.0, 55.0
HANDEDNESS_MIN = 0.1  # |correlation| below this: cannot tell the frame's handedness
NORM_PASS = (0.5, 0.5)  # the seed's tolerance: |mean| <= 0.5, |sd - 1| <= 0.5
NORM_FAIL_MEAN, NORM_FAIL_SD = 3.0, (0.2, 5.0)
SD_RATIO_WARN, SD_RATIO_FAIL = (0.5, 2.5), (0.1, 10.0)
GYRO_RATIO_FAIL = (0.1, 10.0)  # deg/s vs rad/s is a factor of 57
QUIET_SHARE = 0.2  # the quietest 20% of windows count as "at rest"
WINDOW_SECONDS = 4.0  # the seed's windows are 4 s


@dataclass
class Check:
    name: str
    status: str
    measured: Any
    expected: Any
    fix: str = ""
    detail: str = ""


@dataclass
class DiagnosticReport:
    data: str
    config: str
    pipeline: str
    checks: list[Check] = field(default_factory=list)
    n_files: int = 0
    n_windows: int = 0

    @property
    def status(self) -> str:
        states = {c.status for c in self.checks}
        return FAIL if FAIL in states else WARN if WARN in states else PASS

    @property
    def ok(self) -> bool:
        return self.status != FAIL

    def failed(self) -> list[str]:
        return [c.name for c in self.checks if c.status == FAIL]

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "ok": self.ok, "failed": self.failed(),
                "warned": [c.name for c in self.checks if c.status == WARN], "data": self.data,
                "config": self.config, "pipeline": self.pipeline, "n_files": self.n_files,
                "n_windows": self.n_windows, "checks": [_jsonable(asdict(c)) for c in self.checks]}

    def to_text(self) -> str:
        mark = {PASS: "PASS", WARN: "WARN", FAIL: "FAIL"}
        lines = [f"pipeline diagnostic: {self.status.upper()}  ({self.n_files} files, {self.n_windows} windows)",
                 f"  data {self.data}", f"  config {self.config}", f"  pipeline {self.pipeline}", ""]
        for c in self.checks:
            lines.append(f"[{mark[c.status]}] {c.name}: measured {_short(c.measured)}; expected {_short(c.expected)}")
            if c.detail:
                lines.append(f"       {c.detail}")
            if c.status != PASS and c.fix:
                lines.append(f"       fix: {c.fix}")
        lines.append("")
        if self.ok:
            lines.append("no pipeline mismatch: low accuracy on this device is a domain shift question "
                         "(run the shift check, then a supervised head-only transfer)")
        else:
            lines.append(f"pipeline mismatch ({', '.join(self.failed())}): fix these first; fine-tuning cannot "
                         "repair broken preprocessing")
        return "\n".join(lines)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def _short(v: Any) -> str:
    s = json.dumps(_jsonable(v), default=str)
    return s if len(s) <= 160 else s[:157] + "..."


def _r(x, n=3):
    return np.round(np.asarray(x, dtype=np.float64), n).tolist()


# --------------------------------------------------------------------------------------------
# config-level checks (the seed's)


def _config_checks(tc: TrainingConfig, pipe: PipelineConfig) -> list[Check]:
    out = []
    out.append(Check("window_size", PASS if pipe.window_size == tc.window_size else FAIL,
                     pipe.window_size, tc.window_size,
                     fix=f"set window_size to {tc.window_size} in the pipeline config"))
    out.append(Check("overlap", PASS if abs(pipe.overlap - tc.overlap) < 1e-9 else WARN, pipe.overlap, tc.overlap,
                     fix=f"set overlap to {tc.overlap} (a different overlap changes how many windows are scored, "
                         "not what each window holds)"))
    status, detail = PASS, ""
    if abs(pipe.target_hz - tc.target_hz) > 1e-6:
        status, detail = FAIL, "the pipeline resamples to another rate than the model was trained at"
    elif abs(pipe.window_size / pipe.target_hz - WINDOW_SECONDS) > 1e-6:
        status = WARN
        detail = (f"a window spans {pipe.window_size / pipe.target_hz:g} s; the seed's windows are "
                  f"{WINDOW_SECONDS:g} s ({tc.target_hz:g} Hz x {int(tc.target_hz * WINDOW_SECONDS)})")
    out.append(Check("sampling_rate", status, {"target_hz": pipe.target_hz, "window_s": pipe.window_size / pipe.target_hz},
                     {"target_hz": tc.target_hz, "window_s": WINDOW_SECONDS},
                     fix=f"set target_hz to {tc.target_hz:g} and window_size to {tc.window_size}", detail=detail))
    chans = list(SENSOR_COLS)
    ok = list(tc.sensor_cols) == chans
    out.append(Check("sensor_channels", PASS if ok else FAIL,
                     {"pipeline": chans, "csv_columns": [pipe.columns[c] for c in chans]},
                     {"training": list(tc.sensor_cols)},
                     fix=f"the model reads {list(tc.sensor_cols)}; map each to a CSV column in pipeline.json 'columns'"))
    keys = sorted(tc.label_to_activity)
    problems = []
    if keys != list(range(len(keys))):
        problems.append(f"labels are {keys[:3]}..{keys[-1:]} (must be 0..{len(keys) - 1}; 1-based labels are "
                        "the classic off-by-one)")
    if len(keys) != tc.n_classes:
        problems.append(f"{len(keys)} labels but n_classes = {tc.n_classes}")
    if len(set(tc.label_to_activity.values())) != len(keys):
        problems.append("two labels share one activity name")
    out.append(Check("label_mapping", FAIL if problems else PASS,
                     {"n_labels": len(keys), "n_classes": tc.n_classes, "first": keys[:1], "last": keys[-1:]},
                     {"labels": f"0..{tc.n_classes - 1}", "n_classes": tc.n_classes},
                     fix="rewrite label_to_activity as {0: name, ..., n-1: name} with n = n_classes",
                     detail="; ".join(problems)))
    if pipe.scaler is None:
        out.append(Check("scaler_stats", PASS, "model's own (pipeline sets none)", "model's scaler",
                         detail="the pipeline applies the training config's scaler_mean / scaler_scale"))
    elif tc.scaler is None:
        out.append(Check("scaler_stats", WARN, "pipeline scaler", "training config has no scaler",
                         fix="add scaler_mean / scaler_scale to the training config so they can be compared"))
    else:
        same = pipe.scaler.close_to(tc.scaler)
        diff = np.abs(pipe.scaler.mean - tc.scaler.mean) / tc.scaler.scale
        ratio = pipe.scaler.scale / tc.scaler.scale
        worst = int(np.argmax(np.maximum(diff, np.abs(np.log(ratio)))))
        out.append(Check(
            "scaler_stats", PASS if same else FAIL,
            {"mean": _r(pipe.scaler.mean), "scale": _r(pipe.scaler.scale)},
            {"mean": _r(tc.scaler.mean), "scale": _r(tc.scaler.scale)},
            fix="apply the scaler the model was trained with (training config scaler_mean / scaler_scale); a scaler "
                "refit on new data changes what the model sees",
            detail="" if same else (f"largest difference on {SENSOR_COLS[worst]}: mean off by {diff[worst]:.2f} "
                                    f"training sd, scale ratio {ratio[worst]:.3f}")))
    return out


# --------------------------------------------------------------------------------------------
# data-level checks


def _quiet(win: np.ndarray) -> np.ndarray:
    """Indices of the quietest windows (lowest sd of the accelerometer magnitude)."""
    mag = np.linalg.norm(win[:, :, :3], axis=2)
    sd = mag.std(axis=1)
    k = max(1, int(len(sd) * QUIET_SHARE))
    return np.argsort(sd)[:k]


def _gravity_unit(raw_mag: float) -> str | None:
    """Which unit a raw at-rest accelerometer magnitude looks like (None: none of them)."""
    for unit, factor in ACCEL_UNITS.items():
        one_g = GRAVITY / factor
        if abs(raw_mag - one_g) <= UNIT_MATCH_TOL * one_g:
            return unit
    return None


def _static(win: np.ndarray, quiet: np.ndarray, cols: slice) -> float:
    """Median over quiet windows of the magnitude of the window-mean vector (the static part)."""
    return float(np.median(np.linalg.norm(win[quiet][:, :, cols].mean(axis=1), axis=1)))


def handedness(win: np.ndarray, hz: float) -> float:
    """Correlation of the accelerometer's rotation with what the gyroscope predicts, in [-1, 1].

    A direction fixed in the world (gravity) moves in the sensor frame as dg/dt = -omega x g. In a
    right-handed frame the measured dg/dt correlates positively with -omega x g; exchanging two axes
    (or mirroring one) in both sensors makes the frame left-handed and flips the sign, which the
    gravity direction alone cannot show. Near 0: too little rotation to tell (or gyro not synced).
    """
    g = win[:, :, :3].astype(np.float64)
    w = np.radians(win[:, :, 3:].astype(np.float64))
    dg = np.diff(g, axis=1) * hz
    pred = -np.cross(0.5 * (w[:, 1:] + w[:, :-1]), 0.5 * (g[:, 1:] + g[:, :-1]))
    den = np.sqrt((dg ** 2).sum() * (pred ** 2).sum())
    return float((dg * pred).sum() / den) if den > 0 else 0.0


def _best_axes(mean_data: np.ndarray, mean_train: np.ndarray, pipe: PipelineConfig,
               left_handed: bool) -> tuple[float, str]:
    """The axis remap to suggest: a signed permutation that brings the data's gravity direction
    within the warn angle of training's with the fewest axes moved or mirrored (the mean direction
    cannot single out one remap when the device is also worn differently); none within: the
    closest. With a left-handed frame only mirroring remaps (det -1) qualify, else only rotations."""
    acc = [pipe.column_for(c) for c in ACCEL]
    gyr = [pipe.column_for(c) for c in GYRO]
    ranked = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            P = np.zeros((3, 3))
            for i in range(3):
                P[i, perm[i]] = signs[i]
            if (np.linalg.det(P) < 0) != left_handed:
                continue
            ang = _angle(P @ mean_data, mean_train)
            edits = sum(1 for i in range(3) if perm[i] != i or signs[i] < 0)
            ranked.append((ang > AXES_WARN_DEG, edits if ang <= AXES_WARN_DEG else 0, ang, perm, signs))
    _, _, ang, perm, signs = min(ranked)
    mapping = {}
    for chans, cols in ((ACCEL, acc), (GYRO, gyr)):
        for i, ch in enumerate(chans):
            col, sign = cols[perm[i]]
            mapping[ch] = ("-" if sign * signs[i] < 0 else "") + col
    return ang, json.dumps(mapping)


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    c = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
    return float(np.degrees(np.arccos(np.clip(c, -1, 1))))


def _data_checks(tc: TrainingConfig, pipe: PipelineConfig, segs: list[Segment], raw: WindowSet) -> list[Check]:
    out: list[Check] = []
    win = raw.x  # unscaled, model units as the pipeline converted them
    # measured rate, per file
    rates = {}
    for s in segs:
        rates.setdefault(Path(s.file).name, round(s.measured_hz, 2))
    declared = pipe.input_hz
    off = {f: r for f, r in rates.items() if declared and abs(r - declared) > RATE_TOL * declared}
    if declared is None:
        status, detail = PASS, "no input_hz declared: each file is resampled from its measured rate"
    else:
        status = FAIL if off else PASS
        detail = (f"{len(off)} of {len(rates)} files are not at the declared {declared:g} Hz: "
                  + ", ".join(f"{f} {r:g} Hz" for f, r in list(off.items())[:4])) if off else ""
    meas = sorted(set(rates.values()))
    out.append(Check("measured_rate", status, {"hz": meas[:6], "files": len(rates)},
                     {"declared_input_hz": declared, "target_hz": pipe.target_hz},
                     fix=f"set input_hz to {meas[len(meas) // 2]:g} in pipeline.json (or null to use the measured "
                         f"rate) so the data are resampled to {pipe.target_hz:g} Hz", detail=detail))

    quiet = _quiet(win)
    s_acc = _static(win, quiet, slice(0, 3))
    s_gyr = _static(win, quiet, slice(3, 6))
    fa, fg = ACCEL_UNITS[pipe.accel_units], GYRO_UNITS[pipe.gyro_units]
    acc_unit = _gravity_unit(s_acc / fa)
    gyr_as_acc = _gravity_unit(s_gyr / fg)  # gravity in the "gyro" columns, in some accel unit
    swapped = acc_unit is None and gyr_as_acc is not None
    out.append(Check(
        "channel_order", FAIL if swapped else PASS,
        {"accel_static": round(s_acc, 3), "gyro_static": round(s_gyr, 3)},
        {"accel_static": f"~{GRAVITY:.2f} m/s^2 (gravity)", "gyro_static": "~0 deg/s at rest"},
        fix="the accelerometer and gyroscope columns are swapped: map Ax..Az to the columns holding gravity "
            f"({', '.join(pipe.columns[c] for c in GYRO)}) and Gx..Gz to {', '.join(pipe.columns[c] for c in ACCEL)} "
            "in pipeline.json 'columns'",
        detail=(f"at rest the 'gyroscope' columns read {s_gyr / fg:.3g} in the CSV, like gravity in {gyr_as_acc}, "
                f"while the 'accelerometer' reads {s_acc / fa:.3g}") if swapped else ""))

    # accelerometer units from the magnitude at rest
    mag_rest = float(np.median(np.linalg.norm(win[quiet][:, :, :3], axis=2)))
    in_range = abs(mag_rest - GRAVITY) <= GRAVITY_TOL * GRAVITY
    raw_mag = mag_rest / fa
    looks = _gravity_unit(raw_mag)
    if swapped:
        status, detail = WARN, "not assessed: see channel_order"
    elif in_range:
        status, detail = PASS, ""
    else:
        status = FAIL
        detail = (f"the CSV's accelerometer reads {raw_mag:.4g} at rest: that is 1 g in {looks}, not in "
                  f"{pipe.accel_units}" if looks else
                  f"the CSV's accelerometer reads {raw_mag:.4g} at rest, which is 1 g in none of {list(ACCEL_UNITS)}")
    out.append(Check("accel_units", status, {"at_rest_magnitude": round(mag_rest, 3), "csv_value": round(raw_mag, 4),
                                             "declared": pipe.accel_units, "looks_like": looks},
                     {"at_rest_magnitude": round(GRAVITY, 3), "tolerance": f"+-{GRAVITY_TOL:.0%}"},
                     fix=(f"set accel_units to {looks!r} in pipeline.json" if looks else
                          "check the accelerometer columns and their unit (m/s^2, g, milli_g)"), detail=detail))

    # gyroscope units from its spread vs training (deg/s vs rad/s)
    if tc.scaler is None:
        out.append(Check("gyro_units", WARN, None, "training scaler needed",
                         fix="add scaler_mean / scaler_scale to the training config"))
    else:
        sd = win[:, :, 3:].reshape(-1, 3).std(axis=0)
        ratio = float(np.median(sd / tc.scaler.scale[3:]))
        bad = not (GYRO_RATIO_FAIL[0] <= ratio <= GYRO_RATIO_FAIL[1])
        other = [u for u in GYRO_UNITS if u != pipe.gyro_units][0]
        if swapped:
            status, detail = WARN, "not assessed: see channel_order"
        else:
            status = FAIL if bad else PASS
            detail = (f"gyro spread is {ratio:.3g}x training's: a factor of ~57 means deg/s and rad/s are mixed up"
                      if bad else "")
        out.append(Check("gyro_units", status, {"sd_ratio_vs_training": round(ratio, 4), "declared": pipe.gyro_units},
                         {"sd_ratio_vs_training": f"{GYRO_RATIO_FAIL[0]}..{GYRO_RATIO_FAIL[1]}"},
                         fix=f"set gyro_units to {other!r} in pipeline.json", detail=detail))

    # axes: mean gravity direction vs training's, and the frame's handedness (gyro vs accel)
    mean_acc = win[:, :, :3].reshape(-1, 3).mean(axis=0)
    hand = handedness(win, pipe.target_hz)
    left = hand < -HANDEDNESS_MIN
    if tc.scaler is None or np.linalg.norm(tc.scaler.mean[:3]) < 0.2 * GRAVITY:
        out.append(Check("axes", WARN, {"mean_accel": _r(mean_acc, 2), "handedness": round(hand, 3)},
                         "training scaler mean with a gravity component",
                         detail="training's mean accelerometer vector is too short to give a direction"))
    else:
        ref = tc.scaler.mean[:3]
        ang = _angle(mean_acc, ref)
        best_ang, mapping = _best_axes(mean_acc, ref, pipe, left)
        problems = []
        if ang > AXES_WARN_DEG:
            problems.append(f"mean gravity direction is {ang:.0f} deg from training's")
        if left:
            problems.append(f"the frame is left-handed (gyro/accel handedness {hand:.2f} < 0): two axes are "
                            "exchanged or one is mirrored")
        elif abs(hand) < HANDEDNESS_MIN:
            problems.append(f"handedness {hand:.2f} is too weak to confirm the axes (little rotation, or the "
                            "gyroscope is not in sync with the accelerometer)")
        if swapped:
            status, detail = WARN, "not assessed: see channel_order"
        else:
            status = FAIL if (ang > AXES_FAIL_DEG or left) else WARN if problems else PASS
            detail = "; ".join(problems) + (f"; remapping the axes as {mapping} brings the direction to "
                                            f"{best_ang:.0f} deg" if status == FAIL else "")
        out.append(Check("axes", status, {"mean_accel": _r(mean_acc, 2), "angle_deg": round(ang, 1),
                                          "handedness": round(hand, 3)},
                         {"mean_accel": _r(ref, 2), "angle_deg": f"<= {AXES_WARN_DEG:g} (fail > {AXES_FAIL_DEG:g})",
                          "handedness": f"> {HANDEDNESS_MIN} (right-handed)"},
                         fix=f"map the axes as {mapping} in pipeline.json 'columns', or check how the device "
                             "defines x/y/z", detail=detail))

    # 8. feature distributions (unscaled) vs the training scaler
    if tc.scaler is not None:
        flat = win.reshape(-1, 6)
        mean, sd = flat.mean(axis=0), flat.std(axis=0)
        ratio = sd / tc.scaler.scale
        shift = (mean - tc.scaler.mean) / tc.scaler.scale
        fail = (ratio < SD_RATIO_FAIL[0]) | (ratio > SD_RATIO_FAIL[1])
        warn = (ratio < SD_RATIO_WARN[0]) | (ratio > SD_RATIO_WARN[1]) | (np.abs(shift) > 1.0)
        status = FAIL if fail.any() else WARN if warn.any() else PASS
        worst = [SENSOR_COLS[i] for i in np.nonzero(fail if fail.any() else warn)[0]]
        out.append(Check("feature_distributions", status,
                         {"mean": _r(mean), "sd": _r(sd), "sd_ratio": _r(ratio), "mean_shift_sd": _r(shift)},
                         {"mean": _r(tc.scaler.mean), "sd": _r(tc.scaler.scale),
                          "sd_ratio": f"{SD_RATIO_WARN[0]}..{SD_RATIO_WARN[1]} (fail outside {SD_RATIO_FAIL[0]}.."
                                      f"{SD_RATIO_FAIL[1]})", "mean_shift_sd": "|x| <= 1"},
                         fix="a spread off by 10x or more is a units or channel bug: see accel_units, gyro_units, "
                             "channel_order; smaller differences are domain shift (run the shift check)",
                         detail=f"channels off: {worst}" if worst else ""))
    return out


def _normalization(scaled: np.ndarray) -> Check:
    flat = scaled.reshape(-1, scaled.shape[-1])
    mean, sd = flat.mean(axis=0), flat.std(axis=0)
    pm, ps = NORM_PASS
    ok = (np.abs(mean) <= pm).all() and (np.abs(sd - 1) <= ps).all()
    bad = (np.abs(mean) > NORM_FAIL_MEAN) | (sd < NORM_FAIL_SD[0]) | (sd > NORM_FAIL_SD[1])
    status = PASS if ok else FAIL if bad.any() else WARN
    off = [SENSOR_COLS[i] for i in np.nonzero((np.abs(mean) > pm) | (np.abs(sd - 1) > ps))[0]]
    return Check("normalization", status, {"mean": _r(mean), "sd": _r(sd)},
                 {"mean": f"|x| <= {pm}", "sd": f"1 +- {ps}",
                  "fail": f"|mean| > {NORM_FAIL_MEAN} or sd outside {NORM_FAIL_SD}"},
                 fix="apply the model's scaler to data in the model's units (m/s^2, deg/s); far off: a units or "
                     "scaler bug, near: domain shift",
                 detail=f"channels off: {off}" if off else "")


# --------------------------------------------------------------------------------------------
# entry point


def resolve_pipeline(data: str, pipeline: str | None, tc: TrainingConfig) -> tuple[PipelineConfig, str]:
    """The pipeline config to diagnose: the given file, else ``<data>/pipeline.json``, else the
    training pipeline (same rate, units and window as the model's own data)."""
    if pipeline:
        return read_pipeline(pipeline), str(pipeline)
    candidate = storage.join(str(data), PIPELINE_FILE)
    if storage.exists(candidate):
        return read_pipeline(candidate), candidate
    return PipelineConfig.from_training(tc, scaler=None), "(none: the training pipeline's defaults)"


def diagnose(data: str, config: str | TrainingConfig, pipeline: str | PipelineConfig | None = None) -> DiagnosticReport:
    """Run every check on ``data`` (folder of session CSVs) against the training ``config``."""
    tc = config if isinstance(config, TrainingConfig) else read_training_config(config)
    if isinstance(pipeline, PipelineConfig):
        pipe, pipe_src = pipeline, pipeline.source or "(given)"
    else:
        pipe, pipe_src = resolve_pipeline(data, pipeline, tc)
    report = DiagnosticReport(data=str(data), config=tc.source or "(given)", pipeline=pipe_src)
    report.checks.extend(_config_checks(tc, pipe))

    label_map = tc.activity_to_label()
    result = read_sessions(data, pipe, label_map, errors="collect")
    files = {s.file for s in result.segments} | set(result.errors)
    report.n_files = len(files)
    if result.errors:
        first_file, first = next(iter(result.errors.items()))
        report.checks.append(Check(
            "input_files", FAIL, {Path(f).name: e.what for f, e in result.errors.items()},
            {"unreadable_files": 0}, fix=first.fix,
            detail=f"{len(result.errors)} of {len(files)} files cannot be read; first: {first.what} at {first.where}"))
    else:
        report.checks.append(Check("input_files", PASS, {"files": len(files)}, {"unreadable_files": 0}))
    if not result.segments:
        report.checks.append(Check("data_shape", FAIL, "no readable session", f"(n, {tc.window_size}, 6)",
                                   fix="fix the input files (see input_files)"))
        return report

    raw = make_windows(result.segments, pipe.window_size, pipe.step_size, None, tc.n_classes)
    report.n_windows = len(raw)
    shape = list(raw.x.shape)
    expected = [None, tc.window_size, len(tc.sensor_cols)]
    shape_ok = len(raw) > 0 and shape[1:] == expected[1:]
    report.checks.append(Check("data_shape", PASS if shape_ok else FAIL, shape, expected,
                               fix=("sessions are shorter than one window: record longer sessions" if len(raw) == 0
                                    else f"cut windows of {tc.window_size} samples x {len(tc.sensor_cols)} channels")))
    if len(raw) == 0:
        return report
    lab = report.check("label_mapping")
    if raw.y is not None:
        counts = np.bincount(raw.y, minlength=tc.n_classes)
        lab.measured = {**lab.measured, "windows_per_class": {tc.label_to_activity.get(i, str(i)): int(c)
                                                              for i, c in enumerate(counts)}}
    report.checks.extend(_data_checks(tc, pipe, result.segments, raw))
    scaler = pipe.scaler or tc.scaler
    if scaler is not None:
        report.checks.append(_normalization(scaler.transform(raw.x)))
    else:
        report.checks.append(Check("normalization", FAIL, "no scaler", "a scaler", fix="add the model's scaler"))
    order = ["window_size", "overlap", "sampling_rate", "sensor_channels", "normalization", "label_mapping",
             "data_shape", "feature_distributions", "input_files", "measured_rate", "channel_order", "accel_units",
             "gyro_units", "axes", "scaler_stats"]
    report.checks.sort(key=lambda c: order.index(c.name) if c.name in order else len(order))
    return report


def write_report(report: DiagnosticReport, uri: str) -> str:
    """The report as JSON (and a .txt beside it) in the lake."""
    storage.write_json(uri, report.to_dict())
    storage.write_text(uri.rsplit(".", 1)[0] + ".txt", report.to_text())
    return uri
