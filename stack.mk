# The distributed topology (docker-compose.yaml) as local processes on 127.0.0.1: see docs/distributed.md.
# Included by the Makefile (`-include stack.mk`); uses its BIN and BIOTUNE_HOME.
#
#   make stack-up       PostgreSQL dbs + Redis queue + S3 (moto) + MLflow + Airflow CeleryExecutor; prints URL/password
#   make stack-down     stops exactly the processes stack-up started (by PID) and drops its databases
#   make stack-status   what runs where
#   make stack-test     the integration and browser tests of the stack and the UI (slow)

STACK := $(BIN)/python scripts/stack.py
# What the stack needs beside requirements.txt (installed here until requirements.txt carries them).
STACK_PINS := apache-airflow-providers-celery==3.26.0 celery==5.6.3 kombu==5.6.2 redis==6.4.0 asyncpg==0.32.0
BROWSER_PINS := playwright==1.65.2

.PHONY: stack-deps stack-up stack-down stack-status stack-test browser-deps

stack-deps: venv
	@$(BIN)/python -c "import airflow.providers.celery, asyncpg, redis" 2>/dev/null || \
	  $(BIN)/pip install --quiet $(STACK_PINS) -c requirements.txt

browser-deps: venv
	@$(BIN)/python -c "import playwright" 2>/dev/null || $(BIN)/pip install --quiet $(BROWSER_PINS) -c requirements.txt
	@test -x /usr/bin/chromium || { command -v apt-get > /dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
	  || echo "chromium is not installed and apt-get cannot install it: the browser test will skip"; }

stack-up: stack-deps
	@mkdir -p $(BIOTUNE_HOME)
	$(STACK) up --home $(BIOTUNE_HOME)

stack-down:
	@$(STACK) down --home $(BIOTUNE_HOME)

stack-status:
	@$(STACK) status --home $(BIOTUNE_HOME)

stack-test: stack-deps browser-deps init
	$(BIN)/python -m pytest -q -m "slow" tests/integration/test_stack.py tests/integration/test_browser.py
