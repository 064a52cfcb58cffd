# The two commands a fresh machine needs: `make demo` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Keep DDS discovery on this machine unless the user says otherwise.
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST

.PHONY: venv demo test bench colcon clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-ros.txt requirements-test.txt setup.py setup.cfg package.xml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -r requirements-ros.txt -r requirements.txt -r requirements-test.txt
	$(BIN)/python -m pip install --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: venv
	$(BIN)/mbrl-ros demo --runs-dir runs

test: venv
	$(BIN)/python -m pytest

bench: venv
	$(BIN)/python -m pip install -r requirements-bench.txt
	$(BIN)/python bench/control.py

clean:
	rm -rf $(VENV) build install log *.egg-info .pytest_cache
