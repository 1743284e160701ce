# The foreach loop and the hpcml_lapply call that test-mpi.R runs on the local backend (by
# sourcing this file) and on the mpi backend, under mpirun: `Rscript mpi-loop.R <out.rds>` on
# every rank; rank 0 saves the values to <out.rds>, the other ranks get NULL.
mpi_test_loop <- function() {
  foreach::foreach(i = 1:12, .combine = rbind) %dopar% {
    x <- rnorm(50)
    y <- 1 + 2 * x + rnorm(50)
    c(i = i, coef(lm(y ~ x)))
  }
}

mpi_test_lapply <- function(backend, workers = NULL) {
  draw <- function(n) mean(rnorm(n))
  hpcml_lapply(rep(100, 6), draw, backend = backend, workers = workers, seed = 9)
}

if (sys.nframe() == 0L) {
  suppressPackageStartupMessages({
    library(foreach)
    library(hpcml)
  })
  registerDoHpcml(backend = "mpi", seed = 21)
  set.seed(3)
  loop <- mpi_test_loop()
  draws <- mpi_test_lapply("mpi")
  again <- mpi_test_loop()  # rank 0 ran tasks in this session: the loop is still doHpcml's
  after <- runif(1)         # and the session's generator is where set.seed(3) left it
  if (!is.null(loop)) {
    saveRDS(list(loop = loop, lapply = draws, again = again, after = after, dopar = getDoParName(),
                 size = Sys.getenv("OMPI_COMM_WORLD_SIZE")), commandArgs(TRUE)[1])
  }
}
