# burnline: the two commands a newcomer runs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test lint typecheck unit system-deps bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

$(TEST_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(STAMP)

## run: set up and start burnline on its built-in default config (Ctrl-C stops it)
run: $(STAMP)
	$(BIN)/burnline run

## system-deps: Debian's prometheus and alertmanager, which the tests start on loopback
system-deps:
	@missing=""; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v prometheus-alertmanager >/dev/null || missing="$$missing prometheus-alertmanager"; \
	command -v prometheus-node-exporter >/dev/null || missing="$$missing prometheus-node-exporter"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

lint: $(TEST_STAMP)
	$(BIN)/ruff check collector exporters tests bench
	$(BIN)/ruff format --check collector exporters tests bench

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

unit: $(TEST_STAMP) system-deps
	$(BIN)/pytest -q

## test: everything the tests need, then lint, type checks and the whole suite
test: lint typecheck unit

## bench: throughput and robustness numbers (prints them; nothing asserts)
bench: $(STAMP)
	$(BIN)/python bench/queue_throughput.py
	$(BIN)/python bench/durable_queue.py
	$(BIN)/python bench/durable_storage_choice.py
	$(BIN)/python bench/fuzz_decoders.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
