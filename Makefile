# automationd — developer entry points. Everything builds .venv from pyproject.toml first.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
CONFIG  ?= etc/automationd.toml

.PHONY: run test bench lint typecheck fmt check clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	mkdir -p var/run
	@# once the daemon answers, print the web console's one-time login link (issue 13)
	@(for i in $$(seq 100); do sleep 0.2; url=$$($(BIN)/automationctl --socket var/run/admin.sock \
	  web-login 2>/dev/null) && { echo "web console: $$url"; break; }; done &)
	$(BIN)/automationd run --config $(CONFIG)

test: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider -m bench tests/bench -s

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format automationd tests
	$(BIN)/ruff check --fix automationd tests

check: lint typecheck test

clean:
	rm -rf $(VENV) var build *.egg-info
