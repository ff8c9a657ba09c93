"""Signal processing as the seed project does it, vectorised over channels and whole recordings.

1. upsample x2 (polyphase FIR), zero-phase Butterworth low-pass (order 4, 60 Hz at the upsampled
   rate, forward-backward as second-order sections), decimate back to the device rate (every
   second sample: the 60 Hz low-pass is already the anti-alias filter);
2. cut non-overlapping parent windows on a fixed grid from the session start, each split into
   sub-windows (the model's tokens); a parent window that overlaps a disconnection (NaN) is
   dropped, the grid index is kept as ``parent_window_id`` so ids keep their time meaning;
3. remove the DC offset of every sub-window and channel.

The filter runs once per continuous stretch of the recording rather than once per window:
the same response without edge transients at every window border, and far fewer calls
(``bench/bench_eeg.py`` compares with a per-window loop).

``band_powers`` gives the drift features: log10 absolute power (uV^2) per band and channel over
each parent window (Welch, 1 s segments), and frontal alpha asymmetry log10(AF8) - log10(AF7).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.signal import butter, resample_poly, sosfiltfilt, welch

from biotune.eeg.formats import BAND_EDGES, BANDS, FS
from biotune.errors import InputFormatError

CUTOFF_HZ = 60.0
ORDER = 4
UPSAMPLE = 2


@lru_cache(maxsize=8)
def _sos(fs_up: float, cutoff: float, order: int) -> np.ndarray:
    return butter(order, cutoff, btype="low", fs=fs_up, output="sos")


def lowpass(x: np.ndarray, fs: float = FS, cutoff: float = CUTOFF_HZ, order: int = ORDER,
            up: int = UPSAMPLE) -> np.ndarray:
    """Upsample x``up``, zero-phase Butterworth low-pass, decimate back: (n, ch) -> (n, ch).

    Runs channel-major (each channel contiguous, filtered along the last axis): scipy walks a
    strided (n, ch) column about twice as slowly."""
    xt = np.ascontiguousarray(np.asarray(x, dtype=np.float64).T)
    hi = resample_poly(xt, up, 1, axis=-1)
    y = sosfiltfilt(_sos(fs * up, cutoff, order), hi, axis=-1)
    return y[:, ::up].T


def filter_recording(data: np.ndarray, fs: float = FS, **kw) -> np.ndarray:
    """``lowpass`` on each continuous (finite) stretch; NaN rows stay NaN; stretches too short to
    filter (< 0.25 s) become NaN."""
    finite = np.isfinite(data).all(axis=1)
    out = np.full(data.shape, np.nan)
    if finite.all():
        return lowpass(data, fs, **kw)
    d = np.diff(np.concatenate([[0], finite.astype(np.int8), [0]]))
    for a, b in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)):
        if b - a >= int(0.25 * fs):
            out[a:b] = lowpass(data[a:b], fs, **kw)
    return out


def window_sizes(window_seconds: float, sub_window_seconds: float, fs: float = FS) -> tuple[int, int]:
    """(samples per parent window, samples per sub-window); the sub-window must divide the window."""
    w = int(round(window_seconds * fs))
    s = int(round(sub_window_seconds * fs))
    if s < 1 or w < s or w % s or abs(w - window_seconds * fs) > 1e-6 or abs(s - sub_window_seconds * fs) > 1e-6:
        raise InputFormatError(
            f"window {window_seconds:g} s / sub-window {sub_window_seconds:g} s do not give whole samples at "
            f"{fs:g} Hz with the sub-window dividing the window", where="window_seconds / sub_window_seconds",
            fix="use e.g. --window-seconds 10 --sub-window-seconds 1 (or 0.5, 0.25)")
    return w, s


@dataclass
class Windows:
    parent_ids: np.ndarray  # (k,) grid index of each kept parent window
    starts: np.ndarray      # (k,) seconds from the session start
    signals: np.ndarray     # (k, n_sub, channels, sub_samples) float32, DC removed per sub-window
    dropped: int            # parent windows that overlapped a disconnection


def make_windows(filtered: np.ndarray, fs: float, window_seconds: float, sub_window_seconds: float) -> Windows:
    """Cut ``filtered`` (n, ch) into parent windows of sub-windows; drop windows with NaN."""
    w, s = window_sizes(window_seconds, sub_window_seconds, fs)
    n, ch = filtered.shape
    k = n // w
    blocks = filtered[:k * w].reshape(k, w, ch)
    ok = np.isfinite(blocks).all(axis=(1, 2))
    ids = np.flatnonzero(ok)
    x = blocks[ok].reshape(len(ids), w // s, s, ch).transpose(0, 1, 3, 2)  # (k, n_sub, ch, s)
    x = x - x.mean(axis=-1, keepdims=True)
    return Windows(ids.astype(np.int32), ids * (w / fs), np.ascontiguousarray(x, dtype=np.float32), int(k - len(ids)))


def process(data: np.ndarray, fs: float = FS, window_seconds: float = 10.0, sub_window_seconds: float = 0.25) -> Windows:
    """The whole chain on one recording grid (n, ch) with NaN for disconnections."""
    return make_windows(filter_recording(data, fs), fs, window_seconds, sub_window_seconds)


# --------------------------------------------------------------------------- drift features
def band_power_names(channels) -> list[str]:
    names = [f"{b.lower()}_{c}" for c in channels for b in BANDS]
    if "AF7" in channels and "AF8" in channels:
        names.append("alpha_asymmetry")
    return names


def band_powers(signals: np.ndarray, channels, fs: float = FS) -> np.ndarray:
    """(k, n_sub, ch, s) parent windows -> (k, features) in ``band_power_names(channels)`` order."""
    k, n_sub, ch, s = signals.shape
    x = signals.transpose(0, 2, 1, 3).reshape(k, ch, n_sub * s).astype(np.float64)
    nper = int(min(fs, n_sub * s))
    f, p = welch(x, fs=fs, nperseg=nper, axis=-1)
    df = f[1] - f[0]
    cols = []
    for b in BANDS:
        lo, hi = BAND_EDGES[b]
        sel = (f >= lo) & (f < hi)
        cols.append(np.log10(p[..., sel].sum(-1) * df + 1e-12))  # (k, ch)
    feats = np.stack(cols, axis=-1).reshape(k, ch * len(BANDS))  # channel-major, band-minor
    channels = list(channels)
    if "AF7" in channels and "AF8" in channels:
        alpha = BANDS.index("Alpha")
        af7, af8 = channels.index("AF7"), channels.index("AF8")
        asym = feats[:, af8 * len(BANDS) + alpha] - feats[:, af7 * len(BANDS) + alpha]
        feats = np.concatenate([feats, asym[:, None]], axis=1)
    return feats
