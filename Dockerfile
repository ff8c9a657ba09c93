# biotune on the official Airflow image: every pinned requirement plus the biotune library.
#   docker compose build        (docker-compose.yaml builds this for every Airflow service and MLflow)
FROM apache/airflow:3.3.2-python3.11

# torch is pinned as 2.13.0; the CPU wheel index keeps the image free of CUDA (override for GPUs).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

USER root
# libgomp1: XGBoost and torch's OpenMP runtime; curl: health checks.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 curl \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
RUN mkdir -p /opt/biotune && chown airflow:root /opt/biotune
USER airflow

COPY --chown=airflow:root requirements.txt /opt/biotune/requirements.txt
# The stack's own needs beside requirements.txt: the Celery executor (already in the official image;
# pinned so it matches the version tested with scripts/stack.py) and the async PostgreSQL driver.
RUN pip install --no-cache-dir --extra-index-url "${TORCH_INDEX_URL}" \
      -r /opt/biotune/requirements.txt \
      "apache-airflow==3.3.2" \
      "apache-airflow-providers-celery==3.26.0" "celery==5.6.3" "kombu==5.6.2" "redis==6.4.0" \
      "asyncpg==0.32.0"

# The library, editable: docker-compose.yaml mounts ./include over /opt/biotune/include, so
# a code change needs no rebuild. models/ and expectations/ are found beside it (settings.REPO_ROOT).
COPY --chown=airflow:root pyproject.toml /opt/biotune/pyproject.toml
COPY --chown=airflow:root include /opt/biotune/include
COPY --chown=airflow:root models /opt/biotune/models
COPY --chown=airflow:root expectations /opt/biotune/expectations
RUN pip install --no-cache-dir --no-deps -e /opt/biotune

COPY --chown=airflow:root dags /opt/airflow/dags
COPY --chown=airflow:root plugins /opt/airflow/plugins

# Named volumes copy the ownership of these image folders on first use (airflow user, group 0).
RUN mkdir -p /opt/airflow/auth /opt/airflow/biotune

ENV BIOTUNE_HOME=/opt/airflow/biotune \
    GIT_PYTHON_REFRESH=quiet \
    TF_CPP_MIN_LOG_LEVEL=2 \
    MLFLOW_ENABLE_TELEMETRY=false \
    DO_NOT_TRACK=1
