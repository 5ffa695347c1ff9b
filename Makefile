# Quick start: `make demo` and `make test` work on a fresh machine (they set up .venv first).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: setup demo test lint typecheck unit bench soak fuzz clean peers

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/aiolwm2m demo

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: setup
	$(VENV)/bin/mypy

# Third-party interop peers (libcoap3-bin via apt as root, lwm2m-node-lib via npm); never fails:
# without root or network the interop tests skip and say why.
peers:
	@scripts/install-peers.sh

test: setup lint typecheck peers
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/bench_coap.py
	$(PY) benchmarks/bench_dtls.py
	$(PY) benchmarks/bench_formats.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
