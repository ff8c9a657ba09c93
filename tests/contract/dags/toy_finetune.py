"""
### Toy fine-tuning (tests only)

The whole DAG file a family needs: its docstring, its params and one builder call.
"""

from biotune_airflow.builders import finetune_dag
from toyfamily import ToyFamily

finetune_dag("toy", dag_id="toy_finetune", doc_md=__doc__, params=ToyFamily().dag_params())
