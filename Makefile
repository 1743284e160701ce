# The two commands a fresh machine needs:
#   make run    installs hpcml into .venv and runs the main job (diabetes bootstrap, local backend)
#   make test   installs every real component (R, Open MPI, Slurm, Java deps, Python extras) and runs all tests
VENV   ?= .venv
PYTHON ?= $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: run install-core install-system install test test-fast test-python test-r bench clean

run: install-core
	$(VENV)/bin/hpcml run docs/examples/bootstrap.yaml --overwrite

install-core:
	bash scripts/install_python.sh core

install-system:
	bash scripts/install_system.sh

install: install-system
	bash scripts/install_python.sh all
	R CMD INSTALL --no-test-load R >/dev/null

test: install test-python test-r

test-python:
	$(PYTHON) -m pytest $(PYTEST_ARGS)

# Reinstalls the R package first so the tests see the sources in R/ (a few seconds).
test-r:
	R CMD INSTALL --no-test-load R >/dev/null
	RETICULATE_PYTHON=$(abspath $(PYTHON)) Rscript -e 'testthat::test_dir("R/tests/testthat", stop_on_failure = TRUE)'

# The fast subset: no real services, no long runs.
test-fast:
	$(PYTHON) -m pytest -m "not slow" $(PYTEST_ARGS)

bench:
	$(PYTHON) scripts/bench_core.py

clean:
	rm -rf runs .pytest_cache
