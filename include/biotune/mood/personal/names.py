"""The 36 mood_ml feature names without importing the feature code (which loads pandas).

The serving path (predict.py) stays small; tests hold this list equal to
``biotune.mood.features.SLEEP_FEATURE_NAMES``.
"""

SLEEP_INDEXES = [
    "ST_long", "ST_short", "WT_long", "WT_short",
    "LongSleepWindow_length", "LongSleepWindow_number",
    "ShortSleepWindow_length", "ShortSleepWindow_number",
    "Sleep_percentage", "Sleep_amplitude", "Circadian_phase", "Circadian_amplitude",
]
SLEEP_FEATURE_NAMES = [f"{i}_{s}" for i in SLEEP_INDEXES for s in ("MN", "SD", "Zscore")]
