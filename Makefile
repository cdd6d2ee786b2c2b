# Sluice developer targets. Everything bootstraps itself from Python 3.11 + pip:
# a private venv (.tools) holds a pinned uv, which builds .venv from uv.lock.
PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8080

export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: help run real key compiler test lint typecheck check promtool redis nginx chromium node-clients loadtest bench prometheus fleet clean
.DEFAULT_GOAL := help

## help: this list (each target's `## name: text` comment in this Makefile)
help:
	@awk '/^## [a-z-]+:/ { sub(/^## /, ""); i = index($$0, ": "); \
	        printf "  %-13s %s\n", substr($$0, 1, i - 1), substr($$0, i + 2); cont = 1; next } \
	      /^## / && cont { sub(/^## /, ""); printf "  %-13s %s\n", "", $$0; next } \
	      { cont = 0 }' $(MAKEFILE_LIST)

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q uv==$(UV_VERSION)

# Two stamps, one venv: `make run` needs only the runtime dependencies;
# everything else needs the dev group too. The runtime sync is --inexact so it
# never removes the dev tools a `make test` installed (either order works).
$(VENV)/.synced-runtime: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --no-dev --inexact --python $(PYTHON)
	touch $@

$(VENV)/.synced-dev: $(UV) pyproject.toml uv.lock | compiler
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

## run: start the gateway on the embedded default (the simulator, no API keys)
run: $(VENV)/.synced-runtime
	$(PY) -m gateway --host $(HOST) --port $(PORT) $(ARGS)

## real: a real model, no API key: llama.cpp's server with SmolLM2-135M-Instruct
## and Sluice in front on PORT (model "smollm2"); Ctrl-C stops both. The first
## run builds llama.cpp from source (~5 min on 2 cores; uv caches it)
real: $(VENV)/.synced-dev
	$(PY) -m loadtest.procs.llama --host $(HOST) --port $(PORT)

## key: a client key: its secret printed once, its [[auth.keys]] block appended to
## $(CONFIG); ARGS for limits, e.g. ARGS="--token-budget 1000000 --requests-per-minute 60"
CONFIG ?= sluice.toml
key: $(VENV)/.synced-runtime
	@test -n "$(NAME)" || { echo "usage: make key NAME=team-a [CONFIG=sluice.toml] [ARGS=...]" >&2; exit 2; }
	@$(PY) -m gateway keys new $(NAME) $(ARGS) >> $(CONFIG)
	@echo "appended key $(NAME) to $(CONFIG)" >&2

## compiler: Debian's g++, which uv needs to build llama-cpp-python (the real
## model's server, a dev dependency) from its sdist
compiler:
	@command -v gcc >/dev/null 2>&1 && command -v g++ >/dev/null 2>&1 || { \
	  echo "installing Debian's g++ (to build llama-cpp-python)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++ >/dev/null; }

## promtool: Debian's prometheus package provides promtool and prometheus
promtool:
	@command -v promtool >/dev/null 2>&1 || { \
	  echo "installing Debian's prometheus package (promtool)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

## redis: Debian's redis-server, which the quota tests start on free ports
redis:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing Debian's redis-server (quota tests)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null; }

## nginx: Debian's nginx, which the proxy and fleet tests start on free ports
nginx:
	@command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || { \
	  echo "installing Debian's nginx (proxy and fleet tests)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null; }

## chromium: Debian's chromium and chromedriver, which the browser tests drive headless
chromium:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium and chromium-driver (browser tests)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; }

## node-clients: the Node clients the tests drive (tests/js: openai, ai, @ai-sdk/*,
## @anthropic-ai/sdk), `npm ci` from package-lock.json, Node >= 20; cached
## until the lockfile changes (skipped, with a warning, without Node 20)
NODE_CLIENTS := tests/js/node_modules/.installed
node-clients: $(NODE_CLIENTS)
$(NODE_CLIENTS): tests/js/package.json tests/js/package-lock.json
	@if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 && \
	    [ "$$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ]; then \
	  echo "installing the Node clients (npm ci in tests/js)"; \
	  cd tests/js && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else \
	  echo "warning: Node >= 20 and npm not found: the Node client tests will be skipped" >&2; \
	fi

## test: the whole suite (installs what it needs first)
test: $(VENV)/.synced-dev promtool redis nginx chromium node-clients
	$(PY) -m pytest -q $(PYTEST_ARGS)

## lint: ruff check and format check
lint: $(VENV)/.synced-dev
	$(VENV)/bin/ruff check gateway tests loadtest
	$(VENV)/bin/ruff format --check gateway tests loadtest

## typecheck: mypy (strict, on gateway/)
typecheck: $(VENV)/.synced-dev
	$(VENV)/bin/mypy

## check: lint, typecheck and test
check: lint typecheck test

## clean: remove the venvs, caches and the Node clients
clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache tests/js/node_modules

## loadtest: default end-to-end scenario (mock upstream + gateway + load), ~3 min
loadtest: $(VENV)/.synced-dev
	$(PY) -m loadtest $(LOADTEST_ARGS)

## fleet: Redis, the mock upstream, REPLICAS gateway replicas on that Redis and
## nginx (deploy/nginx/sluice.conf) on PORT in front; Ctrl-C stops them all
REPLICAS ?= 2
fleet: $(VENV)/.synced-dev redis nginx
	$(PY) -m loadtest fleet --replicas $(REPLICAS) --port $(PORT) $(FLEET_ARGS)

## bench: hot path vs the floor relay (~4-5 min), then the comparison suite (added
## latency, events per CPU-second, RSS per stream), then a real model (llama.cpp,
## SmolLM2) straight and through Sluice (~1 min)
bench: $(VENV)/.synced-dev
	$(PY) -m loadtest hotpath $(HOTPATH_ARGS)
	$(PY) -m loadtest relay_cpu
	$(PY) -m loadtest bench $(BENCH_ARGS)
	$(PY) -m loadtest real_model $(REAL_ARGS)

## prometheus: a local Prometheus (Debian package) scraping a running gateway
prometheus: promtool
	grafana/run-prometheus.sh
