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
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install demo test lint bench synth clean focus-venv browser

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock 2>&1 | { grep -v "^WARNING: Location" || true; }
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

focus-venv: $(FOCUS_STAMP)

$(FOCUS_STAMP): requirements-focus.lock
	test -x $(FOCUS_VENV)/bin/python || $(PYTHON312) -m venv $(FOCUS_VENV)
	$(FOCUS_VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements-focus.lock 2>&1 | { grep -v "^WARNING: Location" || true; }
	touch $(FOCUS_STAMP)

# Debian's Chromium, for the dashboard's browser test (CI runs as root on a fresh machine).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

demo: install focus-venv
	$(VENV)/bin/modelmeter demo

# The folder is named and the header kept (rootdir, configfile, plugins), so a run that collects nothing says why;
# options from the caller's environment cannot deselect the suite.
test: install focus-venv browser
	env -u PYTEST_ADDOPTS -u PYTEST_PLUGINS $(PY) -m pytest -p no:cacheprovider tests

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy common modelmeter ingest transforms pricing_catalog sql dashboards finance
	$(PY) app.py >/dev/null
	$(VENV)/bin/cfn-lint --non-zero-exit-code error cdk.out/*.template.json

bench: install
	$(PY) bench/transform.py
	$(PY) bench/gateway.py

synth: install
	$(PY) app.py

clean:
	rm -rf $(VENV) $(FOCUS_VENV) cdk.out lake
