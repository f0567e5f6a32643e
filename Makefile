# Two commands do all set-up: `make demo` and `make test` (README quick start).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.hyenamd-installed
# Every install is pinned to the versions of a tested environment (constraints.txt), so a new
# release of a dependency cannot turn a fresh clone red. `make lock` refreshes the pins.
CONSTRAINTS := constraints.txt
LOCK_VENV   := .venv-lock

.PHONY: demo test lint bench clean lock

$(STAMP): pyproject.toml Makefile $(CONSTRAINTS)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "hyenamd needs Python >= 3.11 (found " + sys.version.split()[0] + "); run: make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) torch==2.13.0
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[dev]'
	@touch $(STAMP)

# Refresh constraints.txt: install the newest versions pyproject.toml allows into a scratch
# venv (no constraints), run the fast test suite there, and only if it passes freeze that
# environment into constraints.txt. Review the diff and commit it with the test result.
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(LOCK_VENV)/bin/python -m pip install --quiet -e '.[dev]'
	$(LOCK_VENV)/bin/python -m pytest -q -m "not slow" -x
	{ echo "# Pinned versions a fresh install gets (make test / make demo / CI install with -c constraints.txt)."; \
	  echo "# Generated from a tested environment by 'make lock' (see the Makefile); do not edit by hand."; \
	  echo "# torch is the CPU build 2.13.0 (a local version label such as +cpu is accepted by '==')."; \
	  $(LOCK_VENV)/bin/python -m pip freeze --exclude-editable | grep -vi '^hyenamd' | sed 's/^torch==.*/torch==2.13.0/'; \
	} > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf $(LOCK_VENV)

demo: $(STAMP)
	$(BIN)/hyenamd demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(STAMP) lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/neighbors.py

clean:
	rm -rf $(VENV) $(LOCK_VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
