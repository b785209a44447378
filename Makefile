# Two entry points: `make demo` and `make test`. Both create .venv on first use.
# `make test-integration` runs the end-to-end checks `make test` leaves out (several minutes each).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sharenas-installed

.PHONY: demo test test-integration venv clean

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
	$(PY) -m pytest -m integration

demo: $(STAMP)
	$(VENV)/bin/sharenas demo

clean:
	rm -rf $(VENV) build *.egg-info
