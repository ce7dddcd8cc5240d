# liteserve — every target creates what it needs (venvs, model files) itself.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
SAMVENV := .venv-sam
TRAINVENV := .venv-train
LINTVENV := .venv-lint
UVVENV := .venv-uv
UV := $(UVVENV)/bin/uv
BIN := $(VENV)/bin
export AWS_DEFAULT_REGION ?= us-east-1
export AWS_REGION ?= $(AWS_DEFAULT_REGION)
export SAM_CLI_TELEMETRY := 0

MODEL_NAMES := digits digits-edge digits-cloud
MODEL_FILES := $(foreach m,$(MODEL_NAMES),layers/model/models/$(m)/model.tflite layers/model/models/$(m)/manifest.json)

.PHONY: package-model promotion training-source help venv sam-venv lint-venv train-venv model lint sam-check unit integration test demo up down status invoke-schedule logs bench projection load openapi retrain-interval clean lock

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

# Every environment installs from a hashed lock (requirements/*.txt, layers/runtime/requirements.txt) with uv, which
# itself comes from a hashed lock into .venv-uv via the interpreter's own pip: nothing global is assumed but $(PY).
# `uv pip sync` makes a venv exactly its lock (it removes what the lock does not list) and checks every file's hash.
$(UV): requirements/uv.txt
	test -x $(UVVENV)/bin/python || $(PY) -m venv $(UVVENV)
	$(UVVENV)/bin/pip install -q --disable-pip-version-check --require-hashes -r requirements/uv.txt
	touch $@

SYNC = $(UV) pip sync --quiet --require-hashes --python
define make-venv
	test -x $(1)/bin/python || $(UV) venv --quiet --no-python-downloads --python $(PY) $(1)
endef

# The editable installs (-e . -e edge) build with the lock's setuptools (no build isolation) and add no dependencies.
$(VENV)/.stamp: requirements/dev.txt pyproject.toml edge/pyproject.toml | $(UV)
	$(call make-venv,$(VENV))
	$(SYNC) $(BIN)/python requirements/dev.txt
	$(UV) pip install --quiet --python $(BIN)/python --no-deps --no-build-isolation -e . -e edge
	touch $@

$(SAMVENV)/.stamp: requirements/sam.txt | $(UV)
	$(call make-venv,$(SAMVENV))
	$(SYNC) $(SAMVENV)/bin/python requirements/sam.txt
	touch $@

$(LINTVENV)/.stamp: requirements/lint.txt | $(UV)
	$(call make-venv,$(LINTVENV))
	$(SYNC) $(LINTVENV)/bin/python requirements/lint.txt
	touch $@

# TensorFlow (~1.8 GB): only the targets that train, package or run the retraining build depend on it.
$(TRAINVENV)/.stamp: requirements/train.txt | $(UV)
	$(call make-venv,$(TRAINVENV))
	$(SYNC) $(TRAINVENV)/bin/python requirements/train.txt
	touch $@

# Locks for Python 3.11 on Linux x86_64 (CI, the retraining build); the layer's for Lambda (manylinux2014 wheels only,
# as layers/runtime/Makefile installs them). Each lists every distribution's hashes of the pinned versions.
LOCK = $(UV) pip compile --quiet --generate-hashes --python-version 3.11 --custom-compile-command "make lock"
lock: $(UV) ## re-resolve every lock from its .in file (after editing requirements/*.in or layers/runtime/requirements.in)
	$(LOCK) --python-platform x86_64-manylinux_2_17 --only-binary :all: \
	  layers/runtime/requirements.in -o layers/runtime/requirements.txt
	for env in uv dev sam lint train; do \
	  $(LOCK) --python-platform x86_64-manylinux_2_28 requirements/$$env.in -o requirements/$$env.txt || exit 1; done

venv: $(VENV)/.stamp ## dev/test venv (.venv)
sam-venv: $(SAMVENV)/.stamp ## SAM CLI venv (.venv-sam)
train-venv: $(TRAINVENV)/.stamp ## TensorFlow training venv (.venv-train)
lint-venv: $(LINTVENV)/.stamp ## checkov venv (.venv-lint)

# Model artifacts are committed; they are rebuilt only when missing or on `make model`.
$(MODEL_FILES):
	$(MAKE) model

model: train-venv ## (re)train and convert every model to int8 into layers/model
	PYTHONPATH=.:layers/shared/python $(TRAINVENV)/bin/python -m training --out layers/model/models

# Packaging runs in .venv-train (TensorFlow converts SavedModel / .keras sources); liteserve_dev and the shared
# package come from the source tree.
package-model: train-venv ## package your model: make package-model ARGS="SOURCE --data FILE --name NAME [...]"
	PYTHONPATH=.:layers/shared/python $(TRAINVENV)/bin/python -m liteserve_dev package $(ARGS)

