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

# The study's units run in two processes of one thread each (the notebook and a helper worker
# share the run folder; a unit in flight is locked, so none runs twice). FRESH=1 recomputes every
# unit into a new scratch folder instead of reusing finished units.
STUDY_OUT := $(if $(FRESH),-p results_dir results/_scratch/study-$(shell date +%Y%m%d-%H%M%S) -p reuse_units false)
study: setup  ## the main job: quickstart study on the embedded MNIST digits -> results/quickstart/
	@$(BIN)/alstudy run params/quickstart.study.yaml $(STUDY_OUT) -p progress false >/dev/null 2>&1 & \
	$(BIN)/alstudy notebook quickstart -f params/quickstart.study.yaml $(STUDY_OUT); status=$$?; wait; exit $$status

test: setup  ## the whole test suite, notebooks included
	$(BIN)/python -m pytest

lab: setup  ## JupyterLab on the project's environment (installed by setup; as root too)
	$(BIN)/jupyter lab $(LAB_FLAGS) notebooks/
