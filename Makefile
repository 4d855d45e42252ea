# Lienthong — two entry points for a fresh machine: `make demo` and `make test`.
# Everything they need is installed here, into .venv (Python packages) and, where missing, from Debian
# (xmlsec1, used by the interoperability tests; chromium and chromium-driver, used by the operator page's browser tests).
# `make demo` installs only Lienthong itself into .venv (no test tools, no Debian packages, no root); `make test`
# installs everything.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HASH   := $(shell sha1sum pyproject.toml | cut -c1-12)
STAMP  := $(VENV)/.installed-$(HASH)
DEMO_STAMP := $(VENV)/.installed-demo-$(HASH)
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help setup system-deps demo test test-fast lint check format clean

help:  ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# Lienthong with its test tools (setup, test, check); it also satisfies the demo's stamp.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python >= 3.11 is required"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	find $(VENV) -maxdepth 1 -name '.installed-*' ! -name '*-$(HASH)' -delete
	touch $@ $(DEMO_STAMP)

# Lienthong alone: what `hub demo` runs on (embedded broker, SQLite, simulators in process).
$(DEMO_STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python >= 3.11 is required"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	find $(VENV) -maxdepth 1 -name '.installed-*' ! -name '*-$(HASH)' -delete
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

demo: $(DEMO_STAMP)  ## Install Lienthong into .venv (no root), then run `hub demo` on the embedded default (Ctrl-C stops it)
	$(BIN)/hub demo $(DEMO_ARGS)

test: setup  ## Set up, lint, type-check, check the import layers, and run the whole test suite
	$(BIN)/ruff check .
	$(MAKE) --no-print-directory check
	@# PYTHONDONTWRITEBYTECODE (set on some machines) is lifted for the run: every `hub` process the suite starts
	@# would otherwise compile the hub's sources again (~0.3 s of CPU each), and pytest rewrite every test module.
	PYTHONDONTWRITEBYTECODE= $(BIN)/pytest -n 3 --dist loadfile --no-loadscope-reorder --durations=15  # the slowest tests, to keep the suite under 6 minutes

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
