"""Generated Muse EEG in the real file formats, with a planted difference between remission groups.

``write_dataset(out_dir, participants, seconds)`` writes ``recordings/<participant>/`` holding
a Mind Monitor CSV (or a muse-lsl plain CSV, see ``fmt``) per participant, and ``labels.csv``
(Participant, Remission) beside ``recordings/``. The signal per channel, in microvolts:

- background: 1/f ("pink") noise, partly shared between channels (volume conduction);
- theta (~6 Hz) and beta (~20 Hz) bumps, and an alpha rhythm (narrow band around a
  participant's own peak, 9-11 Hz) that waxes and wanes;
- planted signal: remission -> ~1.5x alpha amplitude and right-dominant frontal alpha (alpha
  AF8 > AF7, asymmetry log(AF8/AF7) ~ +0.3) vs. left-dominant (~ -0.1) in non-remission, with
  participant-to-participant spread so groups overlap;
- line noise at 50 or 60 Hz (per participant), eye blinks (~150 uV, frontal, ~0.25/s, also
  written as '/muse/elements/blink' element rows), the odd jaw clench;
- dropouts: lost Bluetooth packets (12 samples missing, rows absent) and, with ``disconnect``,
  one ~1.5 s disconnection (no rows at all).

Mind Monitor rows carry the raw value + the ~841 uV mid-scale offset, clipped to the ADC range,
band powers recomputed at 10 Hz from the signal (log10 of uV^2 over 256-sample windows),
motion at 52 Hz, HSI/HeadBandOn/Battery, and packet-burst timestamps (arrival time of the
packet, ~1 ms apart within it) so the sampling rate can only be measured over the recording.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from biotune import storage
from biotune.eeg.formats import (BAND_EDGES, BANDS, BLINK, CHANNELS, FS, JAW_CLENCH, MIND_MONITOR_COLUMNS,
                                 MIND_MONITOR_FILE, MIND_MONITOR_TIME_FORMAT, PACKET, PLAIN_COLUMNS, PLAIN_FILE,
                                 RAW_MAX)

LABELS_FILE = "labels.csv"
_MID = RAW_MAX / 2


def participant_ids(n: int) -> list[str]:
    return [f"P{i:03d}" for i in range(1, n + 1)]


def _shaped_noise(rng: np.random.Generator, n: int, fs: float, shape) -> np.ndarray:
    """Gaussian noise with amplitude spectrum ``shape(f)``, scaled to unit standard deviation."""
    spec = rng.normal(size=n // 2 + 1) + 1j * rng.normal(size=n // 2 + 1)
    f = np.fft.rfftfreq(n, 1.0 / fs)
    x = np.fft.irfft(spec * shape(f), n)
    return x / (x.std() + 1e-12)


def participant_profile(remission: int, rng: np.random.Generator, effect: float = 1.0) -> dict:
    """The participant-level parameters; the planted effect lives in alpha gain and asymmetry."""
    remission = int(remission)
    return {
        "remission": remission,
        "alpha_peak": float(rng.uniform(9.0, 11.0)),
        "alpha_gain": float(np.exp(rng.normal(0.0, 0.15)) * (1.0 + 0.5 * effect * remission)),
        "asymmetry": float(rng.normal(0.3 * effect if remission else -0.1 * effect, 0.1)),
        "background": float(rng.uniform(10.0, 14.0)),
        "line_hz": float(rng.choice([50.0, 60.0])),
        "line_amp": float(rng.uniform(2.0, 8.0)),
        "blink_rate": float(rng.uniform(0.15, 0.35)),
        "offsets": rng.normal(0.0, 15.0, len(CHANNELS)),
    }


def simulate_eeg(seconds: float, profile: dict, rng: np.random.Generator, fs: float = FS
                 ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(n, 4) microvolts centred on 0 for TP9, AF7, AF8, TP10, and the event sample indices."""
    n = int(round(seconds * fs))
    t = np.arange(n) / fs
    k = len(CHANNELS)
    pink = lambda f: 1.0 / np.sqrt(np.maximum(f, 0.5))  # noqa: E731
    common = _shaped_noise(rng, n, fs, pink)
    x = np.empty((n, k))
    for c in range(k):
        x[:, c] = profile["background"] * (0.5 * common + 0.87 * _shaped_noise(rng, n, fs, pink))
    theta = lambda f: np.exp(-0.5 * ((f - 6.0) / 1.0) ** 2)  # noqa: E731
    beta = lambda f: np.exp(-0.5 * ((f - 20.0) / 4.0) ** 2)  # noqa: E731
    f0 = profile["alpha_peak"]
    alpha = lambda f: np.exp(-0.5 * ((f - f0) / 0.6) ** 2)  # noqa: E731
    alpha_common = _shaped_noise(rng, n, fs, alpha)
    # Frontal channels carry the asymmetry; temporal ones the same gain, no asymmetry.
    side = {"TP9": 0.0, "AF7": -0.5, "AF8": 0.5, "TP10": 0.0}
    for c, name in enumerate(CHANNELS):
        amp = 8.0 * profile["alpha_gain"] * np.exp(side[name] * profile["asymmetry"])
        a = 0.7 * alpha_common + 0.71 * _shaped_noise(rng, n, fs, alpha)
        x[:, c] += amp * a + 3.0 * _shaped_noise(rng, n, fs, theta) + 2.5 * _shaped_noise(rng, n, fs, beta)
    phase = rng.uniform(0, 2 * np.pi)
    x += profile["line_amp"] * np.sin(2 * np.pi * profile["line_hz"] * t + phase)[:, None]
    # Blinks: a ~300 ms positive deflection, frontal (AF7/AF8) strong, temporal weak.
    n_blinks = rng.poisson(profile["blink_rate"] * seconds)
    blinks = np.sort(rng.integers(int(0.5 * fs), max(int(0.5 * fs) + 1, n - int(0.5 * fs)), n_blinks))
    kernel_t = np.arange(-int(0.25 * fs), int(0.25 * fs)) / fs
    kernel = np.exp(-0.5 * (kernel_t / 0.06) ** 2)
    weights = np.array([0.1, 1.0, 1.0, 0.1])
    for b in blinks:
        lo = b + int(kernel_t[0] * fs)
        seg = slice(max(lo, 0), min(lo + len(kernel), n))
        x[seg] += rng.uniform(100, 200) * kernel[seg.start - lo: seg.stop - lo, None] * weights
    # Jaw clench: a burst of broadband muscle activity, strongest temporally.
    clenches = np.sort(rng.integers(0, max(n - int(fs), 1), rng.poisson(seconds / 120.0)))
    for j in clenches:
        m = min(int(0.6 * fs), n - j)
        x[j:j + m] += rng.normal(0, 25, (m, k)) * np.array([1.0, 0.4, 0.4, 1.0])
    return x, {"blinks": blinks, "jaw_clenches": clenches}


