# Two commands for users: `make run` and `make test`. Everything else is set-up they trigger.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTHON ?= python3

.PHONY: run test setup index eval bench load-test lint clean

# `run` builds the index when missing or stale, then serves the app on http://127.0.0.1:7860
run: setup
	$(VENV)/bin/spacesec build --quiet
	$(VENV)/bin/spacesec serve

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

setup: $(STAMP)

# torch is pinned and installed first: a bare `torch` requirement pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e ".[build,test]"
	touch $(STAMP)

index: setup
	$(VENV)/bin/spacesec build

eval: setup
	$(VENV)/bin/spacesec eval --qa ../shared/eval/dev.jsonl

bench: setup
	$(PY) benchmarks/run.py

load-test: setup
	$(PY) benchmarks/load_test.py --clients 20 --seconds 60

lint: setup
	$(VENV)/bin/ruff check rag ui tests benchmarks

clean:
	rm -rf $(VENV) index
