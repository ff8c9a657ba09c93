"""Mood family: NHANES/Apple Health readers, PAT and XGBoost models."""
