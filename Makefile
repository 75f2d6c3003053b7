# Every way to build, run, test and measure Callmesh. `make help` lists them.
# The first Python 3.11+ on the PATH (override with PYTHON=…).
PYTHON ?= $(firstword $(foreach p,python3.13 python3.12 python3.11 python3,\
	$(shell command -v $(p) >/dev/null 2>&1 && $(p) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && echo $(p))))
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | cksum | cut -d' ' -f1)
export CALLMESH_TEST_RABBITMQ_URL ?= amqp://guest:guest@127.0.0.1:5672/
export CALLMESH_TEST_REDIS_URL ?= redis://127.0.0.1:6379/0
LOGS := var/log

.PHONY: help run test test-prerequisites test-unit lint format docs bench up down clean venv fast slow mutants

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml requirements.lock
	@test -n "$(PYTHON)" || { echo "make: Python 3.11 or newer is needed (none on the PATH; set PYTHON=…)" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

venv: $(STAMP) ## create/refresh the virtualenv from the pinned dependencies

run: $(STAMP) ## the whole platform in one process (SIP :5060, API :8080), no broker/Redis needed
	$(BIN)/python -m services

test: test-prerequisites $(STAMP) ## the whole suite, against the real RabbitMQ and Redis (does its own set-up)
	$(BIN)/python -m pytest -q

test-prerequisites: ## install the system packages the tests drive, start a local Redis/RabbitMQ if down
	@deploy/test-prerequisites.sh

test-unit: $(STAMP) ## only the tests that need no broker, Redis or SIPp (a quarter of the property tests' examples)
	CALLMESH_TEST_EXAMPLES=0.25 $(BIN)/python -m pytest -q -m "not integration and not wire"

lint: $(STAMP) ## ruff + mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared services tests bench deploy

format: $(STAMP) ## apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

docs: $(STAMP) ## rewrite the generated docs (docs/api.md) from the code
	$(BIN)/python -m deploy.docs

bench: $(STAMP) fast ## benchmarks (on the mypyc build when it compiles): SIP parser, routing, registrar, proxy vs Kamailio
	$(BIN)/python -m bench

# `make mutants`: mutation testing with mutmut (what it mutates, and the fast tests that must
# catch each mutant: pyproject.toml's [tool.mutmut]).  One package at a time, one mutant at a
# time (two shared cores), each with a CPU-time limit; `pkg:n` runs every n-th mutant of it.
# Pure Python only: a compiled module would shadow its mutants, hence `slow`.  Not in `make test`.
MUTANTS ?= shared.sip.auth.digest:1 services.registrar.bindings:1 shared.routing_table:3 \
	services.edge.proxy:4 shared.sip:8

mutants: $(STAMP) slow ## mutation testing, one package at a time (MUTANTS="pkg:n ...", see docs)
	$(BIN)/python tests/mutation.py $(MUTANTS)

up: $(STAMP) ## every service as its own process against local RabbitMQ and Redis (logs in var/log)
	@mkdir -p $(LOGS)
	CALLMESH_RABBITMQ_URL=$${CALLMESH_RABBITMQ_URL:-$(CALLMESH_TEST_RABBITMQ_URL)} \
	CALLMESH_REDIS_URL=$${CALLMESH_REDIS_URL:-$(CALLMESH_TEST_REDIS_URL)} \
	$(BIN)/python -m deploy.procfile start --logs $(LOGS)

down: ## stop what `make up` started
	@test -x $(BIN)/python && $(BIN)/python -m deploy.procfile stop --logs $(LOGS) || true

clean: down slow ## remove the virtualenv, caches, logs and the embedded store's snapshots
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache .hypothesis mutants
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# `make fast`: the SIP core and the proxy core compiled by mypyc (shipped with the pinned
# mypy) into extension modules next to their sources; Python imports those first.  Optional:
# if the compiler is missing or the build fails, the pure-Python modules keep serving.
# Compiled modules shadow their .py files: re-run `make fast` after editing them (it
# rebuilds when a source is newer), or `make slow` to go back to pure Python.
# What the edge runs per message outside the proxy core (routing lookups, trust, policies,
# the location directory, dispatcher bookkeeping); the core's interfaces are in proxy/.
EDGE_HOT_SOURCES := services/edge/policy/trust.py \
	shared/routing_table/cache/route.py shared/routing_table/cache/health.py \
	services/edge/location/directory.py services/edge/destinations/calls.py \
	services/edge/destinations/selector.py services/edge/policy/__init__.py \
	services/edge/policy/guard.py services/edge/policy/topology.py \
	shared/routing_table/prefixes.py shared/routing_table/prefix_layout.py
FAST_SOURCES := $(filter-out shared/sip/errors.py,$(wildcard shared/sip/*.py shared/sip/transaction/*.py)) \
	shared/sip/auth/digest.py shared/sip/auth/offer.py \
	shared/sip/transport/destination.py $(wildcard services/edge/proxy/*.py) \
	$(EDGE_HOT_SOURCES)
FAST_STAMP := build/.fast-built

fast: $(FAST_STAMP) ## compile the SIP and proxy cores with mypyc (optional; pure Python is the fallback)

$(FAST_STAMP): $(STAMP) $(FAST_SOURCES) Makefile
	@mkdir -p build
	@touch $@.started  # the stamp gets the time the sources were read, not when the build ended
	@if $(BIN)/mypyc $(FAST_SOURCES) >build/fast.log 2>&1; then \
		mv $@.started $@; echo "compiled $(words $(FAST_SOURCES)) modules (log: build/fast.log)"; \
	else \
		echo "mypyc build failed (build/fast.log); staying on pure Python"; \
		$(MAKE) --no-print-directory slow; \
	fi

slow: ## remove what `make fast` compiled: back to pure-Python modules
	find shared services -name '*.cpython-*.so' -delete
	rm -f ./*__mypyc.cpython-*.so $(FAST_STAMP)
