# Quick start: `make run` (set-up, then the main job) and `make test` (set-up, then the whole test suite).
# Both create .venv on first use and reinstall only when pyproject.toml or setup.py change.
#   make run   installs the runtime with the ROS 2 wheels and PyBullet (extras ros,sim): what the demo needs, no torch
#   make test  installs everything (extras ros,train,dev,ray, and torch for training)

PYTHON ?= python3
VENV ?= .venv
RUN_EXTRAS ?= ros,sim
TEST_EXTRAS ?= ros,train,dev,ray
# PyTorch (make test only): kept if .venv already has one. Otherwise a machine without an NVIDIA GPU takes the CPU
# build named by TORCH_SPEC (torch==2.13.0 is a CPU build on this project's build machines); elsewhere override, e.g.
#   make test TORCH_SPEC=torch TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_SPEC ?= $(if $(shell command -v nvidia-smi 2>/dev/null),torch>=2.3,torch==2.13.0)
TORCH_INDEX ?=

BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.pupper_ros-run-installed
TEST_STAMP := $(VENV)/.pupper_ros-test-installed
# The test stand-in of ros2_control's controller_manager_msgs (not on PyPI), built with colcon into the venv itself:
# the ROS wheels put the venv's lib/ on the library path, so its type support loads like theirs.
CM_MSGS := tests/controller_manager_msgs
CM_MSGS_STAMP := $(VENV)/.controller_manager_msgs-built

.PHONY: run test check setup setup-run bench clean
.DEFAULT_GOAL := run

setup: $(TEST_STAMP)
setup-run: $(RUN_STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[$(RUN_EXTRAS)]"
	@touch $@

# The test set-up is a superset of the run set-up, so it stamps both.
$(TEST_STAMP): pyproject.toml setup.py | $(BIN)/python
	@$(BIN)/python -c "import torch" 2>/dev/null || \
		$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e ".[$(TEST_EXTRAS)]"
	@touch $@ $(RUN_STAMP)

$(CM_MSGS_STAMP): $(TEST_STAMP) $(wildcard $(CM_MSGS)/* $(CM_MSGS)/*/*)
	rm -rf $(VENV)/cm_msgs_build
	cd $(CM_MSGS) && CMAKE_PREFIX_PATH=$(abspath $(VENV)) AMENT_PREFIX_PATH=$(abspath $(VENV)) PATH=$(abspath $(BIN)):$$PATH \
		$(abspath $(BIN))/colcon --log-base $(abspath $(VENV))/cm_msgs_build/log build --base-paths . \
		--build-base $(abspath $(VENV))/cm_msgs_build --install-base $(abspath $(VENV)) --merge-install \
		--event-handlers console_direct- --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE=$(abspath $(BIN))/python \
		> $(abspath $(VENV))/cm_msgs_build.log 2>&1 || (tail -40 $(abspath $(VENV))/cm_msgs_build.log; exit 1)
	@touch $@

run: $(RUN_STAMP)
	$(BIN)/pupper-walk --backend sim --demo

# The whole suite, one pytest-xdist worker per core, each test file kept on one worker (its session fixtures, such as
# the installs test_install.py builds, are built once); tests/conftest.py gives each worker its own ROS 2 domain.
# A worker that crashes fails the run instead of being replaced: under --dist loadfile a replaced worker can leave
# the controller waiting forever (pytest-xdist issue 784; seen here 2026-12-07 after a segfault in a ROS teardown).
test: $(TEST_STAMP) $(CM_MSGS_STAMP)
	$(BIN)/ruff check pupper_ros training tests benchmarks launch
	$(BIN)/python -m pytest -n auto --dist loadfile --max-worker-restart=0

# The fast lane: lint, then every test that starts no process, builds nothing and trains nothing (marker "slow"
# is the rest; tests/conftest.py fails a fast test that starts a process).
check: $(TEST_STAMP) $(CM_MSGS_STAMP)
	$(BIN)/ruff check pupper_ros training tests benchmarks launch
	PUPPER_FAST_LANE=1 $(BIN)/python -m pytest -m "not slow"

bench: $(TEST_STAMP) $(CM_MSGS_STAMP)
	@for script in benchmarks/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
