"""biotune's Airflow glue: operators, notifiers, triggers, the fine-tune DAG builder."""

from biotune import connections as _connections
from biotune_airflow.connections import airflow_connection as _airflow_connection

# library code (a provider's client, the alert webhook) reads Airflow's connections through this
_connections.set_resolver(_airflow_connection)
