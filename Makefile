# Quick start: `make run` (set-up, then the main job) and `make test` (set-up, then the whole test suite).
# Both create .venv on first use and reinstall only when pyproject.toml or setup.py change.

PYTHON ?= python3
VENV ?= .venv
EXTRAS ?= ros,train,dev
# PyTorch: kept if .venv already has one. Otherwise a machine without an NVIDIA GPU takes the CPU build named by
# TORCH_SPEC (torch==2.13.0 is a CPU build on this project's build machines); elsewhere override, e.g.
#   make test TORCH_SPEC=torch TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_SPEC ?= $(if $(shell command -v nvidia-smi 2>/dev/null),torch>=2.3,torch==2.13.0)
TORCH_INDEX ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.pupper_ros-installed

.PHONY: run test setup bench clean
.DEFAULT_GOAL := run

setup: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml setup.py | $(BIN)/python
	@$(BIN)/python -c "import torch" 2>/dev/null || \
		$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	@touch $@

run: $(STAMP)
	$(BIN)/pupper-walk --backend sim --demo

test: $(STAMP)
	$(BIN)/ruff check pupper_ros training tests benchmarks launch
	$(BIN)/python -m pytest

bench: $(STAMP)
	@for script in benchmarks/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
