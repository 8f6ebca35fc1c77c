# Two commands for a newcomer: `make demo` (the main job) and `make test` (all tests).
# Both create .venv and install the project on first use; torch is pinned by constraints.txt
# so a machine without a GPU never pulls CUDA packages. `make demo` again replaces the last demo
# (runs/demo); `make clean` removes the demo and the tool caches, `make distclean` the venv too.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# Parallel test processes (pytest-xdist): two per core. Most tests wait on the servers and Locust
# processes they start; on 2 cores, 4 processes ran the parallel part in 891 s against 1,054 s for 2,
# the cores 96% busy (docs/development.md).
JOBS   ?= $(shell $(PYTHON) -c "import os; print(2 * len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else 2 * (os.cpu_count() or 1))")

# Python may write its bytecode caches (__pycache__, git-ignored) whatever the shell says: with
# PYTHONDONTWRITEBYTECODE set, every test process rewrote and compiled the test modules again (pytest's
# collection: 14.4 s, against 8.2 s from the caches) and every server and Locust process a test starts
# compiled the project's modules again.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install test check docs demo lint bench clean distclean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[all]' --group dev
	touch $@

install: $(STAMP)

# Every test: the parallel part on every core, then the timing-sensitive ones (marked `serial`) alone,
# so that no other test shares the machine while they measure lags, rates and latencies.
test: $(STAMP)
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -n $(JOBS) -m "not serial" --durations=25
	$(PY) -m pytest -m serial --durations=10

# The fast tier, between two edits: lint, the layer contracts, and every test that starts no process,
# server or browser (tests/conftest.py keeps those out).
check: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -n auto -m "not slow" -q --durations=10

# The docs site (mkdocs-material) into site/; the tests build it with --strict too.
docs: $(STAMP)
	$(PY) -m mkdocs build --strict

demo: $(STAMP)
	$(VENV)/bin/embed-bench demo

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: $(STAMP)
	$(PY) benchmarks/batching.py

clean:
	rm -rf runs/demo site .pytest_cache .ruff_cache .import_linter_cache *.egg-info

distclean: clean
	rm -rf $(VENV)
