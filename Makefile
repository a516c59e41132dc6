# The two commands of the README: `make demo` runs the whole flow on the embedded default,
# `make test` runs lint, types and the whole test suite (`make test-fast`: without the slow tests).
# Both install what they need from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium

.PHONY: demo live test test-fast lint install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The dashboard's browser test drives Debian's Chromium (with a CJK font); installed only when missing.
$(CHROMIUM):
	apt-get update && apt-get install -y --no-install-recommends chromium fonts-noto-cjk

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/hotvideo demo $(ARGS)

live: $(STAMP)
	$(BIN)/hotvideo live $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint $(CHROMIUM)
	$(BIN)/pytest $(PYTEST_ARGS)

# The quick tier: lint and every test not marked slow (no trained model, worker, browser or big world).
test-fast: lint
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf var .mypy_cache .ruff_cache .pytest_cache
