# sagevit: train and serve a ViT on SageMaker from one image. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# SDK=3: make train, tune, deploy, transform and predict through SageMaker SDK v3 (ModelTrainer,
# HyperparameterTuner, sagemaker.core resources and Transformer) from their own venv, made on
# first use; SDK v2 (Estimator) is the default.
SDK ?= 2
SDK3_VENV ?= .venv-sdk3
SDK_PY = $(if $(filter 3,$(SDK)),PYTHONPATH=src:.:$$PYTHONPATH $(SDK3_VENV)/bin/python,$(PY))
SDK_VENV = $(if $(filter 3,$(SDK)),$(SDK3_VENV)/.installed,install)
IMAGE ?= sagevit:latest
BASE_IMAGE ?= tensorflow/tensorflow:2.21.0-gpu
STANDIN_IMAGE ?= sagevit:standin
GPU_CHECK_IMAGE ?= sagevit:gpu-check
GPU_FLAGS := $(shell nvidia-smi -L >/dev/null 2>&1 && echo --gpus all)
LOCAL_DIR ?= build/local
DATA ?=
EPOCHS ?=
# TIME_BUDGET: seconds of training that the schedule spans and that end the run (train, train-local)
TIME_BUDGET ?=
PORT ?= 8080

# --- SageMaker (docs/sagemaker.md). Empty means discovered by the scripts/ they call.
# AWS_REGION: empty = your AWS config's region. The account always comes from STS.
AWS_REGION ?=
# push: ECR repository and tag; REGISTRY=host:port pushes anywhere else, skipping ECR.
REPOSITORY ?= sagevit
TAG ?= latest
REGISTRY ?=
# train: IMAGE_URI empty = ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY:TAG.
IMAGE_URI ?=
# ROLE: SageMaker execution role ARN (empty works only inside SageMaker itself).
ROLE ?=
# BUCKET: empty = sagemaker-REGION-ACCOUNT, created if missing.
BUCKET ?=
TRAIN_INSTANCE_TYPE ?= ml.g5.xlarge
TRAIN_INSTANCE_COUNT ?= 1
# HYPERPARAMETERS: any trainer flags as key=value pairs, e.g. "preset=seed batch_size=256".
HYPERPARAMETERS ?=
# PRETRAINED: the pretrained channel, one ViT weights file (docs/finetuning.md): an S3
# prefix for train, a folder for train-local; with e.g. HYPERPARAMETERS="preset=vit-b16".
PRETRAINED ?=
# SPOT=1: managed spot training, checkpoints to s3://BUCKET/sagevit/checkpoints/JOB.
SPOT ?=
# WAIT=1: stream the job's logs until it ends.
WAIT ?=
# make tune: NAME=LOW:HIGH[:log] or NAME=a,b ranges (default: scripts/sagemaker/tune.py), jobs, a parent tuner
RANGES ?=
MAX_JOBS ?= 8
PARALLEL_JOBS ?= 2
WARM_START ?=
# deploy: JOB empty = the newest completed sagevit-* job; MODEL_DATA=s3://.../model.tar.gz instead.
JOB ?=
MODEL_DATA ?=
ENDPOINT ?= sagevit
SERVE_INSTANCE_TYPE ?= ml.m5.xlarge
SERVE_INSTANCE_COUNT ?= 1
# make deploy: a serverless endpoint of this much memory, or an async one answering to this S3 prefix
SERVERLESS ?=
ASYNC ?=
# make transform: an S3 prefix of images, npy arrays or jsonlines records, and its kind
INPUT ?=
KIND ?= images
OUTPUT ?=
# predict: TEST_DATA is the npz `make data` wrote; URL=http://127.0.0.1:8080 evaluates serve-local.
DATA_DIR ?= build/data
TEST_DATA ?= $(DATA_DIR)/testing.npz
URL ?=
EVAL_DIR ?= build/evaluation
AWS_ARGS = $(if $(AWS_REGION),--region $(AWS_REGION)) $(if $(BUCKET),--bucket $(BUCKET))

.PHONY: help install test test-slow-machine test-fast lint format build build-standin image train-local serve-local demo gpu-check bench-serve bench-train bench-accuracy bench-decode bench-data bench-finetune
.PHONY: push data train tune deploy transform predict delete-endpoint clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $@

install: $(VENV)/.installed ## Create .venv and install the project with its dev tools

$(SDK3_VENV)/.installed: requirements-sdk3.txt
	$(PYTHON) -m venv $(SDK3_VENV)
	$(SDK3_VENV)/bin/pip install --quiet -r requirements-sdk3.txt
	touch $@

test: install ## Run every test, slow ones included (what CI runs)
	$(PY) -m pytest -m "slow or not slow" --durations=15

test-slow-machine: install ## make test with every core also busy (a busy loop each, at normal priority)
	bash scripts/local/with_busy_cores.sh $(MAKE) --no-print-directory test

test-fast: install ## Run the fast tests only
	$(PY) -m pytest

