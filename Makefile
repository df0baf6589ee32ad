# sagevit: train and serve a ViT on SageMaker from one image. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
IMAGE ?= sagevit:latest
BASE_IMAGE ?= tensorflow/tensorflow:2.21.0-gpu
LOCAL_DIR ?= build/local
DATA ?=
EPOCHS ?=
PORT ?= 8080

.PHONY: help install test test-fast lint format build train-local serve-local demo

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

lint: install ## ruff check, ruff format --check, hadolint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint docker/Dockerfile

format: install ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

build: ## Build the image (IMAGE=, BASE_IMAGE= override the tag and base)
	docker build --network host -f docker/Dockerfile --build-arg BASE_IMAGE=$(BASE_IMAGE) -t $(IMAGE) .

train-local: install ## Train through the SageMaker toolkit here, /opt/ml in build/local (DATA=, EPOCHS=)
	$(PY) -m scripts.demo --train-only --workdir $(LOCAL_DIR) $(if $(DATA),--data $(DATA)) $(if $(EPOCHS),--epochs $(EPOCHS))

serve-local: install ## Serve the train-local model with gunicorn on 127.0.0.1:8080 (PORT=)
	SM_MODEL_DIR=$(LOCAL_DIR)/opt_ml/model SAGEMAKER_BIND_TO_PORT=$(PORT) SAGEVIT_BIND_HOST=127.0.0.1 $(VENV)/bin/serve

demo: install ## Train, serve and query a model end to end (DATA= for CIFAR-10 or your images)
	$(PY) -m scripts.demo $(if $(DATA),--data $(DATA)) $(if $(EPOCHS),--epochs $(EPOCHS))
