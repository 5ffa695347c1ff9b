# Quick start: `make demo` and `make test` work on a fresh machine (they set up .venv first).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: setup demo test lint typecheck bench bench-fleet soak scenarios fuzz clean peers test-pythons

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/aiolwm2m demo

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks fuzz scripts
	$(VENV)/bin/ruff format --check src tests benchmarks fuzz scripts

typecheck: setup
	$(VENV)/bin/mypy

# Third-party interop peers (libcoap3-bin via apt as root, lwm2m-node-lib via npm); never fails:
# without root or network the interop tests skip and say why.
peers:
	@scripts/install-peers.sh

test: setup lint typecheck peers
	$(PY) -m pytest $(PYTEST_ARGS)
	scripts/test-pythons.sh

# The other supported CPythons (pyenv's 3.12 and 3.13 on this machine type): install the
# package in a venv each, run import/--help/no-DTLS checks, DTLS unit tests, a coaps:// PSK
# registration. PYTHONS="…" picks interpreters.
test-pythons:
	scripts/test-pythons.sh

bench: setup
	$(PY) benchmarks/bench_coap.py
	# python-mbedtls (the previous DTLS backend) only as bench_dtls.py's baseline; no wheel on 3.13+.
	-$(PY) -m pip install -q 'python-mbedtls==2.10.1'
	$(PY) benchmarks/bench_dtls.py
	$(PY) benchmarks/bench_formats.py
	$(PY) benchmarks/bench_testbed_server.py
	$(PY) benchmarks/bench_firmware.py
	$(PY) benchmarks/bench_client.py
	$(MAKE) bench-fleet

# Fleets (issue 16, about 20 minutes): 10 000 devices over real UDP held 5 minutes, a
# simulated week, the reconnection storm (plot in docs/fleet-storm/), Locust master + 2 workers.
bench-fleet: setup
	$(PY) benchmarks/bench_fleet.py

# Soak: N clients through the fault proxy with random faults for M seconds; stops by itself.
SOAK_CLIENTS ?= 100
SOAK_SECONDS ?= 600
soak: setup
	$(PY) -m aiolwm2m.testbed.soak --clients $(SOAK_CLIENTS) --seconds $(SOAK_SECONDS)

# Every shipped scenario at its own time scale (several minutes in all).
scenarios: setup
	@for f in src/aiolwm2m/scenarios/*.toml; do $(VENV)/bin/aiolwm2m scenario --quiet $$f || \
	  grep -q 'expect_verdict = "fail"' $$f || exit 1; done

# atheris (coverage-guided) on each decoder for FUZZ_SECONDS each; corpora and
# any crash-* input are kept in $(FUZZ_DIR).
FUZZ_SECONDS ?= 600
FUZZ_DIR ?= .fuzz
FUZZ_TARGETS := $(patsubst fuzz/fuzz_%.py,%,$(wildcard fuzz/fuzz_*.py))
fuzz: setup
	$(PY) -m pip install -q -e '.[fuzz]'
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_DIR)/corpus-$$t && echo "== fuzz $$t ($(FUZZ_SECONDS) s)" && \
	  (cd $(FUZZ_DIR) && $(abspath $(PY)) $(CURDIR)/fuzz/fuzz_$$t.py \
	    -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    corpus-$$t $(CURDIR)/fuzz/seeds/$$t) || exit 1; \
	done

clean:
	rm -rf $(VENV) .venv-py3.* .pytest_cache .mypy_cache .ruff_cache .hypothesis .fuzz
