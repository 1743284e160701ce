# The same foreach loop and the same hpcml_lapply give identical results on the local, Dask and
# MPI backends, with 1 and 2 workers. Dask and MPI run in a separate R session with a time
# limit (Rscript backend-loops.R, under mpirun for MPI), as a user's script would: a run that
# never ends fails the test instead of hanging R CMD check, which has no time limit.

library(foreach)

# Run backend-loops.R (under `launcher`, e.g. mpirun); the values it saved.
run_backend_script <- function(args, launcher = NULL, timeout = 600) {
  out <- tempfile("hpcml-backend-", fileext = ".rds")
  log <- tempfile("hpcml-backend-", fileext = ".log")
  script <- normalizePath(testthat::test_path("backend-loops.R"))
  lib <- paste(.libPaths(), collapse = .Platform$path.sep)  # the session loads this hpcml
  env <- c(sprintf("R_LIBS=%s", shQuote(lib)),
           sprintf("RETICULATE_PYTHON=%s", shQuote(Sys.getenv("RETICULATE_PYTHON"))))
  rscript <- file.path(R.home("bin"), "Rscript")
  command <- if (is.null(launcher)) rscript else launcher[1]
  all_args <- c(if (!is.null(launcher)) c(launcher[-1], rscript), shQuote(script), shQuote(out), args)
  code <- system2(command, all_args, env = env, stdout = log, stderr = log, stdin = "/dev/null", timeout = timeout)
  if (code != 0 || !file.exists(out)) {
    fail(sprintf("%s exited %d:\n%s", basename(command), code, paste(utils::tail(readLines(log), 30), collapse = "\n")))
    return(NULL)
  }
  readRDS(out)
}

# The values on the local backend, in this session.
local_values <- function() {
  source(testthat::test_path("backend-loops.R"), local = TRUE)
  one <- backend_test_values("local", 1)
  two <- backend_test_values("local", 2)
  expect_identical(one, two)
  two
}

expect_same_values <- function(got, local) {
  expect_identical(got$loop, local$loop)
  expect_identical(got$again, local$loop)
  expect_identical(got$lapply, local$lapply)
  expect_identical(got$after, local$after)
  expect_identical(got$dopar, "doHpcml")
}

test_that("a foreach loop and hpcml_lapply on Dask give the local backend's numbers, with 1 and 2 workers", {
  skip_if_not(reticulate::py_module_available("distributed"), "dask.distributed is not installed")
  local <- local_values()
  expect_equal(dim(local$loop), c(12L, 3L))
  expect_equal(length(unique(unlist(local$lapply))), 6L)
  got <- run_backend_script(c("dask", "1", "2"))
  if (!is.null(got)) {
    expect_length(got, 2L)
    for (values in got) expect_same_values(values, local)
  }
})

test_that("a foreach loop and hpcml_lapply on MPI give the local backend's numbers, on 1 and 2 ranks", {
  skip_if_not(nzchar(Sys.which("mpirun")) && reticulate::py_module_available("mpi4py"),
              "Open MPI (mpirun) or mpi4py is not installed")
  local <- local_values()
  for (n in 1:2) {
    # --oversubscribe: 2 ranks on a 1-core machine; --allow-run-as-root: CI containers run as root.
    got <- run_backend_script("mpi", launcher = c("mpirun", "--allow-run-as-root", "--oversubscribe", "-n", n))
    if (!is.null(got)) {
      expect_identical(got$size, as.character(n))
      expect_same_values(got, local)
    }
  }
})
