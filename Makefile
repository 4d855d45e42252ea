# Lienthong — two entry points for a fresh machine: `make demo` and `make test`.
# Everything they need is installed here, into .venv (Python packages) and, where missing, from Debian
# (xmlsec1, used by the interoperability tests; chromium and chromium-driver, used by the operator page's browser tests).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help setup system-deps demo test test-fast lint check format clean

help:  ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python >= 3.11 is required"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

system-deps:  ## Install Debian packages the tests use (xmlsec1, prometheus for promtool, chromium, chromium-driver) when missing
	@command -v xmlsec1 >/dev/null 2>&1 || { \
	  echo "installing xmlsec1 from Debian"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xmlsec1 >/dev/null; }
	@command -v promtool >/dev/null 2>&1 || { \
	  echo "installing prometheus from Debian (for promtool: the metrics and alert rule checks; its server is left stopped)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null && \
	  { { $(SUDO) systemctl disable --now prometheus || $(SUDO) service prometheus stop; } >/dev/null 2>&1 || true; }; }
	@{ command -v chromium >/dev/null 2>&1 && [ -x /usr/bin/chromedriver ]; } || { \
	  echo "installing chromium and chromium-driver from Debian (browser tests of the operator page)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

setup: $(STAMP) system-deps  ## Create .venv and install Lienthong with its test tools

demo: setup  ## Set up, then run the main job on the embedded default (`hub demo`; Ctrl-C stops it)
	$(BIN)/hub demo

test: setup  ## Set up, lint, type-check, check the import layers, and run the whole test suite
	$(BIN)/ruff check .
	$(MAKE) --no-print-directory check
	$(BIN)/pytest -n 3 --dist loadfile

test-fast: $(STAMP)  ## Lint and run the unit tests only (in process, no services; under a minute)
	$(BIN)/ruff check .
	$(BIN)/pytest -m unit tests/unit

lint:  ## Lint only
	$(BIN)/ruff check .

check: $(STAMP)  ## Type-check hub, broker, adapters, mappings (mypy) and keep the import layers (lint-imports)
	$(BIN)/mypy
	$(BIN)/lint-imports

format:  ## Reformat the code
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:  ## Remove the virtual environment and generated files
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache .import_linter_cache
