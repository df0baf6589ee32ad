# sagevit: train and serve a ViT on SageMaker from one image. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
IMAGE ?= sagevit:latest
BASE_IMAGE ?= tensorflow/tensorflow:2.21.0-gpu
STANDIN_IMAGE ?= sagevit:standin
GPU_FLAGS := $(shell nvidia-smi -L >/dev/null 2>&1 && echo --gpus all)
LOCAL_DIR ?= build/local
DATA ?=
EPOCHS ?=
PORT ?= 8080

.PHONY: help install test test-fast lint format build build-standin image train-local serve-local demo bench-serve bench-train

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $@

install: $(VENV)/.installed ## Create .venv and install the project with its dev tools

test: install ## Run every test, slow ones included (what CI runs)
	$(PY) -m pytest -m "slow or not slow"

test-fast: install ## Run the fast tests only
	$(PY) -m pytest

lint: install ## ruff check, ruff format --check, hadolint, shellcheck
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint docker/Dockerfile
	$(VENV)/bin/shellcheck scripts/*.sh .ci/run

format: install ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

build: ## Build the image (IMAGE=, BASE_IMAGE= override the tag and base)
	docker build --network host -f docker/Dockerfile --build-arg BASE_IMAGE=$(BASE_IMAGE) -t $(IMAGE) .

build-standin: ## Build the image on the stand-in TensorFlow base, as CI does; prints the image
	@base=$$(bash scripts/docker_up.sh --standin | tail -n 1) && \
	docker build --network host -f docker/Dockerfile --build-arg BASE_IMAGE=$$base \
		-t $(STANDIN_IMAGE) . >&2 && \
	echo $(STANDIN_IMAGE)

image: # Build IMAGE unless it exists already
	@docker image inspect $(IMAGE) >/dev/null 2>&1 || $(MAKE) build

train-local: install image ## Train in the image with build/local/opt_ml as /opt/ml (DATA=, EPOCHS=)
	$(PY) -m scripts.demo --image $(IMAGE) --train-only --workdir $(LOCAL_DIR) $(if $(DATA),--data $(DATA)) $(if $(EPOCHS),--epochs $(EPOCHS))

serve-local: image ## Serve the train-local model from the image on 127.0.0.1:8080 (PORT=)
	docker run --rm --network host $(GPU_FLAGS) -e SAGEMAKER_BIND_TO_PORT=$(PORT) \
		-v $(abspath $(LOCAL_DIR))/opt_ml/model:/opt/ml/model:ro $(IMAGE) serve

demo: install image ## Train and serve in the image, query it with curl (DATA= for CIFAR-10 or your images)
	$(PY) -m scripts.demo --image $(IMAGE) $(if $(DATA),--data $(DATA)) $(if $(EPOCHS),--epochs $(EPOCHS))

bench-serve: install ## Benchmark the server against a naive Flask+predict one; writes bench/results/serve.json
	$(PY) -m scripts.bench_serve

bench-train: install ## Accuracy by epoch and throughput vs the seed recipe on CIFAR-10 (DATA=); writes bench/results/train.json
	$(PY) -m scripts.bench_train $(if $(DATA),--data $(DATA))
