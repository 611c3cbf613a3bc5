# The two commands a newcomer needs: `make demo` and `make test`. Everything installs into .venv
# from the pinned lock; all runtime state lives in .assay/ (git-ignored; `make clean` removes it).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
STARTUP_HOOK := $(VENV)/.startup_hook
MANIFEST := dbt_project/target/manifest.json
DBT_SOURCES := $(shell find dbt_project -name '*.sql' -o -name '*.yml' 2>/dev/null | grep -v '/target/')

.PHONY: install demo test test-slow ui mlflow-ui clean bench lock

install: $(INSTALLED) $(STARTUP_HOOK) $(MANIFEST)

$(INSTALLED): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON) on PATH (or: make PYTHON=python3)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# DAGSTER_HOME follows ASSAY_HOME in every process of the venv, the plain `dagster` CLI included (a .pth
# file: assay/startup_hook.py says why).
$(STARTUP_HOOK): $(INSTALLED) assay/startup_hook.py
	$(BIN)/python -m assay.startup_hook
	touch $@

# The dbt manifest is prepared at setup, never at import (dagster-dbt reads it when definitions load).
$(MANIFEST): $(INSTALLED) $(DBT_SOURCES)
	$(BIN)/assay dbt-parse

demo: install
	$(BIN)/assay demo

test: install
	$(BIN)/python -m pytest -m "not slow" -n 2 --dist loadfile

test-slow: install
	$(BIN)/python -m pytest -m slow

# Headless Chromium for tests/test_ui_browser.py: Debian's package, driven by Playwright (no browser
# download). Installed when missing and apt-get runs as root; elsewhere that test skips and says why.
.PHONY: browser
test: browser
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser test"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -qq chromium >/dev/null 2>&1 \
	      || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
	      || echo "chromium could not be installed: tests/test_ui_browser.py will skip"; \
	  else echo "no chromium and no root apt-get to install it: tests/test_ui_browser.py will skip"; fi; }

ui: install
	$(BIN)/assay ui

# About 30 minutes on 2 cores; each script replaces its own section of bench/RESULTS.md.
bench: install
	$(BIN)/python bench/foundation.py
	$(BIN)/python bench/backfill.py
	$(BIN)/python bench/land_to_serve.py
	$(BIN)/python bench/demo.py
	@[ -d .assay/snapshots/flights ] || $(BIN)/assay demo
	$(BIN)/python bench/training.py
	$(BIN)/python bench/training.py --use-case weather
	$(BIN)/python bench/serving.py

mlflow-ui: install
	$(BIN)/mlflow ui --host 127.0.0.1 --port 5000 --backend-store-uri sqlite:///$(CURDIR)/.assay/mlflow/mlflow.db

clean:
	-@[ -x $(BIN)/assay ] && $(BIN)/assay serve stop
	rm -rf .assay

# Recompile the lock from requirements.in in a throwaway venv.
lock:
	rm -rf /tmp/assay-lock && $(PYTHON) -m venv /tmp/assay-lock
	/tmp/assay-lock/bin/pip install --quiet -r requirements.in
	{ head -2 requirements.lock; /tmp/assay-lock/bin/pip freeze --exclude-editable | grep -v '^setuptools=='; } > requirements.lock.new
	mv requirements.lock.new requirements.lock
