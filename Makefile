# sokures: the README's two commands are `make demo` and `make test`; both set up
# everything they need on a fresh Debian machine (venv, Python packages, and the
# Debian packages the real servers come from when run as root).
VENV      ?= .venv
PYTHON    ?= python3
PY        := $(VENV)/bin/python
STAMP     := $(VENV)/.sokures-installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install sysdeps-demo sysdeps-test sysdeps-bench demo test bench lint typecheck clean

install: $(STAMP)

$(STAMP): pyproject.toml scripts/bootstrap.sh
	PYTHON=$(PYTHON) VENV=$(VENV) scripts/bootstrap.sh
	@touch $(STAMP)

sysdeps-demo:
	@scripts/sysdeps.sh demo

sysdeps-test:
	@scripts/sysdeps.sh test

sysdeps-bench:
	@scripts/sysdeps.sh bench

demo: install sysdeps-demo
	$(VENV)/bin/sokures demo $(DEMO_ARGS)

test: install sysdeps-test
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install sysdeps-bench
	$(PY) -m benchmarks $(BENCH_ARGS)

lint: install
	$(VENV)/bin/ruff check deliver probes dashboards lab tests benchmarks
	$(VENV)/bin/mypy deliver probes

typecheck: lint

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
