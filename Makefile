# The README's promise: on a fresh machine `make run` runs the product and `make test` passes.
# Each target does its own set-up (venv, packages, the OS broker) and is safe to repeat.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help venv proto proto-check lint typecheck buflint envoy-validate check test run demo bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(STAMP) ## create the virtualenv and install the project with its dev tools

proto: $(STAMP) ## regenerate gen/ (Python stubs, .pyi, Envoy descriptor set) from proto/
	$(PY) -m tools.genproto

proto-check: $(STAMP) ## fail when gen/ is stale against proto/, or buf lint finds a problem
	$(PY) -m tools.genproto --check

lint: $(STAMP) ## ruff and mypy on the hand-written code
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

envoy-validate: $(STAMP) ## check the rendered Envoy config with `envoy --mode validate`
	$(PY) -m gateway.launcher --validate

check: proto-check lint envoy-validate ## everything CI checks besides the tests

mosquitto:
	@bash tools/ensure-mosquitto.sh

test: $(STAMP) mosquitto ## the whole test suite; it starts the real services it needs
	$(PY) -m pytest $(PYTEST_ARGS)

run: $(STAMP) mosquitto ## run the control plane behind Envoy (REST :$$PORT, gRPC :$$GRPC_PORT)
	$(PY) -m tools.stack

bench: $(STAMP) ## the benchmarks under loadtest/ (ratios against an in-run baseline)
	$(PY) -m loadtest.run_benchmarks

clean: ## remove the venv, build output and caches (keeps ./data)
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache .hypothesis
