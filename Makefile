# Fresh machine: `make run` (short QMIX training on smax_3m) and `make test`.
# Both create .venv with the project installed if it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUN_ARGS ?= algo=qmix env=smax_3m total_steps=100000 test_interval=20000
# The suite is mostly XLA compiling small programs, one core at a time: two pytest-xdist
# workers use both of CI's cores (TEST_WORKERS=0 runs it in one process).
TEST_WORKERS ?= 2

.PHONY: install run test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) -m jlmarl.train $(RUN_ARGS)

test: install
	JAX_PLATFORMS=cpu $(PY) -m pytest -q -n $(TEST_WORKERS)

lint: install
	$(VENV)/bin/ruff check jlmarl tests benchmarks
	$(VENV)/bin/ruff format --check jlmarl tests benchmarks

bench: install
	$(PY) benchmarks/throughput.py --json benchmarks/results/throughput.json

clean:
	rm -rf $(VENV) .pytest_cache
