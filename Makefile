# helixlab's two commands: `make lab` and `make test`. Everything else is for authors.
VENV := .venv
BIN := $(VENV)/bin
NOTEBOOK_DIRS := $(wildcard notebooks labs)
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
LAB_PORT ?= 8888

.PHONY: lab test test-fast test-pythons chaos bench bench-peers notebooks lint setup clean

## make lab: install the course (helixlab[lab]) into .venv, then open JupyterLab on the course, its landing notebook
## in view (another port: make lab LAB_PORT=8890)
LANDING := notebooks/00_start_here.ipynb
lab:
	@tools/setup.sh lab
	$(BIN)/jupyter lab --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/$(LANDING) \
		--ip=127.0.0.1 --port=$(LAB_PORT) $(ROOT_FLAG)

## make test: install everything (helixlab[test]; Chromium too, when root), then run every
## test and notebook, a file per xdist worker (a notebook's cells stay in order in one
## kernel; JOBS=0 runs them in this process, one after another); then the kernel, cells,
## gateway and transport tests again on the newest Python the machine has (PYTHON_TESTS)
JOBS ?= 3
test:
	@tools/setup.sh test --browser
	$(BIN)/python -m pytest tests $(NOTEBOOK_DIRS) $(NBVAL) $(if $(filter 0,$(JOBS)),,-n $(JOBS) --dist loadfile)
	tools/test_pythons.sh --newest $(PYTHON_TESTS)

## make test-fast: the unit tests only, no notebooks and no browser
test-fast:
	@tools/setup.sh test
	$(BIN)/python -m pytest tests -m "not browser" -x -q

## make chaos: the fleet's Jepsen-style chaos test, long (200 schedules; prints its seed;
## replay one with HELIX_CHAOS_SEED=N, change the count with HELIX_CHAOS_SCHEDULES=N)
HELIX_CHAOS_SCHEDULES ?= 200
chaos:
	@tools/setup.sh test
	HELIX_CHAOS_SCHEDULES=$(HELIX_CHAOS_SCHEDULES) $(BIN)/python -m pytest tests/fleet/test_chaos.py \
		-x -q -s -p no:cacheprovider -W ignore::pytest.PytestUnraisableExceptionWarning

## make test-pythons: the kernel, cells, gateway and transport tests on every Python >= 3.11
## pyenv has (each in .venv-pythons/VERSION with helixlab[test]); one summary line each
PYTHON_TESTS ?= tests/kernel/test_kernel.py tests/notebook/test_cells.py tests/gateway/test_gateway.py tests/gateway/test_transport.py
test-pythons:
	tools/test_pythons.sh $(PYTHON_TESTS)

## make bench: every benchmark, one table
bench:
	@tools/setup.sh test
	$(BIN)/python -m benchmarks

## make bench-peers: helixlab against LiteLLM's proxy and Portkey's gateway on the same
## upstream (not in make test); each peer goes into its own folder (.venv-peers, .peers/portkey),
## so their pins never touch .venv
PEERS := .venv-peers
PORTKEY := .peers/portkey
bench-peers:
	@tools/setup.sh test
	@PEERS=$(PEERS) PORTKEY_DIR=$(PORTKEY) tools/peers_setup.sh
	$(BIN)/python -m benchmarks.peers --litellm $(PEERS)/bin/litellm --portkey $(PORTKEY)

## make notebooks: re-execute the notebooks and labs in place, committing-ready outputs
notebooks:
	@tools/setup.sh test
	$(BIN)/python tools/run_notebooks.py $(NOTEBOOK_DIRS)

lint:
	@tools/setup.sh test
	$(BIN)/ruff check helixlab tests benchmarks tools
	$(BIN)/ruff format --check helixlab tests benchmarks tools

setup:
	@tools/setup.sh test --browser

clean:
	rm -rf $(VENV) $(PEERS) .peers .venv-pythons .pytest_cache .hypothesis .ruff_cache test-output
