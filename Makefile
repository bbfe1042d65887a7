# burnline: the two commands a newcomer runs are `make run` and `make test`.
#
# Every Python package comes from uv.lock (the whole resolved set, with hashes): uv itself is pinned
# with hashes in requirements/uv.txt and installed into the virtualenv first. `make lock` refreshes
# the lock after a change to pyproject.toml; `make lock-upgrade` takes the newest releases the ranges
# allow. Nothing is installed from an open range.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# --inexact: keep pip and uv in the venv (they are not project dependencies).
# --compile-bytecode: every package's .pyc written once, here. Where PYTHONDONTWRITEBYTECODE is set
# (this project's CI machines, the image) nothing else writes them, and each process that starts
# burnline (the tests start many) would compile the Elasticsearch client, aiohttp, grpc and
# pydantic from source again: about 1 s of CPU a start, for about 7 s once here.
SYNC := $(UV) sync --locked --inexact --quiet --compile-bytecode
# The tests of the modules collector/compiled.py compiles, run again as pure Python by `unit`.
PURE_TESTS := tests/normalize tests/exporters/test_ecs.py tests/exporters/test_log_source.py \
  tests/exporters/test_span_source.py tests/exporters/test_bulk_items.py tests/exporterhelper/test_batch_codec.py \
  tests/core/test_trace_ids.py tests/receivers/test_remote_write.py tests/exporters/test_prometheus_exporter.py \
  tests/test_compiled.py

.PHONY: run test stress lint typecheck unit system-deps bench clean lock lock-upgrade lock-check compiled

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
	  -r requirements/uv.txt

## lock-check: fail, saying what to do, when pyproject.toml and uv.lock disagree
lock-check: $(UV)
	@$(UV) lock --check --offline --quiet || { \
	  echo "make: pyproject.toml and uv.lock disagree: run 'make lock' and commit uv.lock" >&2; exit 1; }

## lock: re-resolve uv.lock after a change to pyproject.toml (other pins stay)
lock: $(UV)
	$(UV) lock

## lock-upgrade: move every pin to the newest release the ranges in pyproject.toml allow
lock-upgrade: $(UV)
	$(UV) lock --upgrade

$(STAMP): $(UV) pyproject.toml uv.lock | lock-check
	$(SYNC) --extra compile
	touch $@

$(TEST_STAMP): $(UV) pyproject.toml uv.lock | lock-check
	$(SYNC) --extra test --extra compile
	touch $@ $(STAMP)

## compiled: the hot path's modules compiled by mypyc (collector/compiled.py), when they are not
## current; without a C compiler it says so and burnline runs them as pure Python
compiled: $(STAMP)
	-@$(BIN)/python -c 'import sys, collector.compiled as c; sys.exit(c.main(["build"]))'

## run: set up and start burnline on its built-in default config (Ctrl-C stops it)
run: $(STAMP) compiled
	$(BIN)/burnline run

## system-deps: Debian's prometheus, alertmanager, node-exporter and chromium (headless, for the
## status page test), which the tests start on loopback
system-deps:
	@missing=""; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v prometheus-alertmanager >/dev/null || missing="$$missing prometheus-alertmanager"; \
	command -v prometheus-node-exporter >/dev/null || missing="$$missing prometheus-node-exporter"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
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

# The whole suite runs the compiled modules (when they could be built); the tests of what they
# compile run once more as pure Python, the form burnline takes where no C compiler is.
unit: $(TEST_STAMP) system-deps compiled
	$(BIN)/pytest -q
	BURNLINE_PURE_PYTHON=1 $(BIN)/pytest -q $(PURE_TESTS)

## stress: the whole suite twice at once plus a CPU hog on every core, three rounds (tests/stress.sh)
stress: $(TEST_STAMP) system-deps
	tests/stress.sh 3

## test: everything the tests need, then lint, type checks and the whole suite
test: lock-check lint typecheck unit

## bench: throughput and robustness numbers (prints them; nothing asserts). pipeline.py runs every
## scenario (logs, traces, remote_write, 1,000 scrape targets, 10 and 10,000 SLOs), then Forward and
## remote_write at ten times the connections with default limits (peak RSS, refusals counted by both
## sides); admin_slos.py what the admin endpoints cost with 10,000 SLOs; stages.py each stage's CPU
## per record in one process
bench: $(STAMP) compiled
	$(BIN)/python bench/pipeline.py --json bench/results-latest.json
	$(BIN)/python bench/pipeline.py --overload --only forward-es,remote_write-prom
	$(BIN)/python bench/queue_throughput.py
	$(BIN)/python bench/decoded_size.py
	$(BIN)/python bench/remote_write_shards.py
	$(BIN)/python bench/durable_queue.py
	$(BIN)/python bench/durable_storage_choice.py
	$(BIN)/python bench/queue_page_size.py
	$(BIN)/python bench/fuzz_decoders.py
	$(BIN)/python bench/admin_slos.py
	$(BIN)/python bench/stages.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache collector/compiled-manifest.json
	find collector exporters -name '*.so' -delete
