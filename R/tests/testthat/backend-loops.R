# The foreach loop and the hpcml_lapply call that test-backends.R runs on the local backend (by
# sourcing this file) and, in a separate R session, on Dask or MPI:
#   Rscript backend-loops.R <out.rds> dask <workers>...      (one run per worker count)
#   mpirun -n N Rscript backend-loops.R <out.rds> mpi        (every rank runs it)
# Rank 0 (or the one session) saves the values to <out.rds>; the other MPI ranks get NULL.
backend_test_loop <- function() {
  foreach::foreach(i = 1:12, .combine = rbind) %dopar% {
    x <- rnorm(50)
    y <- 1 + 2 * x + rnorm(50)
    c(i = i, coef(lm(y ~ x)))
  }
}

backend_test_lapply <- function(backend, workers = NULL) {
  draw <- function(n) mean(rnorm(n))
  hpcml_lapply(rep(100, 6), draw, backend = backend, workers = workers, seed = 9)
}

# The loop twice, hpcml_lapply between them, and what the session looks like afterwards.
backend_test_values <- function(backend, workers = NULL) {
  registerDoHpcml(backend = backend, workers = workers, seed = 21)
  set.seed(3)
  loop <- backend_test_loop()
  draws <- backend_test_lapply(backend, workers)
  again <- backend_test_loop()  # under MPI rank 0 ran tasks in this session: still doHpcml's loop
  after <- runif(1)             # and the session's generator is where set.seed(3) left it
  if (is.null(loop)) return(NULL)
  list(loop = loop, lapply = draws, again = again, after = after, dopar = getDoParName())
}

if (sys.nframe() == 0L) {
  suppressPackageStartupMessages({
    library(foreach)
    library(hpcml)
  })
  args <- commandArgs(TRUE)
  backend <- args[2]
  if (identical(backend, "mpi")) {
    values <- backend_test_values("mpi")
    if (!is.null(values)) values$size <- Sys.getenv("OMPI_COMM_WORLD_SIZE")
  } else {
    values <- lapply(as.integer(args[-(1:2)]), function(w) backend_test_values(backend, w))
  }
  if (!is.null(values)) saveRDS(values, args[1])
}
