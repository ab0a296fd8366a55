# The two commands of the README:
#   make demo   set up (apt packages, .venv, ketch), build a base image, show ketch at work
#   make test   set up, then the whole test suite (unit, integration, conformance subset)
SHELL := /bin/bash
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: setup demo test unit integration lint bench conformance

setup:
	@scripts/setup.sh

demo: setup
	@scripts/demo.sh

test: setup lint
	pytest --durations=15 tests

unit: setup
	pytest tests/unit

integration: setup
	pytest tests/integration

lint: setup
	ruff check ketch tests bench

conformance: setup
	../shared/conformance/runtime-tools/run.sh "$$(command -v ketch-runc)"

bench: setup
	python bench/run_all.py
