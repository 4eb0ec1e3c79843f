# trackd — two commands matter on a fresh machine: `make up` and `make test`.
PYTHON ?= python3
INGEST_REPLICAS ?= 1
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# the framework integrations' tests: PyTorch, Lightning, Transformers, Keras, XGBoost, LightGBM
FRAMEWORKS_VENV  := .venv-frameworks
FRAMEWORKS_STAMP := $(FRAMEWORKS_VENV)/.installed

.PHONY: up test browser screenshots unit integration protos envoy lint typecheck bench-ingest bench-artifacts bench-query bench-hpo bench-hpo-quality bench-web bench-mlflow-compat clean test-frameworks

$(PY):
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "trackd needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)

# uv installs what pip would (the same resolution from PyPI) in about a minute instead of several
$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet uv
	$(VENV)/bin/uv pip install --quiet --python $(PY) -e '.[server,dev]'
	touch $(STAMP)

## up: the whole suite on the embedded stack, in the foreground (Ctrl-C stops everything)
up: $(STAMP)
	TRACKD_INGEST_REPLICAS=$(INGEST_REPLICAS) $(VENV)/bin/trackd up

## test: the whole test suite: unit, integration and fault drills on the real stack, and the UI in headless Chromium; then test-frameworks.
## Two pytest sessions at once, each with its own stack (scripts/run_tests.py): much of the suite waits on timeouts
test: $(STAMP) browser
	$(PY) scripts/run_tests.py
	$(MAKE) test-frameworks

## test-frameworks: trackd.integrations trained for real (tests/frameworks) in .venv-frameworks: the frameworks pinned in
## tests/frameworks/requirements.txt, installed once, over .venv's packages and binaries (a .pth and PATH add them: no second copy of the server)
test-frameworks: $(FRAMEWORKS_STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(FRAMEWORKS_VENV)/bin/python -m pytest -q --durations=10 tests/frameworks

$(FRAMEWORKS_STAMP): tests/frameworks/requirements.txt | $(STAMP)
	rm -rf $(FRAMEWORKS_VENV)
	$(PY) -m venv $(FRAMEWORKS_VENV)
	$(PY) -c 'import sysconfig; print("import site; site.addsitedir(%r)" % sysconfig.get_paths()["purelib"])' \
		> "$$($(FRAMEWORKS_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/trackd-venv.pth"
	$(VENV)/bin/uv pip install --quiet --python $(FRAMEWORKS_VENV)/bin/python --no-deps -r tests/frameworks/requirements.txt
	touch $(FRAMEWORKS_STAMP)

## browser: the headless Chromium the UI tests drive (Debian's chromium-headless-shell, via apt as root)
browser:
	@scripts/ensure_browser.sh

## screenshots: run the UI tests and keep their screenshots in docs/images (shown in the README)
screenshots: $(STAMP) browser
	TRACKD_SCREENSHOT_DIR=docs/images $(PY) -m pytest -q tests/ui

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

integration: $(STAMP)
	$(PY) -m pytest -q tests/integration

## protos: regenerate libs/trackd_api from protos/ (committed; a test fails when stale)
protos: $(STAMP)
	$(PY) scripts/gen_protos.py

## envoy: regenerate the three Envoy configs in deploy/ from the route table in scripts/gen_envoy.py (committed; a test fails when stale)
envoy:
	$(PYTHON) scripts/gen_envoy.py

## lint: buf lint (STANDARD rules) on the protos, ruff on the code, mypy strict on libs and services
lint: $(STAMP)
	npx --yes @bufbuild/buf lint
	$(VENV)/bin/ruff check libs services tests bench scripts
	$(VENV)/bin/mypy

## typecheck: mypy strict alone (the files pyproject.toml's [tool.mypy] names: libs/trackd_platform, libs/trackd, services)
typecheck: $(STAMP)
	$(VENV)/bin/mypy

## bench-ingest: trackd vs an MLflow server on the same PostgreSQL (ARGS="--seconds 10")
bench-ingest: $(STAMP)
	$(PY) bench/ingest.py $(ARGS)

## bench-artifacts: upload/download MB/s, trackd SDK vs direct S3 vs an MLflow artifact proxy (ARGS="--size-mb 256")
bench-artifacts: $(STAMP)
	$(PY) bench/artifacts.py $(ARGS)

## bench-query: metric history and run search, trackd vs an MLflow server on the same PostgreSQL (ARGS="--runs 20000")
bench-query: $(STAMP)
	$(PY) bench/query.py $(ARGS)

## bench-hpo: HPO ask+tell overhead and 32 concurrent workers, trackd vs Optuna RDB storage on the same PostgreSQL (ARGS="--trials 200 --workers 8")
bench-hpo: $(STAMP)
	$(PY) bench/hpo.py $(ARGS)

## bench-hpo-quality: TPE best values (Branin, Hartmann-6, Rosenbrock-10) and ASHA pruning, trackd vs Optuna in-process (ARGS="--seeds 3")
bench-hpo-quality: $(STAMP)
	$(PY) bench/hpo_quality.py $(ARGS)

## bench-web: the web UI (runs table of 100,000 runs, chart data, a 200-chart run page in headless Chromium, 1,000 live viewers), MLflow beside it where they compare (ARGS="--runs 20000 --viewers 200")
bench-web: $(STAMP)
	$(PY) bench/web.py $(ARGS)

## bench-mlflow-compat: the same MLflow client code (log_batch×1000, search_runs over 100,000 runs) against an MLflow server and trackd's MLflow API, same PostgreSQL (ARGS="--runs 20000 --seconds 10")
bench-mlflow-compat: $(STAMP)
	$(PY) bench/mlflow_compat.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
