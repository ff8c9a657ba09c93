"""biotune: fine-tune, validate, register, monitor and retrain health-sensing models.

The library never imports Airflow: every step runs the same from a DAG, the CLI and a test.
"""

__version__ = "0.1.0"
