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

# R CMD check of the package (code, Rd docs, examples) with its testthat tests run against
# this checkout's Python environment; the package is installed first for interactive use.
# First: R/NAMESPACE and R/man must be exactly what roxygen2 writes from the R sources.
RCHECK := build/rcheck
test-r:
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/r/test_r_roxygen.py
	R CMD INSTALL --no-test-load R >/dev/null
	rm -rf $(RCHECK) && mkdir -p $(RCHECK)
	cd $(RCHECK) && R CMD build --no-build-vignettes $(abspath R) >/dev/null
	cd $(RCHECK) && RETICULATE_PYTHON=$(abspath $(PYTHON)) _R_CHECK_FORCE_SUGGESTS_=false \
	  _R_CHECK_SYSTEM_CLOCK_=0 R CMD check --no-manual hpcml_*.tar.gz \
	  || { cat hpcml.Rcheck/tests/testthat.Rout.fail 2>/dev/null; exit 1; }
	grep -h "FAIL .* PASS" $(RCHECK)/hpcml.Rcheck/tests/testthat.Rout

# The fast subset: no real services, no long runs.
test-fast:
	$(PYTHON) -m pytest -m "not slow" $(PYTEST_ARGS)

bench:
	$(PYTHON) scripts/bench_core.py

clean:
	rm -rf runs .pytest_cache
