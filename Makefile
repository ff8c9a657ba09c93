# biotune: `make demo` runs the main job end to end on the embedded default; `make test` runs the suite.
# Both create .venv and .biotune/ on first use and reuse them afterwards.

SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
PYTHON ?= python3.11
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export BIOTUNE_HOME ?= $(CURDIR)/.biotune
export AIRFLOW_HOME ?= $(BIOTUNE_HOME)/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
# the embedded default runs what it schedules: DAGs start unpaused (Airflow's default pauses them)
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION ?= False
export AIRFLOW__CORE__EXECUTOR ?= LocalExecutor
export AIRFLOW__API__HOST ?= 127.0.0.1
export AIRFLOW__API__PORT ?= 8080
export AIRFLOW__API__BASE_URL ?= http://127.0.0.1:$(AIRFLOW__API__PORT)
# make up's MLflow server (basic auth; the admin password is generated into $(BIOTUNE_HOME)/mlflow/auth)
export MLFLOW_PORT ?= 5000
export GIT_PYTHON_REFRESH := quiet
export TF_CPP_MIN_LOG_LEVEL := 2
export MLFLOW_ENABLE_TELEMETRY := false
export DO_NOT_TRACK := 1

# task slots of `make up` (LocalExecutor workers): the machine's cores, not Airflow's default 32
UP_PARALLELISM ?= $(shell nproc)
DEMO_PARTICIPANTS ?= 400
DEMO_CONF ?= {"epochs": 4, "pretrain_epochs": 1}
DEMO_MONITOR_ARGS ?= --days 6 --shift-day 3 --persons 250
MLFLOW_DB := $(BIOTUNE_HOME)/mlflow/mlflow.db
MLFLOW_ARTIFACTS := $(BIOTUNE_HOME)/mlflow/artifacts

.PHONY: venv init demo test test-fast bench up down clean

venv: $(STAMP)
$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $(STAMP)

init: venv
	@mkdir -p $(BIOTUNE_HOME)/lake $(BIOTUNE_HOME)/mlflow $(AIRFLOW_HOME)
	@$(BIN)/airflow db migrate > $(BIOTUNE_HOME)/airflow-db-migrate.log 2>&1 || { tail -30 $(BIOTUNE_HOME)/airflow-db-migrate.log; exit 1; }
	@$(BIN)/python -c "from biotune import registry; registry.configure()"
	@echo "biotune home: $(BIOTUNE_HOME) (Airflow metadata: SQLite; MLflow: $(MLFLOW_DB))"

demo: init
	$(BIN)/airflow dags reserialize > /dev/null 2>&1 || true
	DEMO_PARTICIPANTS=$(DEMO_PARTICIPANTS) DEMO_CONF='$(DEMO_CONF)' $(BIN)/python scripts/demo_finetune.py
	@echo
	$(BIN)/biotune registry list
	@echo
	$(BIN)/python scripts/demo_monitoring.py $(DEMO_MONITOR_ARGS)

test: init browser-deps stack-deps
	$(BIN)/python -m pytest -q --durations=15

test-fast: init
	$(BIN)/python -m pytest -q -m "not slow"

bench: venv
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

up: init
	@$(BIN)/python scripts/up.py up --parallelism $(UP_PARALLELISM)

down:
	@$(BIN)/python scripts/up.py down

clean: down
	rm -rf $(BIOTUNE_HOME)

# The distributed topology as local processes (make stack-up / stack-down): see docs/distributed.md.
-include stack.mk
