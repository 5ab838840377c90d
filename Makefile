# capplan: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Debian packages the integration tests drive: a real Prometheus (with promtool) and Chromium.
DEBIAN_TEST_PACKAGES := prometheus chromium

.PHONY: demo test test-fast system-deps install install-test bench lint clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed  ## create .venv and install capplan

install-test: $(VENV)/.installed-test  ## install capplan with the test tools

demo: $(VENV)/.installed  ## build the demo fleet into DuckDB, run the monthly job, write the report
	$(BIN)/capplan demo

system-deps:  ## install the Debian packages the integration tests use (when root and missing)
	@missing=""; \
	command -v prometheus >/dev/null && command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -z "$$missing" ]; then echo "system packages present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "not root: integration tests needing$$missing will be skipped"; fi

# Tests run in TEST_WORKERS processes (pytest-xdist): most of the suite waits on servers and
# subprocesses, so three workers keep two cores busy. Each test file stays on one worker; the
# files sharing the Prometheus fixture servers run together (tests/conftest.py).
TEST_WORKERS ?= 3
# More pytest arguments, e.g. `make test PYTEST_ARGS="-k prometheus -x"`.
PYTEST_ARGS ?=

test: $(VENV)/.installed-test system-deps  ## install what the tests need and run the whole suite (15 slowest listed)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --durations=15 $(PYTEST_ARGS)

test-fast: $(VENV)/.installed-test  ## unit tests only (no servers, no browser)
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)

bench: $(VENV)/.installed-test  ## benchmarks (figures, not pass/fail)
	$(BIN)/python bench/forecast.py --quick

lint:
	$(BIN)/python -m ruff check forecasting pipelines tests

clean:  ## remove the demo database and reports (keeps .venv)
	rm -rf data/*.duckdb data/*.duckdb.* data/*.lock reports/20*
