"""Synthetic NHANES 2013-14 files in the public release's SAS XPORT v5 layout.

``write_nhanes(out_dir, participants, seed)`` writes PAXHD_H, PAXDAY_H, PAXMIN_H, DPQ_H,
RXQ_RX_H, RXQ_DRUG and DEMO_H with the codebooks' variable names, types and codes:

- every numeric column is an 8-byte IBM double (SEQN included); PAXFTIME, PAXETLDY,
  PAXMSTD, PAXSENID, RXDDRUG, RXDDRGID, the Multum category names and PAXFLGSM are
  character columns; PAXDAYM, PAXDAYWM, PAXPREDM (minute file), PAXDAYD, PAXDAYWD (day
  file) and PAXFDAY, PAXLDAY, PAXHAND, PAXORENT (header) are one-character codes as in the
  public release. Readers must accept them as character or numeric.
- PAXSSNMP counts 80 Hz samples from the first data point (minute = PAXSSNMP / 4800); the
  clock time of minute 0 is PAXHD_H.PAXFTIME ("HH:MM:SS", 09:11 to 21:30); up to 9 calendar
  days with partial first and last days; PAXMTSM -0.01 = MIMS not computable; PAXPREDM
  1 wake, 2 sleep, 3 non-wear, 4 unknown; non-wear stretches and a removed device at the end.
- DPQ010-DPQ100 scored 0-3 with 7 (refused) and 9 (don't know); only adults answer.
- RXQ_RX_H has one row per reported drug (several per person), RXDUSE 1/2/7/9, and joins
  RXQ_DRUG on RXDDRGID; Multum category 69 = benzodiazepines, 208 = SSRI antidepressants
  (third level, RXDDCIxC), stored in RXDDCI1A..RXDDCI4C as numbers.
- some participants have DPQ but no actigraphy (PAXSTS 2), some wear nothing, some too little.

Planted signal (strong enough for a model to learn on a few hundred people): depression
(PHQ-9 >= 10) -> later, more irregular sleep and less daytime activity; benzodiazepines ->
longer sleep and stiller nights; SSRIs -> a weaker shift the same way.

PAXMIN_H is large (7,000 people ~ 80M rows ~ 8 GB), so it is written by a streaming XPORT
writer (``XportStreamWriter``): the header comes from pyreadstat (so the layout is the one
pyreadstat writes), the observations are encoded batch by batch as IBM floats with numpy.
The other tables are small and written by ``pyreadstat.write_xport`` directly.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

MINUTES_PER_DAY = 1440
SAMPLES_PER_MINUTE = 4800  # 80 Hz * 60 s
FIRST_SEQN = 73557  # first SEQN of NHANES 2013-14

# ---------------------------------------------------------------------------------------
# XPORT v5 streaming writer
# ---------------------------------------------------------------------------------------

_OBS_HEADER = b"HEADER RECORD*******OBS     HEADER RECORD!!!!!!!000000000000000000000000000000  "


def ieee_to_ibm(values: np.ndarray) -> np.ndarray:
    """IEEE doubles -> 8-byte IBM hexadecimal floats (as uint64; NaN -> SAS missing '.')."""
    x = np.ascontiguousarray(values, dtype=np.float64)
    bits = x.view(np.uint64)
    sign = bits & np.uint64(0x8000000000000000)
    biased = ((bits >> np.uint64(52)) & np.uint64(0x7FF)).astype(np.int64)
    mant = (bits & np.uint64(0x000FFFFFFFFFFFFF)) | np.uint64(0x0010000000000000)
    exp2 = biased - 1023
    shift = np.mod(exp2, 4)
    exp16 = (exp2 + 4 - shift) // 4 + 64
    frac = mant << shift.astype(np.uint64)
    out = sign | (np.clip(exp16, 0, 127).astype(np.uint64) << np.uint64(56)) | frac
    zero = (biased == 0) | (exp16 < 0)  # zeros, denormals and underflow -> 0
    out[zero] = 0
    out[np.isnan(x)] = np.uint64(0x2E00000000000000)
    return out


@dataclass(frozen=True)
class XptColumn:
    name: str
    kind: str  # "num" or "char"
    width: int = 8
    label: str = ""


class XportStreamWriter:
    """Write a SAS XPORT v5 file batch by batch with bounded memory.

    The header records are produced by ``pyreadstat.write_xport`` on a one-row frame of the
    same columns (char columns at their full width), so the layout matches pyreadstat's;
    the observations are then appended here as IBM floats / blank-padded bytes, and the last
    80-byte record is padded with blanks, exactly as pyreadstat does.
    """

    def __init__(self, path: str | os.PathLike, columns: Sequence[XptColumn], table_name: str,
                 file_label: str = "") -> None:
        import pyreadstat

        self.path = Path(path)
        self.columns = list(columns)
        self.table_name = table_name
        sample = {}
        for c in self.columns:
            sample[c.name] = [1.0] if c.kind == "num" else ["X" * c.width]
        with tempfile.TemporaryDirectory() as tmp:
            hdr_path = Path(tmp) / "header.xpt"
            pyreadstat.write_xport(pd.DataFrame(sample), str(hdr_path), file_label=file_label,
                                   column_labels=[c.label for c in self.columns],
                                   table_name=table_name, file_format_version=5)
            raw = hdr_path.read_bytes()
        at = raw.find(_OBS_HEADER)
        if at < 0:  # pragma: no cover - pyreadstat always writes it
            raise RuntimeError("pyreadstat wrote no OBS header")
        self._header = raw[: at + 80]
        names, formats, offsets, pos = [], [], [], 0
        for c in self.columns:
            names.append(c.name)
            formats.append(">u8" if c.kind == "num" else f"S{c.width}")
            offsets.append(pos)
            pos += 8 if c.kind == "num" else c.width
        self.row_length = pos
        self._dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets,
                                "itemsize": pos})
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self._fh = open(self._tmp, "wb")
        self._fh.write(self._header)
        self._data_bytes = 0
        self.rows = 0

    def encode(self, data: dict[str, np.ndarray]) -> bytes:
        n = len(next(iter(data.values())))
        rec = np.empty(n, dtype=self._dtype)
        for c in self.columns:
            col = data[c.name]
            if c.kind == "num":
                rec[c.name] = ieee_to_ibm(np.asarray(col, dtype=np.float64))
            else:
                arr = np.asarray(col)
                if arr.dtype.kind != "S":
                    arr = np.char.encode(arr.astype(str), "latin-1")
                arr = arr.astype(f"S{c.width}")
                u8 = arr.view(np.uint8).reshape(n, c.width).copy()
                u8[u8 == 0] = 32  # XPORT pads character values with blanks
                rec[c.name] = u8.view(f"S{c.width}").reshape(n)
        return rec.tobytes()

    def write(self, data: dict[str, np.ndarray]) -> None:
        blob = self.encode(data)
        self._fh.write(blob)
        self._data_bytes += len(blob)
        self.rows += len(blob) // self.row_length

    def close(self) -> Path:
        pad = (-self._data_bytes) % 80
        self._fh.write(b" " * pad)
        self._fh.close()
        os.replace(self._tmp, self.path)
        return self.path

    def __enter__(self) -> "XportStreamWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._fh.close()
            self._tmp.unlink(missing_ok=True)


def _write_small(df: pd.DataFrame, path: Path, table_name: str, labels: dict[str, str] | None = None) -> Path:
    import pyreadstat

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    col_labels = [(labels or {}).get(c, c) for c in df.columns]
    pyreadstat.write_xport(df, str(tmp), table_name=table_name, file_format_version=5,
                           column_labels=col_labels)
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------
# Column layouts (codebook names and types)
# ---------------------------------------------------------------------------------------

PAXMIN_COLUMNS = [
    XptColumn("SEQN", "num", label="Respondent sequence number"),
    XptColumn("PAXDAYM", "char", 1, "Day of PAM measurements for this minute"),
    XptColumn("PAXDAYWM", "char", 1, "Day of the week"),
    XptColumn("PAXSSNMP", "num", label="Starting sample number for the minute"),
    XptColumn("PAXTSM", "num", label="Total seconds with data for the minute"),
    XptColumn("PAXAISMM", "num", label="Minute count: 80hz data in idle sleep mode"),
    XptColumn("PAXLXMM", "num", label="Mean lux value for the minute"),
    XptColumn("PAXLXSDM", "num", label="Std dev of lux value for the minute"),
    XptColumn("PAXMTSM", "num", label="MIMS triaxial value for the minute"),
    XptColumn("PAXMXM", "num", label="MIMS x-axis value for the minute"),
    XptColumn("PAXMYM", "num", label="MIMS y-axis value for the minute"),
    XptColumn("PAXMZM", "num", label="MIMS z-axis value for the minute"),
    XptColumn("PAXPREDM", "char", 1, "Wake/sleep/non-wear prediction"),
    XptColumn("PAXTRANM", "num", label="Transition flag"),
    XptColumn("PAXQFM", "num", label="Data quality flag count for the minute"),
    XptColumn("PAXFLGSM", "char", 8, "Quality flags triggered"),
]

# (RXDDRGID, RXDDRUG, RXDINGFL, [(cat A, B, C), ...] with names)
_CATEGORY_NAMES = {
    57: "CENTRAL NERVOUS SYSTEM AGENTS", 67: "ANXIOLYTICS, SEDATIVES, AND HYPNOTICS",
    69: "BENZODIAZEPINES", 70: "MISCELLANEOUS ANXIOLYTICS, SEDATIVES AND HYPNOTICS",
    64: "ANTICONVULSANTS", 203: "BENZODIAZEPINE ANTICONVULSANTS",
    242: "PSYCHOTHERAPEUTIC AGENTS", 249: "ANTIDEPRESSANTS", 208: "SSRI ANTIDEPRESSANTS",
    76: "MISCELLANEOUS ANTIDEPRESSANTS", 306: "PHENYLPIPERAZINE ANTIDEPRESSANTS",
    308: "SSNRI ANTIDEPRESSANTS", 40: "CARDIOVASCULAR AGENTS", 42: "ANGIOTENSIN CONVERTING ENZYME INHIBITORS",
    48: "CALCIUM CHANNEL BLOCKING AGENTS", 358: "METABOLIC AGENTS", 19: "ANTIHYPERLIPIDEMIC AGENTS",
    173: "HMG-COA REDUCTASE INHIBITORS (STATINS)", 99: "ANTIDIABETIC AGENTS", 214: "BIGUANIDES",
    97: "HORMONES/HORMONE MODIFIERS", 103: "THYROID HORMONES", 87: "GASTROINTESTINAL AGENTS",
    272: "PROTON PUMP INHIBITORS", 122: "RESPIRATORY AGENTS", 125: "BRONCHODILATORS",
    180: "ADRENERGIC BRONCHODILATORS", 58: "ANALGESICS", 61: "NARCOTIC ANALGESIC COMBINATIONS",
}

DRUGS = [
    ("d00168", "ALPRAZOLAM", 1, [(57, 67, 69)]),
    ("d00149", "LORAZEPAM", 1, [(57, 67, 69)]),
    ("d00148", "DIAZEPAM", 1, [(57, 67, 69)]),
    ("d00197", "CLONAZEPAM", 1, [(57, 64, 203), (57, 67, 69)]),  # 69 in the 2nd category
    ("d00880", "SERTRALINE", 1, [(242, 249, 208)]),
    ("d00236", "FLUOXETINE", 1, [(242, 249, 208)]),
    ("d04332", "CITALOPRAM", 1, [(242, 249, 208)]),
    ("d04812", "ESCITALOPRAM", 1, [(242, 249, 208)]),
    ("d03157", "PAROXETINE", 1, [(242, 249, 208)]),
    ("d00395", "TRAZODONE", 1, [(242, 249, 306)]),
    ("d00181", "BUPROPION", 1, [(242, 249, 76), (105, 320, None)]),
    ("d03181", "VENLAFAXINE", 1, [(242, 249, 308)]),
    ("d00910", "ZOLPIDEM", 1, [(57, 67, 70)]),
    ("d00732", "LISINOPRIL", 1, [(40, 42, None)]),
    ("d00689", "AMLODIPINE", 1, [(40, 48, None)]),
    ("d04105", "ATORVASTATIN", 1, [(358, 19, 173)]),
    ("d03807", "METFORMIN", 1, [(358, 99, 214)]),
    ("d00278", "LEVOTHYROXINE", 1, [(97, 103, None)]),
    ("d00325", "OMEPRAZOLE", 1, [(87, 272, None)]),
    ("d00749", "ALBUTEROL", 1, [(122, 125, 180)]),
    ("d03428", "ACETAMINOPHEN; HYDROCODONE", 2, [(57, 58, 61)]),
]
_CATEGORY_NAMES[105] = "MISCELLANEOUS AGENTS"
_CATEGORY_NAMES[320] = "SMOKING CESSATION AGENTS"
BENZO_IDS = [d[0] for d in DRUGS if any(69 in c for c in d[3])]
SSRI_IDS = [d[0] for d in DRUGS if any(208 in c for c in d[3])]
OTHER_IDS = [d[0] for d in DRUGS if d[0] not in BENZO_IDS + SSRI_IDS]
_DRUG_BY_ID = {d[0]: d for d in DRUGS}
_ICD = {"d00168": ("F41.9", "Anxiety disorder, unspecified"), "d00880": ("F32.9", "Major depressive disorder"),
        "d00732": ("I10", "Essential (primary) hypertension"), "d03807": ("E11", "Type 2 diabetes mellitus")}


# ---------------------------------------------------------------------------------------
# Latent profiles
# ---------------------------------------------------------------------------------------

def latent_profiles(participants: int, seed: int = 0) -> pd.DataFrame:
    """The hidden truth behind ``write_nhanes(..., participants, seed)`` (deterministic)."""
    rng = np.random.default_rng([seed, 1])
    n = int(participants)
    seqn = FIRST_SEQN + np.arange(n) * 1 + rng.integers(0, 2, n).cumsum()
    age = np.where(rng.random(n) < 0.12, rng.integers(3, 18, n), rng.integers(18, 81, n))
    adult = age >= 18
    depressed = adult & (rng.random(n) < 0.22)
    ssri = adult & (rng.random(n) < np.where(depressed, 0.30, 0.08))
    benzo = adult & (rng.random(n) < np.where(depressed, 0.20, 0.08))
    u = rng.random(n)
    wear = np.select([u < 0.07, u < 0.085, u < 0.12], ["none", "all_nonwear", "low"], "good")
    has_dpq = adult & (rng.random(n) < 0.96)
    # some people who answered DPQ have no actigraphy at all; keep that group non-empty
    return pd.DataFrame({
        "SEQN": seqn.astype(np.int64), "age": age, "adult": adult, "depressed": depressed,
        "ssri": ssri, "benzo": benzo, "wear": wear, "has_dpq": has_dpq,
        "start_min": rng.integers(551, 1291, n),  # 09:11 .. 21:30
        "onset": 1380 + rng.normal(0, 40, n) + np.where(depressed, 100, 0) + np.where(ssri, 30, 0),
        "jitter": 25 + np.where(depressed, 55, 0) + rng.gamma(2.0, 5.0, n),
        "duration": 450 + rng.normal(0, 30, n) + np.where(benzo, 80, 0) + np.where(ssri, 20, 0)
        - np.where(depressed, 15, 0),
        "level": np.exp(rng.normal(np.log(14.0), 0.2, n)) * np.where(depressed, 0.72, 1.0)
        * np.where(ssri, 0.92, 1.0),
        "night_move": np.where(benzo, 0.45, 1.0) * np.where(depressed, 1.4, 1.0),
        "fday": rng.integers(1, 8, n),
    })


# ---------------------------------------------------------------------------------------
# Minute simulation
# ---------------------------------------------------------------------------------------

def _digit(values: np.ndarray) -> np.ndarray:
    """Integers 0-9 -> one-character byte strings (b"1"), fast."""
    return (np.asarray(values) + 48).astype(np.uint8).view("S1")


def _simulate_minutes(p, seed: int) -> dict[str, np.ndarray] | None:
    """All PAXMIN_H columns for one participant (or None when nothing was recorded)."""
    if p.wear == "none":
        return None
    rng = np.random.default_rng([seed, 2, int(p.SEQN)])
    u = rng.random()
    if u < 0.03:
        n = int(rng.integers(3 * MINUTES_PER_DAY, 7 * MINUTES_PER_DAY))  # battery ran out
    elif u < 0.05:
        n = 194 * 60
    else:
        n = 193 * 60
    start = int(p.start_min)
    k = np.arange(n)
    clock = start + k  # minutes since midnight of day 1
    day = clock // MINUTES_PER_DAY
    tod = clock % MINUTES_PER_DAY
    state = np.ones(n, dtype=np.int8)
    grid_len = int(clock[-1]) + 1
    sleep = np.zeros(grid_len, dtype=bool)
    onsets = p.onset + rng.normal(0, p.jitter, 11)
    durations = p.duration + rng.normal(0, 35, 11)
    for d in range(-1, 10):
        a = int(d * MINUTES_PER_DAY + onsets[d + 1])
        b = int(a + max(durations[d + 1], 120))
        a, b = max(a, 0), min(b, grid_len)
        if a < b:
            sleep[a:b] = True
    is_sleep = sleep[clock]
    state[is_sleep] = 2
    # non-wear: the device taken off on the morning of the last day, plus a few stretches
    nonwear = np.zeros(n, dtype=bool)
    last_day = int(day[-1])
    if last_day >= 8:
        off = (day == last_day) & (tod >= 600 + int(rng.integers(0, 120)))
        nonwear |= off
    for _ in range(int(rng.integers(0, 4))):
        a = int(rng.integers(0, n))
        nonwear[a: a + int(rng.integers(20, 240))] = True
    if p.wear == "low":  # wore it on two or three days only
        keep_days = set(rng.choice(np.arange(last_day + 1), size=min(3, last_day + 1), replace=False).tolist())
        nonwear |= ~np.isin(day, list(keep_days))
    if p.wear == "all_nonwear":
        nonwear[:] = True
    state[nonwear] = 3
    unknown = (rng.random(n) < 0.01) & ~nonwear
    state[unknown] = 4

    # activity (MIMS): diurnal wake activity, still nights, almost nothing off the wrist
    diurnal = 0.55 + 0.45 * np.sin(np.pi * np.clip((tod - 420) / 900.0, 0, 1))
    wake_act = p.level * diurnal * rng.gamma(1.4, 1 / 1.4, n)
    sleep_act = rng.gamma(0.6, 0.9 * p.night_move, n) * (rng.random(n) > 0.3)
    mtsm = np.where(state == 2, sleep_act, wake_act)
    mtsm = np.where(state == 3, rng.gamma(0.3, 0.2, n) * (rng.random(n) < 0.1), mtsm)
    w = rng.random((n, 3)) + 0.2
    w /= w.sum(axis=1, keepdims=True)
    axes = np.round(mtsm[:, None] * w, 3)
    mtsm = axes.sum(axis=1)
    bad = rng.random(n) < 0.0008  # MIMS could not be computed
    axes[bad, int(rng.integers(0, 3))] = -0.01
    mtsm = np.where(bad, -0.01, np.round(mtsm, 3))

    tsm = np.full(n, 60.0)
    tsm[-1] = float(rng.integers(1, 60))
    aism = np.where(state >= 2, rng.integers(1500, 4801, n), rng.integers(0, 300, n) * (rng.random(n) < 0.2))
    daylight = (tod > 390) & (tod < 1230) & (state == 1)
    lux = np.where(daylight, np.exp(rng.normal(4.5, 1.2, n)), np.exp(rng.normal(0.2, 0.8, n)))
    lux = np.round(np.minimum(lux, 2500.0), 2)
    luxsd = np.round(lux * rng.random(n) * 0.5, 2)
    trans = np.zeros(n)
    trans[1:] = (state[1:] != state[:-1]).astype(float)
    qf = (rng.random(n) < 0.001).astype(float)
    flags = np.where(qf > 0, b"A", b"")
    weekday = (int(p.fday) - 1 + day) % 7 + 1
    return {
        "SEQN": np.full(n, float(p.SEQN)),
        "PAXDAYM": _digit(day + 1), "PAXDAYWM": _digit(weekday),
        "PAXSSNMP": k.astype(np.float64) * SAMPLES_PER_MINUTE,
        "PAXTSM": tsm, "PAXAISMM": aism.astype(float), "PAXLXMM": lux, "PAXLXSDM": luxsd,
        "PAXMTSM": mtsm, "PAXMXM": axes[:, 0], "PAXMYM": axes[:, 1], "PAXMZM": axes[:, 2],
        "PAXPREDM": _digit(state), "PAXTRANM": trans, "PAXQFM": qf, "PAXFLGSM": flags,
        "_state": state, "_day": day, "_tod": tod,
    }


def _hms(minutes: int) -> str:
    minutes = int(minutes) % MINUTES_PER_DAY
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"


def _day_rows(p, m: dict[str, np.ndarray]) -> pd.DataFrame:
    day = m["_day"]
    state = m["_state"]
    nd = int(day[-1]) + 1
    valid = m["PAXQFM"] == 0
    mt = np.where(m["PAXMTSM"] < 0, 0.0, m["PAXMTSM"])
    trans = m["PAXTRANM"] > 0
    first_idx = np.searchsorted(day, np.arange(nd))

    def cnt(mask):
        return np.bincount(day, weights=mask.astype(float), minlength=nd)

    return pd.DataFrame({
        "SEQN": float(p.SEQN),
        "PAXDAYD": (np.arange(nd) + 1).astype(str),
        "PAXDAYWD": ((int(p.fday) - 1 + np.arange(nd)) % 7 + 1).astype(str),
        "PAXSSNDP": m["PAXSSNMP"][first_idx],
        "PAXMSTD": [_hms(int(p.start_min)) if d == 0 else "00:00:00" for d in range(nd)],
        "PAXTMD": np.round(np.bincount(day, weights=m["PAXTSM"], minlength=nd) / 60.0),
        "PAXAISMD": np.bincount(day, weights=m["PAXAISMM"], minlength=nd),
        "PAXVMD": cnt(valid),
        "PAXMTSD": np.round(np.bincount(day, weights=mt * valid, minlength=nd), 3),
        "PAXWWMD": cnt(valid & (state == 1) & ~trans),
        "PAXSWMD": cnt(valid & (state == 2) & ~trans),
        "PAXNWMD": cnt(valid & (state == 3) & ~trans),
        "PAXUMD": cnt(valid & ((state == 4) | trans)),
        "PAXLXSD": np.round(np.bincount(day, weights=m["PAXLXMM"] * valid, minlength=nd), 2),
        "PAXQFD": np.bincount(day, weights=m["PAXQFM"], minlength=nd),
    })


# ---------------------------------------------------------------------------------------
# Questionnaires
# ---------------------------------------------------------------------------------------

def _dpq(profiles: pd.DataFrame, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng([seed, 3])
    rows = []
    for p in profiles.itertuples():
        if not p.has_dpq:
            continue
        total = int(rng.integers(10, 25)) if p.depressed else int(min(9, rng.poisson(2.5)))
        items = np.zeros(9, dtype=float)
        for _ in range(total):
            free = np.flatnonzero(items < 3)
            items[rng.choice(free)] += 1
        if rng.random() < 0.04:  # refused / don't know on one item -> no valid total
            items[int(rng.integers(0, 9))] = float(rng.choice([7, 9]))
        if rng.random() < 0.01:  # skipped the whole screener
            items[:] = np.nan
        dpq100 = float(min(3, rng.integers(0, 2) + (1 if p.depressed else 0))) if total > 0 else np.nan
        if rng.random() < 0.01 and total > 0:
            dpq100 = 9.0
        rows.append([float(p.SEQN), *items, dpq100])
    cols = ["SEQN"] + [f"DPQ0{i}0" for i in range(1, 10)] + ["DPQ100"]
    return pd.DataFrame(rows, columns=cols)


def _rx(profiles: pd.DataFrame, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng([seed, 4])
    rows = []
    for p in profiles.itertuples():
        if rng.random() < 0.02:
            continue  # no prescription interview at all
        drugs: list[str] = []
        if p.benzo:
            drugs.append(str(rng.choice(BENZO_IDS)))
        if p.ssri:
            drugs.append(str(rng.choice(SSRI_IDS)))
        takes_other = rng.random() < (0.25 + 0.006 * p.age)
        if takes_other or drugs:
            extra = int(rng.integers(0 if drugs else 1, 5))
            drugs += [str(d) for d in rng.choice(OTHER_IDS, size=min(extra, len(OTHER_IDS)), replace=False)]
        if drugs:
            for d in drugs:
                icd = _ICD.get(d, ("", ""))
                rows.append({"SEQN": float(p.SEQN), "RXDUSE": 1.0, "RXDDRUG": _DRUG_BY_ID[d][1],
                             "RXDDRGID": d, "RXQSEEN": float(rng.choice([1, 2])),
                             "RXDDAYS": float(rng.integers(10, 4000)), "RXDRSC1": icd[0], "RXDRSC2": "",
                             "RXDRSC3": "", "RXDRSD1": icd[1], "RXDRSD2": "", "RXDRSD3": "",
                             "RXDCOUNT": float(len(drugs))})
        else:
            use = 2.0 if rng.random() > 0.01 else float(rng.choice([7, 9]))
            rows.append({"SEQN": float(p.SEQN), "RXDUSE": use, "RXDDRUG": "", "RXDDRGID": "",
                         "RXQSEEN": np.nan, "RXDDAYS": np.nan, "RXDRSC1": "", "RXDRSC2": "", "RXDRSC3": "",
                         "RXDRSD1": "", "RXDRSD2": "", "RXDRSD3": "", "RXDCOUNT": np.nan})
    return pd.DataFrame(rows)


def _rx_drug() -> pd.DataFrame:
    rows = []
    for drg_id, name, ingfl, cats in DRUGS:
        row = {"RXDDRGID": drg_id, "RXDDRUG": name, "RXDINGFL": float(ingfl)}
        for i in range(1, 5):
            for j, lev in enumerate("ABC"):
                cat = cats[i - 1][j] if i <= len(cats) else None
                row[f"RXDDCI{i}{lev}"] = float(cat) if cat is not None else np.nan
        for i in range(1, 7):
            for j, lev in enumerate("ABC"):
                cat = cats[i - 1][j] if i <= len(cats) else None
                row[f"RXDICI{i}{lev}"] = float(cat) if cat is not None else np.nan
        for pref, n in (("RXDDCN", 4), ("RXDICN", 6)):
            for i in range(1, n + 1):
                for j, lev in enumerate("ABC"):
                    cat = cats[i - 1][j] if i <= len(cats) else None
                    row[f"{pref}{i}{lev}"] = _CATEGORY_NAMES.get(cat, "") if cat is not None else ""
        rows.append(row)
    return pd.DataFrame(rows)


def _demo(profiles: pd.DataFrame, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng([seed, 5])
    n = len(profiles)
    return pd.DataFrame({
        "SEQN": profiles["SEQN"].astype(float), "SDDSRVYR": 8.0, "RIDSTATR": 2.0,
        "RIAGENDR": rng.integers(1, 3, n).astype(float), "RIDAGEYR": profiles["age"].astype(float),
        "RIDRETH1": rng.integers(1, 6, n).astype(float),
        "RIDRETH3": rng.choice([1, 2, 3, 4, 6, 7], n).astype(float),
        "RIDEXMON": rng.integers(1, 3, n).astype(float),
        "DMDEDUC2": np.where(profiles["age"] >= 20, rng.choice([1, 2, 3, 4, 5], n), np.nan),
        "INDFMPIR": np.where(rng.random(n) < 0.08, np.nan, np.round(rng.uniform(0, 5, n), 2)),
        "WTINT2YR": np.round(rng.uniform(3000, 150000, n), 3),
        "WTMEC2YR": np.round(rng.uniform(3000, 160000, n), 3),
        "SDMVPSU": rng.integers(1, 3, n).astype(float),
        "SDMVSTRA": rng.integers(104, 119, n).astype(float),
    })


# ---------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------

FILE_NAMES = {
    "PAXHD_H": "PAXHD_H.XPT", "PAXDAY_H": "PAXDAY_H.XPT", "PAXMIN_H": "PAXMIN_H.XPT",
    "DPQ_H": "DPQ_H.XPT", "RXQ_RX_H": "RXQ_RX_H.XPT", "RXQ_DRUG": "RXQ_DRUG.XPT", "DEMO_H": "DEMO_H.XPT",
}


def _batches(items: Iterable, size: int):
    batch = []
    for it in items:
        batch.append(it)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def write_nhanes(out_dir: str | os.PathLike, participants: int = 300, seed: int = 0,
                 progress=None) -> dict[str, Path]:
    """Write the seven NHANES 2013-14 XPORT files for ``participants`` people.

    Returns ``{table name: path}``. Memory stays bounded (PAXMIN_H is streamed in batches
    of ~1M rows), so 7,000 participants (~80M minute rows) are fine.
    ``progress(done, total)`` is called after each batch of participants.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    profiles = latent_profiles(participants, seed)
    paths = {k: out / v for k, v in FILE_NAMES.items()}

    hd_rows, day_frames = [], []
    done = 0
    with XportStreamWriter(paths["PAXMIN_H"], PAXMIN_COLUMNS, "PAXMIN_H") as writer:
        for batch in _batches(profiles.itertuples(), 80):
            parts = []
            for p in batch:
                m = _simulate_minutes(p, seed)
                if m is None:
                    if p.age >= 3:  # eligible, but no data came back from the device
                        hd_rows.append({"SEQN": float(p.SEQN), "PAXSTS": 2.0, "PAXSENID": "", "PAXFDAY": "",
                                        "PAXLDAY": "", "PAXFTIME": "", "PAXETLDY": "", "PAXHAND": "",
                                        "PAXORENT": ""})
                    continue
                n = len(m["SEQN"])
                hd_rows.append({
                    "SEQN": float(p.SEQN), "PAXSTS": 1.0, "PAXSENID": f"TAS1E{(int(p.SEQN) * 7919) % 10**8:08d}",
                    "PAXFDAY": str(int(p.fday)), "PAXLDAY": str(int(m["_day"][-1]) + 1),
                    "PAXFTIME": _hms(int(p.start_min)), "PAXETLDY": _hms(int(p.start_min) + n),
                    "PAXHAND": "1" if (int(p.SEQN) % 97) else "2", "PAXORENT": "1" if (int(p.SEQN) % 53) else "2",
                })
                day_frames.append(_day_rows(p, m))
                parts.append(m)
            if parts:
                writer.write({c.name: np.concatenate([m[c.name] for m in parts]) for c in PAXMIN_COLUMNS})
            done += len(batch)
            if progress is not None:
                progress(done, len(profiles))

    hd = pd.DataFrame(hd_rows, columns=["SEQN", "PAXSTS", "PAXSENID", "PAXFDAY", "PAXLDAY", "PAXFTIME",
                                        "PAXETLDY", "PAXHAND", "PAXORENT"])
    _write_small(hd, paths["PAXHD_H"], "PAXHD_H")
    day = pd.concat(day_frames, ignore_index=True) if day_frames else pd.DataFrame(
        columns=["SEQN", "PAXDAYD", "PAXDAYWD", "PAXSSNDP", "PAXMSTD"])
    _write_small(day, paths["PAXDAY_H"], "PAXDAY_H")
    _write_small(_dpq(profiles, seed), paths["DPQ_H"], "DPQ_H")
    _write_small(_rx(profiles, seed), paths["RXQ_RX_H"], "RXQ_RX_H")
    _write_small(_rx_drug(), paths["RXQ_DRUG"], "RXQ_DRUG")
    _write_small(_demo(profiles, seed), paths["DEMO_H"], "DEMO_H")
    return paths
