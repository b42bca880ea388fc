# Two commands matter: `make demo` runs the product on embedded defaults, `make test` runs everything
# CI runs (lint, format check, import contracts, type check, tests). Both create the virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck pytest bench clean

$(BIN)/cns: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

demo: $(BIN)/cns
	$(BIN)/cns demo

lint: $(BIN)/cns
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports  # the layers of README > Architecture ([tool.importlinter] in pyproject.toml)

typecheck: $(BIN)/cns
	$(BIN)/mypy

# Coverage of the packages, child processes (the `cns` commands tests run) included. Measured after the
# layered move: 93 % with the PostgreSQL tests on (CI), 91 % without; the gate keeps a point of margin
# under the lower one, and is only ever raised.
COVERAGE_MIN ?= 90
pytest: $(BIN)/cns
	$(BIN)/coverage erase
	$(BIN)/coverage run -m pytest
	$(BIN)/coverage combine -q
	@echo "coverage: $$($(BIN)/coverage report --format=total) % (gate: $(COVERAGE_MIN) %)"
	$(BIN)/coverage report --fail-under=$(COVERAGE_MIN) > /dev/null

test: lint typecheck pytest

bench: $(BIN)/cns
	$(BIN)/python benchmarks/plan_dispatch.py
	$(BIN)/python benchmarks/telegram_send.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache *.egg-info
