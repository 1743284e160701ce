# The mpi backend from R under real Open MPI: `mpirun -n N Rscript mpi-loop.R` (every rank runs
# the script, rank 0 gets the values) gives what the local backend gives, with 1 and 2 ranks.

mpi_ready <- function() {
  nzchar(Sys.which("mpirun")) && reticulate::py_module_available("mpi4py")
}

# Run mpi-loop.R on `n` ranks; the values rank 0 saved.
run_mpi_script <- function(n) {
  out <- tempfile("hpcml-mpi-", fileext = ".rds")
  log <- tempfile("hpcml-mpi-", fileext = ".log")
  script <- normalizePath(testthat::test_path("mpi-loop.R"))
  lib <- paste(.libPaths(), collapse = .Platform$path.sep)  # the ranks load this hpcml
  env <- c(sprintf("R_LIBS=%s", shQuote(lib)),
           sprintf("RETICULATE_PYTHON=%s", shQuote(Sys.getenv("RETICULATE_PYTHON"))))
  # --oversubscribe: 2 ranks on a 1-core machine; --allow-run-as-root: CI containers run as root.
  args <- c("--allow-run-as-root", "--oversubscribe", "-n", n, file.path(R.home("bin"), "Rscript"),
            shQuote(script), shQuote(out))
  code <- system2("mpirun", args, env = env, stdout = log, stderr = log, stdin = "/dev/null", timeout = 600)
  if (code != 0 || !file.exists(out)) {
    fail(sprintf("mpirun -n %d exited %d:\n%s", n, code, paste(utils::tail(readLines(log), 30), collapse = "\n")))
  }
  readRDS(out)
}

test_that("a foreach loop and hpcml_lapply on MPI give the local backend's numbers, on 1 and 2 ranks", {
  skip_if_not(mpi_ready(), "Open MPI (mpirun) or mpi4py is not installed")
  source(testthat::test_path("mpi-loop.R"), local = TRUE)
  library(foreach)
  registerDoHpcml(backend = "local", workers = 2, seed = 21)
  local_loop <- mpi_test_loop()
  local_lapply <- mpi_test_lapply("local", workers = 2)
  expect_identical(local_lapply, mpi_test_lapply("local", workers = 1))
  set.seed(3)
  after <- runif(1)
  for (n in 1:2) {
    got <- run_mpi_script(n)
    expect_identical(got$size, as.character(n))
    expect_identical(got$loop, local_loop)
    expect_identical(got$again, local_loop)
    expect_identical(got$lapply, local_lapply)
    expect_identical(got$after, after)
    expect_identical(got$dopar, "doHpcml")
  }
})
