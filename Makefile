# `make run` and `make test` work on a fresh machine: each creates .venv if missing and installs
# what it needs (re-installing only when pyproject.toml or constraints.txt changes), pinned to the
# tested set in constraints.txt.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: run test test-fast lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test,ray]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/frugalml run examples/quickstart.yaml

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) bench/banking77.py

clean:
	rm -rf .frugalml build *.egg-info
