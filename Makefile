# One command to set up and serve, one to set up and test. Each target
# creates .venv on first use and reinstalls when the package metadata changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000
# Test processes (pytest-xdist): the suite mostly waits on servers and
# sockets, so more processes than cores pay off. PYTEST_ARGS adds options.
PYTEST_WORKERS ?= 4
PYTEST_ARGS ?=

.PHONY: run serve test lint check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-production: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[production]'
	touch $@ $(VENV)/.installed-run

$(VENV)/.installed-test: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/flask --app zerg serve --host $(HOST) --port $(PORT)

# Production: migrate the DATABASE_URL you give it (workers never do), then
# serve it with gunicorn (gunicorn.conf.py).
serve: $(VENV)/.installed-production
	$(BIN)/flask --app zerg db upgrade
	$(BIN)/gunicorn -c gunicorn.conf.py

test: $(VENV)/.installed-test
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

check: lint test

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
