# tfpipe: `make demo` runs the main job, `make test` the test suite. Each first creates or
# refreshes the virtual environment in .venv (re-installed when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= .demo

.PHONY: venv demo test clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,examples]"
	touch $(STAMP)

demo: $(STAMP)
	rm -rf $(DEMO_DIR)
	TF_CPP_MIN_LOG_LEVEL=2 $(VENV)/bin/tfpipe run-local --pipeline-root $(DEMO_DIR)

test: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest -q

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
