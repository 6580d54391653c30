# Two entry points on a fresh clone:
#   make run    set up .venv and run the workflow on the embedded default config
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint setup clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: it takes the CPU build; an unpinned torch pulls CUDA (GBs).
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

# benchmarks/run.json: the run's wall and CPU time, for tools/profile-run.py.
run: $(STAMP)
	$(BIN)/python tools/profile-run.py --record . -- $(BIN)/snakemake

# pytest exits 5 when it collects no test; that is a failure of the suite here too.
# The SLURM test needs a cluster: tools/local-slurm.sh starts a local one when run
# as root on Debian (CI), and the test is skipped otherwise.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakemake --lint
	tools/local-slurm.sh ensure
	$(BIN)/python -m pytest -q --durations=15

# The fast tier for iterating: lint and every test but the end-to-end Snakemake runs
# (marker e2e) and the SLURM test; `make test` (CI) runs everything.
test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakemake --lint
	$(BIN)/python -m pytest -q --durations=10 -m "not e2e and not slurm"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakemake --lint

clean:
	rm -rf results logs benchmarks .snakemake
