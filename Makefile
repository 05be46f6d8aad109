# likestream: `make run` runs the whole system, `make test` runs the whole suite.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
LIKES := $(VENV)/bin/likes
PYTEST := $(VENV)/bin/python -m pytest

.PHONY: help setup run up down test test-unit lint bench demo clean

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: ## Install everything missing (Debian packages, .venv, Maven jars)
	@scripts/bootstrap.sh

run: setup ## Run the whole system in the foreground with a live status display
	@$(LIKES) stack run

up: setup ## Start the whole system in the background (idempotent; restarts dead parts)
	@$(LIKES) stack up

down: ## Stop every component, keeping data
	@if [[ -x $(LIKES) ]]; then $(LIKES) stack down; fi

test: setup ## Set up, start the stack, run unit, integration and end-to-end tests
	@$(LIKES) stack up
	@$(PYTEST) -p no:cacheprovider -q --durations=15

test-unit: setup ## Unit tests only (no services)
	@$(PYTEST) -q -m "not integration and not e2e"

lint: setup ## ruff, mypy and import-linter (layers, no cycles)
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy
	@$(VENV)/bin/lint-imports

bench: up ## Benchmarks; results in bench/results/
	@$(VENV)/bin/python -m bench.run

demo: ## A realistic workload against a running system, then what users see
	@$(VENV)/bin/python -m loadgen.demo

clean: down ## Stop and delete all local runtime data (.local)
	rm -rf .local
