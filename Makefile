# GhostGPT — `make run` serves, `make test` tests. Both set themselves up on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := run

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 8000
STAMP  := $(VENV)/.requirements-installed
POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/postgres

# llama-cpp-python ships no wheel: it compiles. Portable flags: a native build on the
# Xeons here (AMX) segfaulted in decode. pip caches the built wheel afterwards.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: run test install migrate lint format bench worker test-sqlite test-postgres clean

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check --quiet --upgrade pip==25.3
	$(PY) -m pip install --disable-pip-version-check --quiet -r requirements.txt
	@touch $(STAMP)

install: $(STAMP)

migrate: install
	$(PY) manage.py migrate --noinput

run: migrate
	@key=$$($(PY) manage.py dev_api_key) && \
	  echo "" && \
	  echo "  GhostGPT on http://$(HOST):$(PORT)" && \
	  echo "  OpenAI base URL: http://$(HOST):$(PORT)/v1" && \
	  echo "  Dev API key:     $$key" && \
	  echo ""
	exec $(VENV)/bin/daphne --access-log /dev/null -b $(HOST) -p $(PORT) ghostgpt.asgi:application

# A Celery worker for the tools (needs REDIS_URL; without it tasks run in the web process).
# Concurrency 1-2 per core for PDF/transcription; time limits and memory cap per child.
worker: migrate
	@test -n "$$REDIS_URL" || { echo "make worker needs REDIS_URL (e.g. redis://127.0.0.1:6379/0)"; exit 2; }
	exec $(VENV)/bin/celery -A ghostgpt worker --loglevel=INFO --concurrency=$${WORKER_CONCURRENCY:-2} \
	  --max-memory-per-child=$${WORKER_MAX_MEMORY_KB:-1500000} --prefetch-multiplier=1

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The whole suite on SQLite, then again on PostgreSQL. Under CI=true a missing
# PostgreSQL or Redis is a failure; elsewhere it is reported and skipped.
test: lint test-sqlite test-postgres

test-sqlite: install
	env -u DATABASE_URL -u REDIS_URL $(PY) -m pytest

test-postgres: install
	@if [ "$$CI" != "true" ] && ! $(PY) -c "import psycopg; psycopg.connect('$(POSTGRES_URL)', connect_timeout=3).close()" 2>/dev/null; then \
	  echo "!! PostgreSQL is not reachable at $(POSTGRES_URL): the PostgreSQL run is skipped (CI=true makes this a failure)"; \
	else \
	  echo "== the suite again on PostgreSQL ($(POSTGRES_URL)) =="; \
	  env -u REDIS_URL DATABASE_URL=$(POSTGRES_URL) $(PY) -m pytest; \
	fi

bench: install
	$(PY) bench/engine.py --output bench/results/engine.md
	$(PY) bench/tools.py --output bench/results/tools.md

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
