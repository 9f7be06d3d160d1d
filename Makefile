# tfpipe: `make demo` runs the main job, `make test` the test suite. Each first creates or
# refreshes the virtual environment in .venv (re-installed when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= .demo

.PHONY: venv demo test bench bench-quick clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,examples,bench]"
	touch $(STAMP)

demo: $(STAMP)
	rm -rf $(DEMO_DIR)
	TF_CPP_MIN_LOG_LEVEL=2 $(VENV)/bin/tfpipe run-local --pipeline-root $(DEMO_DIR) --thresholds '{"accuracy": ">= 0.9"}'

test: $(STAMP)
	scripts/ensure-chromium.sh
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest -q

# Benchmarks (scripts, not tests): ratios against baselines measured in the same run, written to
# bench/results/latest.{json,md,png}. Orbit is installed on demand into bench/.orbit-pkgs.
bench-quick: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m bench.run --quick

bench: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m bench.run

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
