# Two entry points on a fresh clone:
#   make run    set up .venv and run the workflow on the embedded default config
#   make test   set up .venv and run the test suite's first tier (CI also runs make test-slow)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-slow test-fast lint setup clean

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

# Two tiers, both run by CI (.ci/run): `make test` is lint, the unit tests and the tiny
# six-task run with its staleness tests; `make test-slow` is the determinism rerun, the
# shipped-θ0 rerun, the text DAG at scale, the merge methods' workflow and the SLURM test.
# pytest exits 5 when it collects no test; that is a failure of the suite here too.
test: $(STAMP)
	tools/ensure-chromium.sh
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/snakemake --lint
	$(BIN)/python -m pytest -q --durations=15 -m "not slow"

# The SLURM test needs a cluster: tools/local-slurm.sh starts a local one when run
# as root on Debian (CI), and the test is skipped otherwise.
test-slow: $(STAMP)
	tools/local-slurm.sh ensure
	$(BIN)/python -m pytest -q --durations=15 -m "slow"

# For iterating: lint and every test but the end-to-end Snakemake runs (marker e2e).
test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakemake --lint
	$(BIN)/python -m pytest -q --durations=10 -m "not e2e and not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakemake --lint

clean:
	rm -rf results logs benchmarks .snakemake
