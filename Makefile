# tfpipe: `make demo` runs the main job, `make test` the test suite, `make check` lint and the fast tests. Each first
# creates or refreshes the virtual environment in .venv (re-installed when pyproject.toml changes).
# `make image` builds the project image (Dockerfile) with a Docker engine; it needs no .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= .demo
# The image `make image` builds, and its build arguments (empty: the Dockerfile's defaults, the GPU build).
# The tag is the local default the packaged component specs name (tfpipe.components.kfp_components.LOCAL_IMAGE).
IMAGE ?= localhost/tfpipe:0.1.0
BASE_IMAGE ?=
TFPIPE_EXTRAS ?=
# The classic builder where the docker client has no BuildKit plugin (the Dockerfile needs nothing more).
DOCKER_BUILDKIT ?= $(shell docker buildx version >/dev/null 2>&1 && echo 1 || echo 0)

# Test processes for `make test` (pytest-xdist's -n: `auto` is three per core, see tests/conftest.py).
TEST_WORKERS ?= auto

.PHONY: venv demo test check test-tf220 image bench bench-quick clean

# What .venv pins beyond pyproject.toml. ml_dtypes 0.7.0 (TensorFlow allows >=0.5.1,<1) registers its numpy loops
# in quadratic time: importing it takes ~0.65 s of CPU (0.6.0: 0.01 s), and a 20-step digits train process
# ~8.5 CPU-s instead of ~7.4 (README, "Quick start"). The suite starts a few hundred TensorFlow processes, so .venv takes
# 0.6; users' environments resolve freely, and the image and .venv220 get 0.7, with the container and TF 2.20 tests.
VENV_PINS := "ml_dtypes<0.7"

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,examples,bench]" $(VENV_PINS)
	touch $(STAMP)

demo: $(STAMP)
	rm -rf $(DEMO_DIR)
	TF_CPP_MIN_LOG_LEVEL=2 $(VENV)/bin/tfpipe run-local --pipeline-root $(DEMO_DIR) --thresholds '{"accuracy": ">= 0.9"}'

# Every test, spread over the cores; each test module stays on one worker (--dist loadfile), so the run directories
# and local pipeline runs a module shares are made once; the longest modules start first, in the order
# tests/conftest.py gives (--no-loadscope-reorder). Ends with the 25 slowest tests.
test: $(STAMP)
	scripts/ensure-chromium.sh
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25

# Lint (ruff, configured in pyproject.toml), then the drift, docs and unit tests: every test not marked `slow`
# (tests/conftest.py says which those are).
check: $(STAMP)
	$(VENV)/bin/ruff check .
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest -q -m "not slow" -n $(TEST_WORKERS) --dist loadfile --durations=10

# The TensorFlow 2.20 line, the one tf-models-official 2.20 requires: a second venv with the `model-garden` extra,
# and the tests of what depends on the TensorFlow line (`make test` runs the whole suite on 2.21): TF internals,
# controller_core, the components and tasks, Model Garden, packaging. pip is upgraded first: the one Python 3.11
# bundles (23.2) cannot resolve tf-models-official's dependencies.
VENV220 := .venv220
STAMP220 := $(VENV220)/.installed
TF220_TESTS := tests/test_tf_internals.py tests/test_private_internals.py tests/test_package.py \
  tests/test_controller.py tests/test_standard_runner.py tests/test_actions.py tests/test_utils.py \
  tests/test_orbit_compat.py tests/test_tasks.py tests/test_components.py tests/test_model_garden.py \
  tests/test_packaging.py tests/test_orbit_suite.py

$(STAMP220): pyproject.toml
	test -x $(VENV220)/bin/python || $(PYTHON) -m venv $(VENV220)
	$(VENV220)/bin/python -m pip install --quiet --upgrade pip
	$(VENV220)/bin/python -m pip install --quiet -e ".[test,examples,model-garden]" "tensorflow==2.20.*"
	touch $(STAMP220)

test-tf220: $(STAMP220)
	TF_CPP_MIN_LOG_LEVEL=2 $(VENV220)/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=10 $(TF220_TESTS)

# Host networking for the build: it works with an engine that has no bridge (CI) as well as with one that has.
image:
	DOCKER_BUILDKIT=$(DOCKER_BUILDKIT) docker build --network host \
	  $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) \
	  $(if $(TFPIPE_EXTRAS),--build-arg TFPIPE_EXTRAS=$(TFPIPE_EXTRAS)) \
	  -t $(IMAGE) .

# Benchmarks (scripts, not tests): ratios against baselines measured in the same run, written to
# bench/results/latest.{json,md,png}. Orbit is installed on demand into bench/.orbit-pkgs.
bench-quick: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m bench.run --quick

bench: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m bench.run

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
