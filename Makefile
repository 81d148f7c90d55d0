# corrmae — run `make help` for the list of targets. Every target shows the real command it runs.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/demo/siammae_cpu.yaml
CKPT ?=
DATA ?= data/benchmarks
OUT ?= runs/eval
MODEL ?=
export OMP_NUM_THREADS ?= 2

.DEFAULT_GOAL := help
.PHONY: help install test test-slow demo lint format tensorboard bench gpu-check eval-all data-index prepare study-cpu clean

help: ## list targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install corrmae with dev + demo extras (editable)

test: $(STAMP) ## run the fast test suite (what CI runs first)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP) ## run the slow tests (DDP, resume-after-kill, end-to-end)
	$(BIN)/python -m pytest -q -m slow

demo: $(STAMP) ## prepare embedded demo data, pre-train SiamMAE on CPU, print J&F vs baselines
	$(BIN)/python -m lightning_modules demo --config $(CONFIG)

lint: $(STAMP) ## ruff lint + format check
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(STAMP) ## ruff autoformat + autofix
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

tensorboard: $(STAMP) ## open TensorBoard on runs/
	$(BIN)/tensorboard --logdir runs

bench: $(STAMP) ## side-by-side CPU benchmarks (propagation, sparse emulation, train step, data loading)
	$(BIN)/python -m tests.bench

# No .venv dependency: the GPU machine has its own python (torch, lightning, timm) and no project venv.
GPU_PY ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
GPU_OUT = $(if $(filter command line environment,$(origin OUT)),$(OUT),runs/gpu-check)
gpu-check: ## the prepared GPU check into OUT (default runs/gpu-check); tiny sizes on CPU without CUDA
	PYTHONPATH=.$${PYTHONPATH:+:$$PYTHONPATH} $(GPU_PY) -m tests.gpu.check --out "$(GPU_OUT)"

eval-all: $(STAMP) ## evaluate CKPT (or MODEL=timm name) on DATA/{DAVIS,VIP,JHMDB}, write OUT/results.md
	$(BIN)/python -m lightning_modules eval-all --ckpt "$(CKPT)" --model "$(MODEL)" --data "$(DATA)" --out "$(OUT)"

data-index: $(STAMP) ## scan DATA once and write DATA/index.csv with decoded frame counts
	$(BIN)/python -m lightning_modules index --root "$(DATA)"

FORMAT ?= jpeg
SHORT_SIDE ?= 256
WORKERS ?= 4
prepare: $(STAMP) ## convert DATA into a training-ready copy OUT (FORMAT=jpeg|mp4, SHORT_SIDE, WORKERS) + index
	$(BIN)/python -m lightning_modules prepare --root "$(DATA)" --out "$(OUT)" --format $(FORMAT) --short-side $(SHORT_SIDE) --workers $(WORKERS)

study-cpu: $(STAMP) ## CPU-scale study: several small SiamMAE recipes vs random-init and raw-pixel baselines
	$(BIN)/python -m lightning_modules study --out runs/study

clean: ## remove runs/, caches and generated demo data (keeps .venv)
	rm -rf runs data/demo lightning_logs .pytest_cache .ruff_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