lint: install ## ruff check, ruff format --check, hadolint on both Dockerfiles, shellcheck
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint docker/Dockerfile docker/standin.Dockerfile
	$(VENV)/bin/shellcheck scripts/local/*.sh docker/*.sh .ci/run

format: install ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

build: ## Build the image on BASE_IMAGE, pulled if missing; on its stand-in if it cannot be pulled
	@base=$$(bash scripts/local/docker_up.sh --base $(BASE_IMAGE) | tail -n 1) && \
	echo "building $(IMAGE) on $$base" && \
	docker build --network host -f docker/Dockerfile --build-arg BASE_IMAGE=$$base -t $(IMAGE) .

build-standin: ## Build the image on the stand-in TensorFlow base, as CI does; prints the image
	@base=$$(bash scripts/local/docker_up.sh --standin | tail -n 1) && \
	docker build --network host -f docker/Dockerfile --build-arg BASE_IMAGE=$$base \
		-t $(STANDIN_IMAGE) . >&2 && \
	echo $(STANDIN_IMAGE)

# train-local, serve-local and demo run the image of the code as it is now: an existing
# IMAGE would be the code of its day (docker's layer cache makes an unchanged tree quick).
image: build

train-local: install image ## Train in the image with build/local/opt_ml as /opt/ml (DATA=, EPOCHS=, TIME_BUDGET=, PRETRAINED=, HYPERPARAMETERS=)
	$(PY) -m scripts.local.demo --image $(IMAGE) --train-only --workdir $(LOCAL_DIR) $(if $(DATA),--data $(DATA)) $(if $(EPOCHS),--epochs $(EPOCHS)) \
		$(if $(TIME_BUDGET),--hyperparameter time-budget=$(TIME_BUDGET)) \
		$(if $(PRETRAINED),--pretrained $(PRETRAINED)) $(foreach pair,$(HYPERPARAMETERS),--hyperparameter $(pair))

serve-local: image ## Serve the train-local model from the image on 127.0.0.1:8080 (PORT=)
	docker run --rm --network host $(GPU_FLAGS) -e SAGEMAKER_BIND_TO_PORT=$(PORT) \
		-v $(abspath $(LOCAL_DIR))/opt_ml/model:/opt/ml/model:ro $(IMAGE) serve

demo: install image ## Train and serve in the image, query it with curl (DATA= for CIFAR-10 or your images)
	$(PY) -m scripts.local.demo --image $(IMAGE) $(if $(DATA),--data $(DATA)) $(if $(EPOCHS),--epochs $(EPOCHS))

gpu-check: install ## On a GPU machine: build on the real base, train and serve with --gpus all, check both
	docker image inspect $(BASE_IMAGE) >/dev/null 2>&1 || docker pull $(BASE_IMAGE)
	docker build --network host -f docker/Dockerfile --build-arg BASE_IMAGE=$(BASE_IMAGE) -t $(GPU_CHECK_IMAGE) .
	$(PY) -m scripts.local.gpu_check --image $(GPU_CHECK_IMAGE)

bench-serve: install ## Benchmark the server against a naive Flask+predict one; writes bench/results/serve.json
	$(PY) -m scripts.bench.serve

bench-decode: install ## CPU time and memory of the costliest image bodies the decoder accepts; writes bench/results/decode.json
	$(PY) -m scripts.bench.decode

bench-data: install ## Input pipeline images/s per core by channel format (npz, folder, records) at 32 and 224, start-up for 1k and 100k images (DATA=); writes bench/results/data.json
	$(PY) -m scripts.bench.data $(if $(DATA),--data $(DATA))

bench-train: install ## Training speed: our loop vs the seed notebook's fit, alternating rounds (DATA=); writes bench/results/train.json
	$(PY) -m scripts.bench.train $(if $(DATA),--data $(DATA))

bench-accuracy: install ## Time to accuracy in seed-epochs: default, fast, v1, seed (DATA=, RUNS=); writes bench/results/accuracy.json, .png
	$(PY) -m scripts.bench.accuracy $(if $(DATA),--data $(DATA)) $(if $(RUNS),--runs $(RUNS))

bench-finetune: install ## ViT-Ti/16 fine-tuning at 224 on this CPU, weight conversion time, serving latency; writes bench/results/finetune.json
	$(PY) -m scripts.bench.finetune

push: install ## Push IMAGE to ECR REPOSITORY:TAG, creating the repository (REGISTRY=host:port for any other)
	$(PY) -m scripts.sagemaker.push --image $(IMAGE) --repository $(REPOSITORY) --tag $(TAG) \
		$(if $(REGISTRY),--registry $(REGISTRY)) $(if $(AWS_REGION),--region $(AWS_REGION))

data: install ## Prepare CIFAR-10 (DATA= for an archive/folder/npz; FORMAT=tfrecord SHARD_MB= for record shards) into DATA_DIR and upload it to S3
	$(PY) -m scripts.prepare_data --source $(or $(DATA),cifar10) --out $(DATA_DIR) --upload $(AWS_ARGS) \
		$(if $(FORMAT),--format $(FORMAT)) $(if $(SHARD_MB),--shard-mb $(SHARD_MB))

train: $(SDK_VENV) ## Launch a SageMaker training job (ROLE=, EPOCHS=, TIME_BUDGET=, HYPERPARAMETERS=, PRETRAINED=, SPOT=1, WAIT=1, SDK=3, INPUT_MODE=FastFile, DISTRIBUTION=sharded)
	$(SDK_PY) -m scripts.sagemaker.launch --sdk $(SDK) $(AWS_ARGS) --repository $(REPOSITORY) --tag $(TAG) \
		--instance-type $(TRAIN_INSTANCE_TYPE) --instance-count $(TRAIN_INSTANCE_COUNT) \
		$(if $(IMAGE_URI),--image-uri $(IMAGE_URI)) $(if $(ROLE),--role $(ROLE)) \
		$(if $(EPOCHS),--epochs $(EPOCHS)) $(foreach pair,$(HYPERPARAMETERS),--hyperparameter $(pair)) \
		$(if $(TIME_BUDGET),--hyperparameter time-budget=$(TIME_BUDGET)) \
		$(if $(PRETRAINED),--pretrained $(PRETRAINED)) $(if $(SPOT),--spot) $(if $(WAIT),--wait) \
		$(if $(INPUT_MODE),--input-mode $(INPUT_MODE)) $(if $(DISTRIBUTION),--distribution $(DISTRIBUTION))

tune: $(SDK_VENV) ## Launch a hyperparameter tuning job maximising val_accuracy (RANGES=, MAX_JOBS=, PARALLEL_JOBS=, WARM_START=, HYPERPARAMETERS=, WAIT=1, SDK=3)
	$(SDK_PY) -m scripts.sagemaker.tune --sdk $(SDK) $(AWS_ARGS) --repository $(REPOSITORY) --tag $(TAG) \
		--instance-type $(TRAIN_INSTANCE_TYPE) --max-jobs $(MAX_JOBS) --max-parallel-jobs $(PARALLEL_JOBS) \
		$(if $(IMAGE_URI),--image-uri $(IMAGE_URI)) $(if $(ROLE),--role $(ROLE)) $(if $(EPOCHS),--epochs $(EPOCHS)) \
		$(foreach r,$(RANGES),--range $(r)) $(foreach pair,$(HYPERPARAMETERS),--hyperparameter $(pair)) \
		$(if $(WARM_START),--warm-start $(WARM_START)) $(if $(WAIT),--wait)

deploy: $(SDK_VENV) ## Deploy the newest (or JOB=) training job's model to endpoint ENDPOINT (SERVERLESS=memory_mb or ASYNC=s3://output for those kinds; SDK=3)
	$(SDK_PY) -m scripts.sagemaker.deploy --sdk $(SDK) $(AWS_ARGS) --endpoint $(ENDPOINT) $(if $(JOB),--job $(JOB)) $(if $(ROLE),--role $(ROLE)) \
		$(if $(SERVERLESS),--serverless $(SERVERLESS),--instance-type $(SERVE_INSTANCE_TYPE) --instance-count $(SERVE_INSTANCE_COUNT)) \
		$(if $(ASYNC),--async-output $(ASYNC)) \
		$(if $(IMAGE_URI),--image-uri $(IMAGE_URI)) $(if $(MODEL_DATA),--model-data $(MODEL_DATA))

transform: $(SDK_VENV) ## Batch-transform the S3 prefix INPUT (KIND=images|npy|jsonlines) with the newest (or JOB=) model; WAIT=1 collects build/transform/predictions.csv (SDK=3)
	$(SDK_PY) -m scripts.sagemaker.transform --sdk $(SDK) $(AWS_ARGS) --input $(INPUT) --kind $(KIND) --instance-type $(SERVE_INSTANCE_TYPE) \
		$(if $(OUTPUT),--output $(OUTPUT)) $(if $(JOB),--job $(JOB)) $(if $(ROLE),--role $(ROLE)) \
		$(if $(IMAGE_URI),--image-uri $(IMAGE_URI)) $(if $(MODEL_DATA),--model-data $(MODEL_DATA)) $(if $(WAIT),--wait)

predict: $(SDK_VENV) ## Evaluate ENDPOINT (or URL=) on TEST_DATA: accuracy, confusion matrix PNG, per-class table (SDK=3)
	$(SDK_PY) -m scripts.sagemaker.evaluate --sdk $(SDK) --data $(TEST_DATA) --out $(EVAL_DIR) \
		$(if $(URL),--url $(URL),--endpoint $(ENDPOINT) $(if $(AWS_REGION),--region $(AWS_REGION)))

delete-endpoint: install ## Delete SageMaker endpoint ENDPOINT, its endpoint config and its model, in AWS
	$(PY) -m scripts.sagemaker.cleanup --endpoint $(ENDPOINT) $(if $(AWS_REGION),--region $(AWS_REGION))

# Local outputs only (see .gitignore); .venv and bench/results (measurements) stay.
clean: ## Remove local build outputs: build/, dist/ and Python caches (not the venvs, not bench/results)
	rm -rf build dist .pytest_cache .ruff_cache .hypothesis
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
