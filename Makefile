# The entry points: `make run`, `make test`, `make lint`. Each makes .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config.toml

.PHONY: run test lint fmt clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,postgres,dev]'
	touch $@ $(VENV)/.installed-run

certs/edgeauth.crt: | $(VENV)/.installed-run
	$(BIN)/edgeauth gen-cert --dir certs

var/clientapp.secret:
	mkdir -p -m 0700 var
	umask 077 && $(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(24))' > $@

run: $(VENV)/.installed-run certs/edgeauth.crt var/clientapp.secret
	$(BIN)/edgeauth demo -c $(CONFIG)

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check edgeauth tests benchmarks
	$(BIN)/ruff format --check edgeauth tests benchmarks
	$(BIN)/mypy

fmt: $(VENV)/.installed-test
	$(BIN)/ruff check --fix edgeauth tests benchmarks
	$(BIN)/ruff format edgeauth tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
