# Two commands for a newcomer: `make demo` (the main job) and `make test` (all tests).
# Both create .venv and install the project on first use; torch is pinned by constraints.txt
# so a machine without a GPU never pulls CUDA packages. `make demo` again replaces the last demo
# (runs/demo); `make clean` removes the demo and the tool caches, `make distclean` the venv too.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test demo lint bench clean distclean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[all]' --group dev
	touch $@

install: $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest

demo: $(STAMP)
	$(VENV)/bin/embed-bench demo

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: $(STAMP)
	$(PY) benchmarks/batching.py

clean:
	rm -rf runs/demo .pytest_cache .ruff_cache *.egg-info

distclean: clean
	rm -rf $(VENV)
