"""MLflow credentials for tasks from an Airflow connection (include/biotune_airflow/mlflow_conn.py):
a listener that does nothing unless BIOTUNE_MLFLOW_CONN_ID names a connection."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from biotune_airflow import mlflow_conn


class BiotuneMlflowPlugin(AirflowPlugin):
    name = "biotune_mlflow"
    listeners = [mlflow_conn]
