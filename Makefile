# olmo3-flow: `make run` and `make test` set up everything they need on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup run run-micro test test-slow ui-check bench clean

$(STAMP): pyproject.toml
	command -v bwrap >/dev/null || (apt-get update -qq && apt-get install -y -qq bubblewrap libseccomp2)  # the code sandbox
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0          # the CPU wheel; an unpinned torch pulls CUDA
	$(PY) -m pip install -q -e '.[dev,bench,lmeval]'
	touch $(STAMP)

setup: $(STAMP)

run: setup  ## the default tiny end-to-end flow (about 15-20 minutes on 2 CPU cores)
	$(VENV)/bin/olmo3-flow run $(ARGS)

run-micro: setup  ## the whole flow at test size (a few minutes)
	$(VENV)/bin/olmo3-flow run preset=micro $(ARGS)

test: setup  ## fast unit tests plus end-to-end flows on the micro preset
	$(VENV)/bin/pytest -m "not slow" $(PYTEST_ARGS)

test-slow: setup  ## multi-process training, kill/resume, S3, local stack
	$(VENV)/bin/pytest -m slow $(PYTEST_ARGS)

ui-check: setup  ## local stack + micro flow, then headless Chromium walks the MLflow and Prefect UIs (screenshots in build/ui-check/)
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium) || echo "no chromium: the check will skip"
	$(VENV)/bin/pytest -m slow tests/ui $(PYTEST_ARGS)

bench: setup  ## curation vs datatrove, prose-filter keep/removal rates, sandbox per-call overhead
	$(PY) benchmarks/bench_curation.py
	$(PY) benchmarks/bench_filters.py
	$(PY) benchmarks/bench_sandbox.py

clean:
	rm -rf .olmo3