lint: venv ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The template lists AWS::LanguageExtensions first; localcloud/language_extensions.py does its part (parameter-only !If)
# before the offline SAM translation, once per ApiAuth choice (W8001: the conditions it resolved look unused).
JWT_PARAMS := -p ApiAuth=JWT -p JwtIssuer=https://issuer.example.com -p JwtAudience=liteserve
sam-check: venv sam-venv lint-venv $(MODEL_FILES) ## sam validate --lint, cfn-lint (+serverless rules; translated IAM and JWT), checkov, sam build
	$(SAMVENV)/bin/sam validate --lint
	$(BIN)/cfn-lint template.yaml -a cfn_lint_serverless.rules
	mkdir -p .aws-sam
	$(BIN)/python -m localcloud.language_extensions template.yaml -p ApiAuth=IAM > .aws-sam/expanded-iam.json
	$(BIN)/python -m localcloud.language_extensions template.yaml $(JWT_PARAMS) > .aws-sam/expanded-jwt.json
	$(BIN)/python -m localcloud.sam_translate .aws-sam/expanded-iam.json > .aws-sam/translated.json
	$(BIN)/python -m localcloud.sam_translate .aws-sam/expanded-jwt.json > .aws-sam/translated-jwt.json
	$(BIN)/cfn-lint --ignore-checks W8001 -- .aws-sam/translated.json .aws-sam/translated-jwt.json
	$(LINTVENV)/bin/checkov --config-file .checkov.yaml -f template.yaml
	PYTHON=$(abspath $(BIN)/python) $(SAMVENV)/bin/sam build
	$(BIN)/python layers/runtime/check_layer.py .aws-sam/build/RuntimeLayer
	$(BIN)/python -m localcloud.sam_translate --check-size .aws-sam/build

unit: venv $(MODEL_FILES) ## unit tests
	$(BIN)/python -m pytest tests/unit

integration: venv train-venv $(MODEL_FILES) ## integration tests on the local cloud (moto server over HTTP)
	$(BIN)/python -m pytest tests/integration

# train-venv: the retraining build (a CodeBuild project of the template) runs locally in it.
test: venv train-venv $(MODEL_FILES) lint sam-check ## everything CI runs
	$(BIN)/python -m pytest tests

# Serving needs no TensorFlow: a retraining build creates .venv-train if missing, and its buildspec's install phase
# fills it from requirements/train.txt, as CodeBuild would (minutes, once).
up: venv $(MODEL_FILES) ## start the local cloud in the background (retraining builds run in .venv-train)
	LOCALCLOUD_BUILD_VENV=$(abspath $(TRAINVENV)) $(BIN)/localcloud up

down: venv ## stop the local cloud
	$(BIN)/localcloud down

status: venv ## what the local cloud runs, queue depths
	$(BIN)/localcloud status

invoke-schedule: venv ## fire a schedule of the local cloud now: make invoke-schedule NAME=EvaluateFunction
	$(BIN)/localcloud fire-schedule $(NAME)

logs: venv ## follow every function's logs of the local cloud
	$(BIN)/localcloud logs -f

demo: venv train-venv $(MODEL_FILES) ## the end-to-end story on the embedded default
	PYTHONPATH=layers/shared/python $(BIN)/python -m liteserve_dev.demo

# Micro-benchmarks run in BENCH_PROCESSES fresh processes (default 5) and report medians with min/max; the cold start
# builds the runtime layer into bench/.cache once when there is no `sam build` output; packaging runs in .venv-train.
bench: venv train-venv $(MODEL_FILES) ## run every benchmark in bench/: bench/results.json + the table bench/results.md (printed)
	PYTHONPATH=layers/shared/python $(BIN)/python -m bench.run_all

projection: venv $(MODEL_FILES) ## AWS wall time and cost of 10 M/100 M/1 B rows (PROJECTION_ARGS="--concurrency 100")
	PYTHONPATH=layers/shared/python $(BIN)/python -m bench.projection --table $(PROJECTION_ARGS)

load: venv $(MODEL_FILES) ## load test of the local HTTP API: 60 s at concurrency 16 (LOAD_SECONDS=20 for less)
	PYTHONPATH=layers/shared/python $(BIN)/python -m bench.load --seconds $(or $(LOAD_SECONDS),60)

openapi: venv ## regenerate openapi.json from the core's schemas
	PYTHONPATH=layers/shared/python LITESERVE_MODEL_ROOT=layers/model/models $(BIN)/python -m liteserve.openapi > openapi.json

retrain-interval: train-venv ## retraining interval on a 30-day drift scenario (INTERVAL_ARGS="--data DIR --cutoff +7d ...")
	PYTHONPATH=.:layers/shared/python $(TRAINVENV)/bin/python -m training.interval \
	  $(or $(INTERVAL_ARGS),--generate --days 30 --drift-start 10 --cutoff +7d)

promotion: venv ## promotion commands on the running local cloud: make promotion ARGS="status --model digits"
	$(BIN)/localcloud exec EvaluateFunction -- $(BIN)/python -m liteserve.promotion $(ARGS)

training-source: train-venv ## after `sam deploy`: upload the retraining build's source (STACK=liteserve-dev)
	$(TRAINVENV)/bin/python -m training.source --bucket $$($(TRAINVENV)/bin/python -c "import boto3; \
	  print('$(or $(STACK),liteserve-dev)-data-' + boto3.client('sts').get_caller_identity()['Account'])")

clean: ## stop the local cloud; remove the venvs, build output, local-cloud state, caches (committed models stay)
	if [ -x $(BIN)/localcloud ]; then $(BIN)/localcloud down >/dev/null 2>&1 || true; fi
	rm -rf $(VENV) $(SAMVENV) $(LINTVENV) $(TRAINVENV) $(UVVENV) .aws-sam .localcloud bench/.cache \
	  .pytest_cache .ruff_cache .hypothesis *.egg-info edge/*.egg-info
