# whisper-service: `make run` serves the embedded model, `make test` runs every check.
# Both create or reuse the virtualenv in .venv and install what they need.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8080
# The CPU build of torch lies in /opt/wheels on these machines; elsewhere pip's
# own configuration decides where torch comes from.
PIP_FLAGS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
PYTEST_ARGS ?=

.PHONY: run test lint typecheck pytest install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel

# Stamps re-run the install whenever pyproject.toml changes.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(PIP_FLAGS) -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(PIP_FLAGS) -e '.[dev]'
	touch $@ $(VENV)/.installed-run

install: $(VENV)/.installed-run
install-dev: $(VENV)/.installed-dev

run: install
	PORT=$(PORT) WHISPER_HOST=127.0.0.1 APP_ENV=$${APP_ENV:-development} $(BIN)/whisper-service serve

lint: install-dev
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts

typecheck: install-dev
	$(BIN)/mypy src

pytest: install-dev
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .cache
