# Two commands set everything up on a fresh machine with Python >= 3.11:
#   make demo   create .venv, install, run every workflow on built-in example data
#   make test   create/use .venv, install, run the test suite
# Installs happen only when pyproject.toml changed (stamp file), so repeats start in seconds.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	&& { command -v $$p; break; }; done)

.PHONY: demo test lab bench lint browser-deps notebooks clean

$(PY):
	@test -n "$(PYTHON)" || { echo "cryoml needs Python >= 3.11 (python3.11 or newer on PATH)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cryoml demo --out outputs/demo
	$(PY) -c "import json; from cryoml.widgets import execute_notebooks; \
	  r = execute_notebooks('outputs/notebooks', quick=True); \
	  [print(f'{k}: ok in {v[\"seconds\"]:.0f} s -> {v[\"path\"]}\n  headline: ' \
	         + json.dumps(v['headline'])) for k, v in r.items()]"

test: $(STAMP)
	@bash tools/install-browser.sh >/dev/null 2>&1 || echo "Chromium could not be installed: the browser test will be skipped"
	$(PY) -m pytest -q

# Debian's Chromium for the real-browser test (needs root or sudo).
browser-deps:
	bash tools/install-browser.sh

# Rebuild the .ipynb notebooks from their percent-format .py sources.
notebooks: $(STAMP)
	$(PY) notebooks/build.py

lint: $(STAMP)
	$(VENV)/bin/ruff check cryoml tests benchmarks

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

bench: $(STAMP)
	@mkdir -p outputs/benchmarks
	@for script in benchmarks/*.py; do \
		echo "== $$script --quick"; $(PY) $$script --quick || exit 1; done

clean:
	rm -rf outputs .pytest_cache .ruff_cache
