# Loaded by testthat before the tests: the installed package, and the project's Python.
library(hpcml)

# `make test-r` sets RETICULATE_PYTHON; a run from the repository without it uses its venv.
if (!nzchar(Sys.getenv("RETICULATE_PYTHON"))) {
  venv <- normalizePath(file.path(testthat::test_path(), "..", "..", "..", ".venv", "bin", "python"),
                        mustWork = FALSE)
  if (file.exists(venv)) Sys.setenv(RETICULATE_PYTHON = venv)
}

hmda <- function() {
  env <- new.env()
  utils::data("HMDA", package = "AER", envir = env)
  env$HMDA
}

# The Monte Carlo standard deviation of a bootstrap SE estimated from the replicates `t`:
# Var(s) ~ sigma^2 (kurtosis - 1) / (4 B) (delta method for the sample standard deviation).
se_mc_sd <- function(t) {
  apply(as.matrix(t), 2, function(x) {
    z <- (x - mean(x)) / stats::sd(x)
    stats::sd(x) * sqrt((mean(z^4) - 1) / (4 * length(x)))
  })
}
