# The two commands a fresh machine needs (see README):
#   make run    sets everything up, then runs "I spilled the milk" in the simulator
#   make test   sets everything up, then runs the linter and the test suite (what CI runs)
VENV := .venv
PY := $(VENV)/bin/python
REQUEST ?= I spilled the milk
export MUJOCO_GL ?= egl

.PHONY: setup run test lint doctor

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $@

run: setup
	$(PY) -m agent run "$(REQUEST)"

test: setup lint
	AGENT_REQUIRE_ALL_TESTS=1 $(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy agent models drivers

doctor: setup
	$(PY) -m agent doctor
