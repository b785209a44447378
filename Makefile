# Two entry points: `make demo` and `make test`. Both create .venv on first use.
# `make test` deselects the tests marked `integration` (pyproject's addopts); `make test-integration` runs them.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sharenas-installed

.PHONY: demo test test-integration docs venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

test-integration: $(STAMP)
	$(PY) -m pytest -m 'integration and not slow and not gpu'

docs: $(STAMP)
	$(PY) -m pip install --quiet -e '.[docs]'
	$(VENV)/bin/mkdocs build --strict

demo: $(STAMP)
	$(VENV)/bin/sharenas demo

clean:
	rm -rf $(VENV) build dist site *.egg-info
