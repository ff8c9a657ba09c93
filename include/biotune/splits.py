"""Group-level train/val/test assignment shared by the families and the retrain's production data:
a person (participant, session owner) lands in one split, the same one in every run."""

from __future__ import annotations

import hashlib


def unit_hash(key: str) -> float:
    """A stable number in [0, 1) for ``key`` (Python's hash() changes between processes)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2 ** 64


def assign_splits(groups, val_fraction: float = 0.2, test_fraction: float = 0.2) -> dict[str, str]:
    """train/val/test per group by a stable hash of its id (the same person lands in the same split
    in every run); when that leaves a split empty (few people), by hash rank instead."""
    names = sorted({str(g) for g in groups})
    h = {g: unit_hash(g) for g in names}
    out = {g: "test" if h[g] < test_fraction else "val" if h[g] < test_fraction + val_fraction else "train"
           for g in names}
    if len(names) >= 3 and len(set(out.values())) < 3:
        ranked = sorted(names, key=h.get)
        n_test = max(1, round(len(names) * test_fraction))
        n_val = max(1, min(len(names) - n_test - 1, round(len(names) * val_fraction)))
        out = {g: "test" if i < n_test else "val" if i < n_test + n_val else "train" for i, g in enumerate(ranked)}
    return out
