# rlreward — the two commands a new user needs: `make demo` (PORT=N for a fixed HTTP port), `make test`.
# Both set themselves up (`make setup`) on a fresh clone.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.rlreward-setup
TINY ?= .cache/tiny
TRAINED ?= .cache/tiny-trained
PYTEST_ARGS ?=
PORT ?= 0

.PHONY: setup chromium demo test test-unit test-integration docs-test lint tiny bench clean

setup: $(STAMP) chromium

$(STAMP): pyproject.toml requirements-dev.txt requirements-nodeps.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps -r requirements-nodeps.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

# Headless Chromium (Debian's package) for the /dashboard page test; installed as root, else explained.
chromium:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
		true; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	else \
		echo "note: chromium is not installed; the dashboard test will be skipped."; \
		echo "      install it with: sudo apt-get update && sudo apt-get install -y chromium"; \
	fi

$(TINY)/value_head.safetensors: $(STAMP)
	$(BIN)/rlreward make-tiny $(TINY)

tiny: $(TINY)/value_head.safetensors

# The demo's model has learned colours and shapes (Bradley-Terry on generated pairs, ~40 s on CPU).
$(TRAINED)/value_head.safetensors: $(STAMP)
	$(BIN)/rlreward make-tiny $(TRAINED) --train

demo: setup $(TRAINED)/value_head.safetensors
	$(BIN)/python examples/demo.py --model $(TRAINED) --port $(PORT)

test: setup tiny
	RLREWARD_TINY=$(abspath $(TINY)) $(BIN)/python -m pytest -q -ra --timeout=900 --durations=20 $(PYTEST_ARGS) tests

test-unit: setup tiny
	RLREWARD_TINY=$(abspath $(TINY)) $(BIN)/python -m pytest -q -ra tests/unit

test-integration: setup tiny
	RLREWARD_TINY=$(abspath $(TINY)) $(BIN)/python -m pytest -q -ra tests/integration

# The documents' checks: named files exist, docstrings <= 25 lines, every bash/python block runs
# (docs/architecture.md, "Development").
docs-test: setup tiny
	RLREWARD_TINY=$(abspath $(TINY)) $(BIN)/python -m pytest -q -ra tests/unit/test_docs.py tests/integration/test_docs_run.py

lint: setup
	$(BIN)/ruff check rlreward tests examples benchmarks
	$(BIN)/ruff format --check rlreward tests examples benchmarks

bench: setup
	$(BIN)/rlreward bench --model bench-small --workload grpo --json benchmarks/results/cpu-grpo.json

clean:
	rm -rf $(VENV) .cache .pytest_cache
