# liteserve — every target creates what it needs (venvs, model files) itself.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
SAMVENV := .venv-sam
TRAINVENV := .venv-train
BIN := $(VENV)/bin
export AWS_DEFAULT_REGION ?= us-east-1
export AWS_REGION ?= $(AWS_DEFAULT_REGION)
export SAM_CLI_TELEMETRY := 0

MODEL_NAMES := digits digits-edge digits-cloud
MODEL_FILES := $(foreach m,$(MODEL_NAMES),layers/model/models/$(m)/model.tflite layers/model/models/$(m)/manifest.json)

.PHONY: help venv sam-venv train-venv model lint sam-check unit integration test demo up down status invoke-schedule logs bench load openapi clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.stamp: requirements/dev.txt layers/runtime/requirements.txt pyproject.toml edge/pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements/dev.txt -e . -e edge
	touch $@

$(SAMVENV)/.stamp: requirements/sam.txt
	test -x $(SAMVENV)/bin/python || $(PY) -m venv $(SAMVENV)
	$(SAMVENV)/bin/pip install -q -r requirements/sam.txt
	touch $@

$(TRAINVENV)/.stamp: requirements/train.txt
	test -x $(TRAINVENV)/bin/python || $(PY) -m venv $(TRAINVENV)
	$(TRAINVENV)/bin/pip install -q -r requirements/train.txt
	touch $@

venv: $(VENV)/.stamp ## dev/test venv (.venv)
sam-venv: $(SAMVENV)/.stamp ## SAM CLI venv (.venv-sam)
train-venv: $(TRAINVENV)/.stamp ## TensorFlow training venv (.venv-train)

# Model artifacts are committed; they are rebuilt only when missing or on `make model`.
$(MODEL_FILES):
	$(MAKE) model

model: train-venv ## (re)train and convert every model to int8 into layers/model
	$(TRAINVENV)/bin/python -m training --out layers/model/models

lint: venv ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

sam-check: venv sam-venv $(MODEL_FILES) ## sam validate --lint, cfn-lint (also on the translated template), sam build
	$(SAMVENV)/bin/sam validate --lint
	$(BIN)/cfn-lint template.yaml
	mkdir -p .aws-sam
	$(BIN)/python -m localcloud.sam_translate template.yaml > .aws-sam/translated.json
	$(BIN)/cfn-lint .aws-sam/translated.json
	PYTHON=$(abspath $(BIN)/python) $(SAMVENV)/bin/sam build
	$(BIN)/python layers/runtime/check_layer.py .aws-sam/build/RuntimeLayer
	$(BIN)/python -m localcloud.sam_translate --check-size .aws-sam/build

unit: venv $(MODEL_FILES) ## unit tests
	$(BIN)/python -m pytest tests/unit

integration: venv $(MODEL_FILES) ## integration tests on the local cloud (moto server over HTTP)
	$(BIN)/python -m pytest tests/integration

test: venv $(MODEL_FILES) lint sam-check ## everything CI runs
	$(BIN)/python -m pytest tests

up: venv $(MODEL_FILES) ## start the local cloud in the background
	$(BIN)/localcloud up

down: venv ## stop the local cloud
	$(BIN)/localcloud down

status: venv ## what the local cloud runs, queue depths
	$(BIN)/localcloud status

invoke-schedule: venv ## fire a schedule of the local cloud now: make invoke-schedule NAME=EvaluateFunction
	$(BIN)/localcloud fire-schedule $(NAME)

logs: venv ## follow every function's logs of the local cloud
	$(BIN)/localcloud logs -f

demo: venv $(MODEL_FILES) ## the end-to-end story on the embedded default
	$(BIN)/python -m localcloud.demo

bench: venv $(MODEL_FILES) ## run every benchmark in bench/ (writes bench/results.json)
	$(BIN)/python bench/run_all.py

load: venv $(MODEL_FILES) ## load test of the local HTTP API: 60 s at concurrency 16 (LOAD_SECONDS=20 for less)
	$(BIN)/python bench/load.py --seconds $(or $(LOAD_SECONDS),60)

openapi: venv ## regenerate openapi.json from the core's schemas
	PYTHONPATH=layers/shared/python LITESERVE_MODEL_ROOT=layers/model/models $(BIN)/python -m liteserve.openapi > openapi.json

clean: ## remove build output and local state (keeps venvs)
	rm -rf .aws-sam .localcloud