def _band_powers(x: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """Mind Monitor-style absolute band powers: every 0.1 s over the last 256 samples, log10 uV^2.

    Returns (sample index of each update, array (updates, bands*channels) in BAND_COLUMNS order).
    """
    win = 256
    if len(x) < win:
        return np.zeros(0, dtype=int), np.zeros((0, len(BANDS) * x.shape[1]))
    ends = np.arange(win, len(x) + 1, fs / 10.0).astype(int)
    frames = np.lib.stride_tricks.sliding_window_view(x, win, axis=0)[ends - win]  # (u, ch, win)
    w = np.hamming(win)
    spec = np.abs(np.fft.rfft((frames - frames.mean(-1, keepdims=True)) * w, axis=-1)) ** 2 / (fs * (w ** 2).sum())
    f = np.fft.rfftfreq(win, 1.0 / fs)
    df = f[1] - f[0]
    out = []
    for band in BANDS:
        lo, hi = BAND_EDGES[band]
        sel = (f >= lo) & (f < hi)
        out.append(np.log10(2 * spec[..., sel].sum(-1) * df + 1e-12))  # (u, ch)
    return ends - 1, np.concatenate(out, axis=1)


def _drop_packets(n: int, rng: np.random.Generator, loss: float, disconnect: bool, fs: float) -> np.ndarray:
    """Boolean keep-mask over samples: lost packets (12 samples) and optionally one disconnection."""
    keep = np.ones(n, dtype=bool)
    packets = n // PACKET
    lost = np.flatnonzero(rng.random(packets) < loss)
    lost = lost[(lost > 2) & (lost < packets - 2)]
    for p in lost:
        keep[p * PACKET:(p + 1) * PACKET] = False
    if disconnect and n > 20 * fs:
        start = int(rng.integers(int(5 * fs), n - int(10 * fs)))
        keep[start:start + int(1.5 * fs)] = False
    return keep


def _arrival_times(n: int, keep: np.ndarray, fs: float, rng: np.random.Generator) -> np.ndarray:
    """Per kept sample: seconds since the start at which the phone stamped it (packet bursts)."""
    idx = np.arange(n)
    packet = idx // PACKET
    latency = rng.uniform(0.005, 0.045, packet.max() + 1)  # Bluetooth delivery delay per packet
    packet_end = (np.minimum((np.arange(packet.max() + 1) + 1) * PACKET, n)) / fs
    arrival = np.maximum.accumulate(packet_end + latency)
    t = arrival[packet] + (idx % PACKET) * 0.0004  # rows of a packet land a fraction of a ms apart
    return np.floor(t[keep] * 1000.0) / 1000.0  # Mind Monitor writes milliseconds


def write_mind_monitor(path: str, x: np.ndarray, start: dt.datetime, rng: np.random.Generator, *,
                       fs: float = FS, events: dict[str, np.ndarray] | None = None, loss: float = 0.002,
                       disconnect: bool = False, offset: np.ndarray | None = None) -> str:
    """Write ``x`` (n, 4) microvolts centred on 0 as a Mind Monitor CSV at ``path``."""
    n, k = x.shape
    raw = np.clip(x + _MID + (0 if offset is None else offset), 0.0, RAW_MAX)
    keep = _drop_packets(n, rng, loss, disconnect, fs)
    t = _arrival_times(n, keep, fs, rng)
    kept = np.flatnonzero(keep)
    cols: dict[str, np.ndarray] = {}
    upd, bp = _band_powers(x, fs)
    which = np.searchsorted(upd, kept, side="right") - 1  # latest update at or before each sample
    band_vals = np.where(which[:, None] >= 0, bp[np.maximum(which, 0)], np.nan)
    for j, name in enumerate(MIND_MONITOR_COLUMNS[1:21]):
        cols[name] = band_vals[:, j]
    for c, ch in enumerate(CHANNELS):
        cols[f"RAW_{ch}"] = raw[kept, c]
    cols["AUX_RIGHT"] = np.clip(_MID + rng.normal(0, 40, len(kept)), 0, RAW_MAX)
    motion_tick = np.floor(kept / fs * 52.0).astype(int)  # 52 Hz motion, repeated between updates
    ticks = motion_tick.max() + 1
    acc = np.array([0.02, -0.05, 0.98]) + rng.normal(0, 0.01, (ticks, 3)).cumsum(0) * 0.05
    gyro = rng.normal(0, 1.5, (ticks, 3))
    for j, name in enumerate(("Accelerometer_X", "Accelerometer_Y", "Accelerometer_Z")):
        cols[name] = acc[motion_tick, j]
    for j, name in enumerate(("Gyro_X", "Gyro_Y", "Gyro_Z")):
        cols[name] = gyro[motion_tick, j]
    cols["HeadBandOn"] = np.ones(len(kept))
    for ch in CHANNELS:
        cols[f"HSI_{ch}"] = np.where(rng.random(len(kept)) < 0.02, 2.0, 1.0)
    cols["Battery"] = np.round(np.linspace(88.0, 88.0 - n / fs / 600.0, len(kept)))
    data = pd.DataFrame(cols)
    data.insert(0, "TimeStamp", t)
    data["Elements"] = ""
    # Element rows: connection first, then blinks / jaw clenches at their samples, a start marker.
    ev_t = [t[0] - 0.17]
    ev_name = [f"/muse/event/connected Muse-{rng.integers(0x1000, 0xFFFF):04X}"]
    ev_t.append(t[0] + 0.5)
    ev_name.append("/Marker/1")
    for key, label in (("blinks", BLINK), ("jaw_clenches", JAW_CLENCH)):
        for s in (events or {}).get(key, []):
            ev_t.append(float(np.floor((s / fs + 0.03) * 1000) / 1000))
            ev_name.append(label)
    ev = pd.DataFrame({"TimeStamp": ev_t, "Elements": ev_name})
    frame = pd.concat([data, ev], ignore_index=True).sort_values("TimeStamp", kind="stable")
    frame = frame.reindex(columns=list(MIND_MONITOR_COLUMNS))
    stamps = pd.to_datetime(start) + pd.to_timedelta(frame["TimeStamp"].to_numpy(), unit="s")
    frame["TimeStamp"] = stamps.strftime(MIND_MONITOR_TIME_FORMAT).str[:-3].to_numpy()
    # Rounded floats written by pandas' default formatter: ~1.5x faster than a float_format.
    decimals = {c: 3 for c in frame.columns if c.startswith(("RAW_", "AUX_"))}
    decimals.update({c: 6 for c in frame.columns if c.startswith(BANDS) or c.startswith(("Accel", "Gyro"))})
    frame = frame.round(decimals)
    with storage.atomic_local_path(path, suffix=".csv") as tmp:
        frame.to_csv(tmp, index=False, na_rep="")
    return path


def write_plain(path: str, x: np.ndarray, start: dt.datetime, rng: np.random.Generator, *, fs: float = FS,
                loss: float = 0.002, disconnect: bool = False) -> str:
    """Write ``x`` (n, 4) as a muse-lsl CSV: timestamps (Unix s), TP9, AF7, AF8, TP10, Right AUX."""
    n = len(x)
    keep = _drop_packets(n, rng, loss, disconnect, fs)
    t0 = start.replace(tzinfo=dt.timezone.utc).timestamp() if start.tzinfo is None else start.timestamp()
    frame = pd.DataFrame(x[keep], columns=list(PLAIN_COLUMNS[1:5]))
    frame.insert(0, "timestamps", t0 + np.flatnonzero(keep) / fs)
    frame["Right AUX"] = 0.0
    frame = frame.round(3)
    frame["timestamps"] = frame["timestamps"].map("{:.3f}".format)
    with storage.atomic_local_path(path, suffix=".csv") as tmp:
        frame.to_csv(tmp, index=False)
    return path


def write_dataset(out_dir: str, participants: int = 12, seconds: float = 120.0, *, seed: int = 0,
                  fmt: str = "mind_monitor", effect: float = 1.0, remission_fraction: float = 0.5,
                  loss: float = 0.002, disconnect_every: int = 0, fs: float = FS) -> dict:
    """Write ``participants`` recordings and ``labels.csv`` under ``out_dir``.

    ``fmt``: mind_monitor | plain | mixed (alternating). ``disconnect_every``: every k-th
    participant's recording has one ~1.5 s disconnection (0 = none). Returns
    ``{"source": <out_dir>/recordings, "labels": path, "files": {participant: path}, "remission": {...}}``.
    """
    if fmt not in ("mind_monitor", "plain", "mixed"):
        raise ValueError(f"fmt must be mind_monitor, plain or mixed; got {fmt!r}")
    out = Path(out_dir) / "recordings"
    rng = np.random.default_rng(seed)
    ids = participant_ids(int(participants))
    n_rem = int(round(remission_fraction * len(ids)))
    labels = np.array([1] * n_rem + [0] * (len(ids) - n_rem))
    rng.shuffle(labels)
    files, remission = {}, {}
    base = dt.datetime(2024, 3, 4, 9, 30, 0)
    for i, (pid, label) in enumerate(zip(ids, labels)):
        prng = np.random.default_rng([seed, i])
        profile = participant_profile(int(label), prng, effect)
        x, events = simulate_eeg(seconds, profile, prng, fs)
        start = base + dt.timedelta(days=i // 4, hours=2 * (i % 4), seconds=int(prng.integers(0, 600)))
        disconnect = bool(disconnect_every) and (i % int(disconnect_every) == 0)
        plain = fmt == "plain" or (fmt == "mixed" and i % 2 == 1)
        if plain:
            path = str(out / pid / PLAIN_FILE.format(start))
            write_plain(path, x, start, prng, fs=fs, loss=loss, disconnect=disconnect)
        else:
            path = str(out / pid / MIND_MONITOR_FILE.format(start))
            write_mind_monitor(path, x, start, prng, fs=fs, events=events, loss=loss, disconnect=disconnect,
                               offset=profile["offsets"])
        files[pid] = path
        remission[pid] = int(label)
    labels_path = str(Path(out_dir) / LABELS_FILE)
    storage.write_text(labels_path, pd.DataFrame({"Participant": ids, "Remission": labels}).to_csv(index=False))
    return {"source": str(out), "labels": labels_path, "files": files, "remission": remission}


def write_batch(path: str, participants: int = 6, seconds: float = 60.0, *, seed: int = 0, shifted: bool = False,
                label_fraction: float = 0.5, window_seconds: float = 10.0, sub_window_seconds: float = 0.25,
                fs: float = FS, windows: int | None = None) -> str:
    """A daily production batch at ``path``: new participants' processed windows in the primary format,
    Remission known for ``label_fraction`` of them (null for the rest). ``windows``: keep exactly
    this many parent windows (the first ones in file order; enough participants must be asked for).

    ``shifted``: production has drifted - a headband with ~1.6x amplifier gain, mains noise three times
    stronger and more blinks, so the band-power features move (PSI well above 0.25)."""
    from biotune.eeg import processing
    from biotune.eeg.primary import PrimaryDataset, write_primary

    rng = np.random.default_rng([seed, 7])
    metas, sigs = [], []
    n_sub = int(round(window_seconds / sub_window_seconds))
    s = int(round(sub_window_seconds * fs))
    for i in range(int(participants)):
        prng = np.random.default_rng([seed, 7, i])
        label = int(prng.random() < 0.5)
        profile = participant_profile(label, prng)
        if shifted:
            profile["line_amp"] *= 3.0
            profile["blink_rate"] *= 2.0
        x, _ = simulate_eeg(seconds, profile, prng, fs)
        if shifted:
            x *= 1.6
        win = processing.process(x, fs, window_seconds, sub_window_seconds)
        k = len(win.parent_ids)
        known = rng.random() < label_fraction
        starts = win.starts[:, None] + np.arange(n_sub)[None, :] * (s / fs)
        metas.append(pd.DataFrame({
            "Participant": f"S{seed:04d}-{i:03d}", "Remission": pd.array([label if known else None] * (k * n_sub),
                                                                         dtype="Int8"),
            "session": f"batch-{seed}", "parent_window_id": np.repeat(win.parent_ids, n_sub).astype(np.int32),
            "sub_window_id": np.tile(np.arange(n_sub, dtype=np.int16), k),
            "window_start": starts.reshape(-1), "window_end": starts.reshape(-1) + s / fs}))
        sigs.append(win.signals.reshape(k * n_sub, len(CHANNELS), s))
    meta, signals = pd.concat(metas, ignore_index=True), np.concatenate(sigs)
    if windows is not None:  # rows are in file order (participants S..-000, -001, ... and windows ascending)
        if int(windows) * n_sub > len(meta):
            raise ValueError(f"{participants} participants x {seconds:g} s give {len(meta) // n_sub} windows, "
                             f"fewer than the {windows} asked for")
        meta, signals = meta.iloc[: int(windows) * n_sub].reset_index(drop=True), signals[: int(windows) * n_sub]
    data = PrimaryDataset(meta, signals, CHANNELS, float(fs), float(window_seconds), float(sub_window_seconds))
    return write_primary(data, path)
