# The verbs of the project. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
FRAUD := $(VENV)/bin/fraud
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
# SECURE=1: the secured stack (Kafka SASL_SSL + ACLs, Redis TLS + ACL users, MLflow basic auth);
# each verb then runs with its role's credentials (ops/services.sh as ROLE, SECURITY.md).
as = $(if $(filter 1,$(SECURE)),ops/services.sh as $(1) ,)
.PHONY: help setup services services-down chaos test test-unit lint lock simulate produce train worker lag monitor analyst console retrain demo bench bench-features bench-detection bench-simulator

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) ## Create .venv and install the pinned dependencies (constraints.txt)

lock: ## Re-pin constraints.txt from the current .venv (after changing pyproject ranges)
	$(PY) -m pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

services: setup ## Start Kafka (KRaft), Redis and the MLflow store on loopback; create topics (SECURE=1: the secured stack; CLUSTER=1: 3 Kafka nodes + Redis Cluster)
	CLUSTER=$(CLUSTER) ops/services.sh up

services-down: ## Stop the services that `make services` started (CLUSTER=1: the clustered stack)
	CLUSTER=$(CLUSTER) ops/services.sh down

test: setup ## Run every test (unit + integration; starts services when needed)
	$(PY) -m pytest

test-unit: setup ## Run the tests that need no services
	$(PY) -m pytest -m "not integration"

lint: setup ## ruff (lint + format check), mypy, and the import contracts (imports only go down)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

simulate: setup ## Write the default simulated history to data/history (5,000 customers, 60 days)
	$(FRAUD) simulate --customers 5000 --days 60 --seed 1 --out data/history

produce: setup ## Publish live simulated traffic to `transactions` (RATE=2000 DURATION=10)
	$(call as,simulator)$(FRAUD) produce --rate $${RATE:-2000} --duration $${DURATION:-10}

train: services ## Simulate the default history if missing, validate, train, evaluate, register, promote, write model_card.md
	$(call as,trainer)$(FRAUD) train

worker: services ## Run one scoring worker (Ctrl-C to stop); start more in other terminals to scale out
	$(call as,scorer)$(FRAUD) worker

lag: setup ## Consumer lag of the scorer's group, per partition, with status (refreshes; Ctrl-C to stop)
	$(call as,monitor)$(FRAUD) lag --watch

monitor: setup ## Live precision/recall per model version and score/feature drift (PSI), printed once
	$(call as,monitor)$(FRAUD) monitor

analyst: setup ## Simulated analysts: label alerts from ground truth, send chargebacks for approved frauds
	$(call as,analyst)$(FRAUD) analyst

console: services ## The analyst console on http://127.0.0.1:8080 (add an analyst: .venv/bin/fraud console add-analyst ID)
	$(call as,analyst)$(FRAUD) console

retrain: services ## Fold analyst labels and chargebacks back in: challenger, gates, promotion (LABEL_DELAY_SECONDS=86400 after a demo: one simulated day)
	$(call as,trainer)$(FRAUD) retrain $${LABEL_DELAY_SECONDS:+--label-delay-seconds $$LABEL_DELAY_SECONDS}

demo: setup ## Services, a champion (trained if none), worker + analysts + console + live traffic with a live view (RATE=500 DURATION=60 KEEP_CONSOLE=1)
	$(call as,admin)$(FRAUD) demo --rate $${RATE:-500} --duration $${DURATION:-60} $${KEEP_CONSOLE:+--keep-console}

bench: services ## End-to-end benchmark: the worker (saturation, fixed rates, two workers, py-spy profile) beside its ceilings (BENCH_ARGS="--state-dir bench-results/state")
	$(call as,admin)$(FRAUD) bench $${BENCH_ARGS:-}

chaos: setup ## Faults under steady traffic on the clustered stack, every topic verified (RATE=150 FAULTS=full|short|a,b)
	$(FRAUD) chaos --rate $${RATE:-150} --faults $${FAULTS:-full}

bench-features: setup ## Feature replay speed (training sets) and the Redis store path
	$(PY) -m bench.features --rows 1000000

bench-detection: setup ## What the features reach beside an oracle of the simulator's hidden state (the default history, simulated if missing)
	@test -f data/history/manifest.json || $(MAKE) --no-print-directory simulate
	$(PY) -m bench.detection

bench-simulator: setup ## History generation speed and memory (1 million rows)
	$(PY) -m bench.simulator
