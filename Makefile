# `make run` and `make test` work on a fresh clone; see README.md.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PORT ?= 8000
HOST ?= 127.0.0.1
PYTEST_ARGS ?=

.PHONY: install run test lint bench demo-model clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned to the CPU build on disk: a range would pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Migrate and seed here so the demo login is printed before the (long) process output starts;
# `llmops up` migrates again, which is a no-op then.
run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo --host $(HOST) --port $(PORT)
	@$(MAKE) --no-print-directory demo-model
	exec $(VENV)/bin/llmops up --host $(HOST) --port $(PORT)

# The bundled offline demo model, built once (a no-op when var/models/demo exists).
demo-model: install
	$(VENV)/bin/llmops demo-model

# pytest exits 5 when it collected nothing: name that instead of leaving a bare "Error 5".
CHECK_PYTEST = code=$$?; if [ $$code -eq 5 ]; then \
	echo "error: pytest collected no tests (exit 5): a suite that runs nothing proves nothing"; fi; \
	[ $$code -eq 0 ] || exit $$code

# The whole suite on the embedded defaults (SQLite, embedded Valkey); then, when
# TEST_DATABASE_URL / TEST_REDIS_URL are set, the tests marked `services` again on those servers.
test: install lint
	@echo "== whole suite on the embedded defaults (SQLite, embedded Valkey)"
	@env -u TEST_DATABASE_URL -u TEST_REDIS_URL $(PY) -m pytest $(PYTEST_ARGS); $(CHECK_PYTEST)
	@if [ -n "$$TEST_DATABASE_URL$$TEST_REDIS_URL" ]; then \
		echo "== services suite against TEST_DATABASE_URL=$$TEST_DATABASE_URL TEST_REDIS_URL=$$TEST_REDIS_URL"; \
		$(PY) -m pytest -m services $(PYTEST_ARGS); $(CHECK_PYTEST); \
	else echo "== TEST_DATABASE_URL / TEST_REDIS_URL not set: services suite ran on embedded defaults only"; fi

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

bench: install
	@for f in bench/bench_*.py; do \
		[ -e "$$f" ] || { echo "no benchmarks in bench/"; break; }; \
		echo "== $$f"; $(PY) $$f || exit 1; \
	done

clean:
	rm -rf var/test .pytest_cache
