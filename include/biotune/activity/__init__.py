"""Activity family: wrist-IMU anxiety activities (the seed's 1D-CNN-BiLSTM), pipeline
diagnostic, domain-shift check and gated head-only transfer to a new device (Garmin).

Constants shared by every module of the family live here; nothing heavy is imported.
"""

from __future__ import annotations

CLASSES: tuple[str, ...] = (
    "ear_rubbing",
    "forehead_rubbing",
    "hair_pulling",
    "hand_scratching",
    "hand_tapping",
    "knuckles_cracking",
    "nail_biting",
    "nape_rubbing",
    "sitting",
    "smoking",
    "standing",
)
"""The 11 classes in the seed model's index order (sorted names, as the seed encoded them)."""

SENSOR_COLS: tuple[str, ...] = ("Ax", "Ay", "Az", "Gx", "Gy", "Gz")
"""Model channel order: accelerometer x, y, z (m/s^2), gyroscope x, y, z (deg/s)."""

ACCEL = SENSOR_COLS[:3]
GYRO = SENSOR_COLS[3:]

WINDOW_SIZE = 200
OVERLAP = 0.5
TARGET_HZ = 50
GRAVITY = 9.80665
