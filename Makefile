# automationd — developer entry points. Everything builds .venv from pyproject.toml first.
#
# One stamp per set of extras, so each target installs only what it needs and `make test`
# after `make run` adds just the `dev` extra:
#   make run    the package and its runtime deps (no test or bench tools)
#   make test   + the `dev` extra (pytest, ruff, mypy, ...)
#   make bench  + the `bench` extra (the peers we measure against: Huey, APScheduler)
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PIP     := $(BIN)/pip install -qq --disable-pip-version-check
CONFIG  ?= etc/automationd.toml

.PHONY: install venv run test bench lint typecheck fmt man check clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(VENV)/.run: pyproject.toml | $(BIN)/python
	$(PIP) -e .
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[dev]'
	touch $@

$(VENV)/.bench: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[dev,bench]'
	touch $@

install: $(VENV)/.run

venv: $(VENV)/.dev

run: $(VENV)/.run
	@mkdir -p var/run
	@echo "automationd: demo config $(CONFIG); state in ./var; Ctrl-C stops it. In another terminal:"
	@echo "  export AUTOMATIOND_SOCKET=$$PWD/var/run/admin.sock"
	@echo "  $(BIN)/automationctl status    # jobs list, runs list, limits, breakers, --help"
	@echo
	@# once the daemon answers, print the web console's one-time login link (issue 13)
	@(for i in $$(seq 100); do sleep 0.2; url=$$($(BIN)/automationctl --socket var/run/admin.sock \
	  web-login 2>/dev/null) && { echo "web console: $$url"; break; }; done &)
	$(BIN)/automationd run --config $(CONFIG)

test: $(VENV)/.dev
	$(BIN)/pytest -q -p no:cacheprovider -n 2 --dist loadfile

bench: $(VENV)/.bench
	$(BIN)/pytest -q -p no:cacheprovider -m bench tests/bench -s

lint: $(VENV)/.dev
	$(BIN)/ruff check .

typecheck: $(VENV)/.dev
	$(BIN)/mypy

fmt: $(VENV)/.dev
	$(BIN)/ruff format automationd tests
	$(BIN)/ruff check --fix automationd tests

# The man pages in man/ are generated from the argparse parsers; a test keeps them current.
man: $(VENV)/.run
	$(BIN)/python -m automationd.manpage man

check: lint typecheck test

clean:
	rm -rf $(VENV) var build *.egg-info
