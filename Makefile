# `make run` and `make test` work on a fresh machine: each creates .venv if missing and installs
# what it needs (re-installing only when pyproject.toml or constraints.txt changes), pinned to the
# tested set in constraints.txt.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: run test test-fast lint bench clean monitoring-tools

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test,ray,vision]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/frugalml run examples/quickstart.yaml

test: $(STAMP) monitoring-tools
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# Prometheus, promtool and Alertmanager for tests/test_monitor_*.py (Debian's packages). Without root
# (or passwordless sudo) or apt-get this says why and carries on; those tests then skip with the reason.
MONITORING_PACKAGES := prometheus prometheus-alertmanager
monitoring-tools:
	@if command -v prometheus >/dev/null && command -v promtool >/dev/null && \
	   { command -v alertmanager || command -v prometheus-alertmanager; } >/dev/null; then \
	  exit 0; \
	elif ! command -v apt-get >/dev/null; then \
	  echo "monitoring-tools: no apt-get here; the Prometheus tests will skip"; \
	else \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	  else echo "monitoring-tools: not root and no passwordless sudo; the Prometheus tests will skip"; exit 0; fi; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$SUDO apt-get install -y -q --no-install-recommends $(MONITORING_PACKAGES) >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && \
	    $$SUDO apt-get install -y -q --no-install-recommends $(MONITORING_PACKAGES) >/dev/null; } || \
	  echo "monitoring-tools: installing $(MONITORING_PACKAGES) failed; the Prometheus tests will skip"; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) bench/banking77.py

clean:
	rm -rf .frugalml build *.egg-info
