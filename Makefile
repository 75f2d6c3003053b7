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

.PHONY: help run test test-prerequisites test-unit lint format docs bench drill up down clean venv fast mutants

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml requirements.lock
	@test -n "$(PYTHON)" || { echo "make: Python 3.11 or newer is needed (none on the PATH; set PYTHON=…)" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

venv: $(STAMP) fast ## create/refresh the virtualenv from the pinned dependencies, and the compiled build

run: $(STAMP) fast ## the whole platform in one process (SIP :5060, API :8080), no broker/Redis needed
	$(BIN)/python -m services

# The suite runs on the compiled build (what ships) as parallel pytest processes: the rest in a
# shard per core (two at most) and, beside them, the failover labs (marker `lab`) in one, then the SIP and proxy cores'
# tests again in pure Python (the fallback) (deploy/test-suite.sh says why and how).  A build that fails stops it: the
# test would not be of it.  The system set-up (packages, Redis, RabbitMQ) needs nothing of the
# build's, so it runs while mypyc compiles.
test: $(STAMP) ## the whole suite on the compiled build (the rest in a shard per core, the failover labs beside them), then the SIP and proxy tests in pure Python
	@deploy/test-prerequisites.sh & prerequisites=$$!; \
	$(BIN)/python -m deploy.extensions; built=$$?; \
	wait $$prerequisites || exit 1; \
	[ $$built -eq 0 ] || { echo "make test: the compiled build failed;" \
		"CALLMESH_NO_EXTENSIONS=1 make test tests pure Python only" >&2; exit 1; }
	@$(BIN)/python -m deploy.labs.leftovers  # what earlier runs left on the broker: swept
	@deploy/test-suite.sh $(BIN)/python

test-prerequisites: ## install the system packages the tests drive, start a local Redis/RabbitMQ if down
	@deploy/test-prerequisites.sh

test-unit: $(STAMP) fast ## only the tests that need no broker, Redis or SIPp (a quarter of the property tests' examples)
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

bench: $(STAMP) fast ## benchmarks (on the compiled build when it compiles): SIP parser, routing, registrar, proxy vs Kamailio
	$(BIN)/python -m bench

# `make drill`: the fault drill of issue 21 (deploy/drill): the whole platform with Redis
# Sentinel, a 3-node RabbitMQ cluster, PostgreSQL and the VIP pair (as root: network
# namespaces), each part killed and restored in turn under calls, registrations and route
# changes, then DC 1 of the two-DC lab (deploy/two_dc) killed whole under the same load at
# DC 2; the table printed and written into docs/high-availability.md.  About 20 minutes.
# DRILL="--steps redis,rabbitmq --rate 50" runs a part of it (not written into the docs).
DRILL ?= --docs

drill: $(STAMP) fast ## the fault drill: each part killed under load, the table into the docs
	$(BIN)/python -m deploy.drill $(DRILL)

# `make mutants`: mutation testing with mutmut (what it mutates, and the fast tests that must
# catch each mutant: pyproject.toml's [tool.mutmut]).  One package at a time, one mutant at a
# time (two shared cores), each with a CPU-time limit; `pkg:n` runs every n-th mutant of it.
# Pure Python only (tests/mutation.py sets CALLMESH_NO_EXTENSIONS=1): a compiled module would
# shadow its mutants.  Not in `make test`.
MUTANTS ?= shared.sip.auth.digest:1 services.registrar.bindings:1 shared.routing_table:3 \
	services.edge.proxy:4 shared.sip:8

mutants: $(STAMP) ## mutation testing, one package at a time (MUTANTS="pkg:n ...", see docs)
	$(BIN)/python tests/mutation.py $(MUTANTS)

up: $(STAMP) fast ## every service as its own process against local RabbitMQ and Redis (logs in var/log)
	@mkdir -p $(LOGS)
	CALLMESH_RABBITMQ_URL=$${CALLMESH_RABBITMQ_URL:-$(CALLMESH_TEST_RABBITMQ_URL)} \
	CALLMESH_REDIS_URL=$${CALLMESH_REDIS_URL:-$(CALLMESH_TEST_REDIS_URL)} \
	$(BIN)/python -m deploy.procfile start --logs $(LOGS)

down: ## stop what `make up` started
	@test -x $(BIN)/python && $(BIN)/python -m deploy.procfile stop --logs $(LOGS) || true

clean: down ## remove the virtualenv, the compiled build, caches, logs and the embedded store's snapshots
	rm -rf $(VENV) build var .mypy_cache .ruff_cache .pytest_cache .hypothesis mutants
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# `make fast`: the hot path (the SIP core, the proxy core, the edge's per-message modules;
# the list is `HOT` in deploy/extensions.py) compiled by mypyc, shipped with the pinned mypy,
# into build/ext beside a manifest of its sources' SHA-256.  Every target that runs or tests
# code builds it first, and rebuilds only when a source changed.  A process loads the build
# only while it matches every source (shared/extensions.py), else runs pure Python, as
# CALLMESH_NO_EXTENSIONS=1 forces.  If the compiler fails, everything but `make test` goes
# on in pure Python.
fast: $(STAMP) ## compile the hot path with mypyc into build/ (venv, run, up, test, bench do it first)
	@$(BIN)/python -m deploy.extensions || echo "make: going on in pure Python"
