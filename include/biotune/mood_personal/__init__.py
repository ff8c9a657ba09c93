"""Family ``mood_personal``: the contract's adapter for the mood personal calibration (the code is in
``biotune.mood.personal``; this package exists so ``biotune.family.discover`` finds the family)."""
