"""Mood personal calibration: Apple Health exports and episode labels to per-person models.

Modules: ``healthxml`` (the export format), ``synth`` / ``synth_files`` (generated persons),
``health`` (the importer), ``daily`` (per-day features), ``labels`` (episode labels),
``safe_pickle`` (model import), ``crypto`` (encryption, pseudonyms), ``calibrate`` and
``predict`` (personal models with fallback), ``cli`` (sub-commands of ``biotune mood``).
"""
