# The entry points: `make run`, `make test`, `make lint`. Each makes .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config.toml

.PHONY: run test lint fmt clean bench fuzz

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

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@

# Benchmarks: installs wrk and nginx from the OS packages when missing and possible, then
# nginx's stream module (libnginx-mod-stream, for stream-tcp) when this nginx lacks it
# (tolerating failure: the harness falls back to its own load generator and skips the nginx
# baselines it cannot run), then runs the quick profile. BENCH_ARGS="--full" or
# "--scenario proxy" and so on.
bench: $(VENV)/.installed-bench
	@command -v wrk >/dev/null 2>&1 && { command -v nginx || test -x /usr/sbin/nginx; } >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo -n ); \
	  { $$SUDO apt-get update -qq && \
	    { $$SUDO apt-get install -y -qq wrk nginx-light || $$SUDO apt-get install -y -qq wrk nginx; }; \
	  } >/dev/null 2>&1 || echo "bench: could not install wrk/nginx; going on without them"; }
	@$(BIN)/python -c 'from benchmarks.baselines import nginx; raise SystemExit(nginx.binary() is not None and nginx.stream_module() is None)' || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo -n ); \
	  { $$SUDO apt-get install -y -qq libnginx-mod-stream || \
	    { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libnginx-mod-stream; }; \
	  } >/dev/null 2>&1 || echo "bench: could not install libnginx-mod-stream; stream-tcp goes on without nginx"; }
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

# The optional mypyc build of the hot modules (issue 17): a copy of edgeauth/ with those modules
# compiled, in build/mypyc/ only (never beside the sources: run, test and CI stay pure Python).
# `make bench` measures a gateway run from it beside the pure one. MYPYC_ARGS="--modules ...".
.PHONY: mypyc
$(VENV)/.installed-mypyc: pyproject.toml $(VENV)/.installed-test
	$(BIN)/pip install --quiet -e '.[mypyc]'
	touch $@

mypyc: $(VENV)/.installed-mypyc
	$(BIN)/python -m benchmarks.mypyc_build $(MYPYC_ARGS)

run: $(VENV)/.installed-run certs/edgeauth.crt var/clientapp.secret
	$(BIN)/edgeauth demo -c $(CONFIG)

# The suite runs on PYTEST_WORKERS pytest-xdist workers, a whole test file per worker at a time
# (--dist loadfile: module fixtures such as the fuzz gateway and the benchmark run start once).
# Most of its time is spent waiting on sockets and subprocesses, so more workers than cores pay.
# PYTEST_WORKERS=0 runs it serially in one process (for debugging, pdb, -x).
PYTEST_WORKERS ?= 4
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The differential HTTP fuzzer, long: FUZZ_ARGS="--examples 20000 --seconds 600" (the
# bounded run is part of `make test`); --survey FILE records every distinct failure.
fuzz: $(VENV)/.installed-test
	$(BIN)/python -m tests.fuzz $(FUZZ_ARGS)

lint: $(VENV)/.installed-test $(VENV)/.installed-bench
	$(BIN)/ruff check edgeauth tests benchmarks
	$(BIN)/ruff format --check edgeauth tests benchmarks
	$(BIN)/mypy

fmt: $(VENV)/.installed-test
	$(BIN)/ruff check --fix edgeauth tests benchmarks
	$(BIN)/ruff format edgeauth tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
