VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test bench lint chaos fuzz serve clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,bench,pipecat,livekit]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/patchbay demo

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests examples bench
	$(VENV)/bin/ruff format --check src tests examples bench
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) bench/run.py

chaos: $(STAMP)
	PATCHBAY_CHAOS_CALLS=5000 $(PY) -m pytest -q tests/chaos -p no:randomly

# `make test` runs the same fuzz tests in a short form (3,000 argument sets, 1,000 bodies).
fuzz: $(STAMP)
	PATCHBAY_FUZZ_RUNTIME=100000 PATCHBAY_FUZZ_GATEWAY=20000 $(PY) -m pytest -q tests/fuzz -p no:randomly

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
