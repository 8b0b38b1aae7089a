# Every target sets up .venv first (idempotent: a second run installs nothing).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.alstudy-installed
EXTRAS ?= notebooks,test,dask,text,lab
# JupyterLab refuses to run as root without --allow-root (containers, CI machines)
LAB_FLAGS := --no-browser $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: setup data study test lab figures

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# the CPU build of torch first, so nothing else can pull a CUDA build
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	@touch $@

data:
	@bash scripts/install-data.sh

setup: $(STAMP) data

study: setup  ## the main job: quickstart study on the embedded MNIST digits -> results/quickstart/
	$(BIN)/alstudy notebook quickstart

test: setup  ## the whole test suite, notebooks included
	$(BIN)/python -m pytest

lab: setup  ## JupyterLab on the project's environment (installed by setup; as root too)
	$(BIN)/jupyter lab $(LAB_FLAGS) notebooks/
