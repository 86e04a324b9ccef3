# The README's promise: on a fresh machine `make run` runs the product and `make test` passes.
# Each target does its own set-up (venv, packages, the OS broker) and is safe to repeat.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Locust lives in its own venv: it monkey-patches with gevent and registers a pytest plugin.
LOAD_VENV ?= .venv-load
LOAD_STAMP := $(LOAD_VENV)/.installed
PORT ?= 3000
USERS ?= 20
SPAWN_RATE ?= 5
DURATION ?= 30s

.PHONY: help venv load-venv proto proto-check lint envoy-validate check mosquitto test run demo bench load clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing the project with its dev tools (first run: a few minutes)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@echo "==> $(VENV) ready"
	touch $@

venv: $(STAMP) ## create the virtualenv and install the project with its dev tools

$(LOAD_STAMP): loadtest/requirements.txt
	@echo "==> creating $(LOAD_VENV) and installing Locust (loadtest/requirements.txt)"
	test -x $(LOAD_VENV)/bin/python || $(PYTHON) -m venv $(LOAD_VENV)
	$(LOAD_VENV)/bin/python -m pip install -q -r loadtest/requirements.txt
	touch $@

load-venv: $(LOAD_STAMP) ## create the separate venv Locust runs in

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

test: $(STAMP) $(LOAD_STAMP) mosquitto ## the whole test suite; it starts the real services it needs
	$(PY) -m pytest $(PYTEST_ARGS)

run: $(STAMP) mosquitto ## run the control plane behind Envoy (REST on PORT, gRPC on GRPC_PORT, broker on MQTT_PORT)
	$(PY) -m tools.stack

demo: $(STAMP) mosquitto ## make run plus a simulated fleet and a scripted walk through the product; exits 0
	$(PY) -m tools.demo

bench: $(STAMP) ## the benchmarks under loadtest/ (ratios against an in-run baseline)
	$(PY) -m loadtest.run_benchmarks

load: $(LOAD_STAMP) ## load-test a running stack (make run) with Locust: USERS, SPAWN_RATE, DURATION, PORT
	$(LOAD_VENV)/bin/locust -f loadtest/locustfile.py --headless -u $(USERS) -r $(SPAWN_RATE) -t $(DURATION) \
		--host http://127.0.0.1:$(PORT) --only-summary

clean: ## remove the venvs, build output and caches (keeps ./data)
	rm -rf $(VENV) $(LOAD_VENV) build .pytest_cache .mypy_cache .ruff_cache .hypothesis
