# Everything installs itself into .venv (and .venv-focus for the FOCUS validator, which needs Python 3.12).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
# python3.12 for the FOCUS validator venv; under pyenv the bare shim may refuse, so ask pyenv for it.
PYTHON312 ?= $(shell bash .ci/find-python312)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FOCUS_VENV := .venv-focus
FOCUS_STAMP := $(FOCUS_VENV)/.installed
SPARK_STAMP := $(VENV)/.spark-installed
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install demo test lint bench synth clean focus-venv browser install-spark

install: $(STAMP)

# Each long step says what it does, how long a first run takes, and when it is done (seconds measured).
$(STAMP): requirements.lock pyproject.toml
	@echo "install: Python packages into $(VENV) from requirements.lock (first run: about 2-3 minutes, 1.5 GB; then seconds)"
	@start=$$SECONDS; test -x $(PY) || $(PYTHON) -m venv $(VENV); \
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock 2>&1 | { grep -v "^WARNING: Location" || true; }; \
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . ; \
	echo "install: done in $$((SECONDS - start)) s"
	@touch $(STAMP)

# The Spark engine's extra (pyspark 3.5.4, as Glue 5.0; Java 17 runs it): the tests need it, `make demo` does not.
install-spark: $(SPARK_STAMP)

$(SPARK_STAMP): requirements-spark.lock $(STAMP)
	@echo "install: pyspark 3.5.4 into $(VENV) for the Spark engine's tests (first run: about a minute, 350 MB; then seconds)"
	@start=$$SECONDS; $(PY) -m pip install -q --disable-pip-version-check -r requirements-spark.lock 2>&1 | { grep -v "^WARNING: Location" || true; }; \
	echo "install: pyspark done in $$((SECONDS - start)) s"
	@touch $(SPARK_STAMP)

focus-venv: $(FOCUS_STAMP)

$(FOCUS_STAMP): requirements-focus.lock
	@echo "install: the FOCUS validator into $(FOCUS_VENV) (Python 3.12; first run: about a minute)"
	@start=$$SECONDS; test -x $(FOCUS_VENV)/bin/python || $(PYTHON312) -m venv $(FOCUS_VENV); \
	$(FOCUS_VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements-focus.lock 2>&1 | { grep -v "^WARNING: Location" || true; }; \
	echo "install: FOCUS validator done in $$((SECONDS - start)) s"
	@touch $(FOCUS_STAMP)

# Debian's Chromium, for the dashboard's browser test (CI runs as root on a fresh machine).
browser:
	@command -v chromium >/dev/null || { echo "install: Debian's chromium for the browser tests (first run: about a minute)"; \
	  start=$$SECONDS; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  echo "install: chromium done in $$((SECONDS - start)) s"; }

demo: install focus-venv
	$(VENV)/bin/modelmeter demo

# The folder is named and the header kept (rootdir, configfile, plugins), so a run that collects nothing says why;
# options from the caller's environment cannot deselect the suite.
test: install install-spark focus-venv browser
	env -u PYTEST_ADDOPTS -u PYTEST_PLUGINS $(PY) -m pytest -p no:cacheprovider tests

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy common modelmeter ingest transforms pricing_catalog sql dashboards finance
	$(PY) app.py >/dev/null
	$(VENV)/bin/cfn-lint --non-zero-exit-code error cdk.out/*.template.json

bench: install
	$(PY) bench/transform.py
	$(PY) bench/gateway.py
	$(PY) bench/ingest_files.py

synth: install
	$(PY) app.py

clean:
	rm -rf $(VENV) $(FOCUS_VENV) cdk.out lake
