# The two commands of the README: `make demo` runs the whole flow on the embedded default,
# `make test` runs lint, types and the whole test suite (`make test-fast`: without the slow tests).
# Both install what they need from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium
# The exact versions of every runtime and dev dependency the suite passes with (Python 3.11, linux x86_64).
LOCK := requirements.lock
LOCK_VENV := var/lock-venv

.PHONY: demo live test test-fast lint install lock clean

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c $(LOCK) -e '.[dev]'
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

# The quick tier: lint and every test not marked slow (no trained model, worker, browser, big world or
# deliberate wait of seconds).
test-fast: lint
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

# Regenerate the lock after a change of pyproject.toml's dependencies: pins that still fit are kept;
# `make lock LOCK_ARGS=--upgrade` moves every pin to the newest allowed. pip-tools runs in a throwaway venv.
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet 'pip-tools>=7.6,<8'
	$(LOCK_VENV)/bin/pip-compile --quiet --extra dev --strip-extras --no-emit-index-url --no-emit-find-links \
		$(LOCK_ARGS) -o $(LOCK) pyproject.toml
	rm -rf $(LOCK_VENV)

clean:
	rm -rf var .mypy_cache .ruff_cache .pytest_cache
