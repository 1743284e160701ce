#!/usr/bin/env Rscript
# The lecture notes' doParallel loops in R vs the same work through hpcml from R, one run.
#
#   RETICULATE_PYTHON=.venv/bin/python Rscript scripts/bench_r.R [B] [cores] [B_large] [n_small]
#
# 1. Bootstrap, same data (100,000 x 10, y ~ .), same cores. R side: the notes' loop,
#    registerDoParallel(cores) and foreach %dopar% lm on a resampled copy, B replicates.
#    hpcml side: hpcml_bootstrap() (each replicate a weighted least-squares fit, the
#    resampling counts as weights, no copy) on `cores` worker processes: the first call of the
#    session (cold: worker processes start, the data is stored and loaded) and later calls
#    (warm: the session's workers and stored data are reused), with and without BCa limits.
#    The first call at B_large is timed in a fresh R session (this script, mode "cold").
# 2. A foreach loop of n_small small lm fits: registerDoParallel(cores) vs registerDoHpcml().
suppressPackageStartupMessages({ library(doParallel); library(hpcml) })
argv <- commandArgs(trailingOnly = TRUE)
cold_mode <- length(argv) && argv[1] == "cold"
args <- as.integer(if (cold_mode) argv[-1] else argv)

set.seed(1)
n <- 100000L; p <- 10L
X <- matrix(rnorm(n * p), n, p, dimnames = list(NULL, paste0("x", seq_len(p))))
d <- data.frame(X, y = drop(X %*% seq(0.1, 1, length.out = p)) + rnorm(n))

timed <- function(expr) { t0 <- proc.time()[["elapsed"]]; value <- force(expr); list(value = value, s = proc.time()[["elapsed"]] - t0) }

if (cold_mode) {  # a fresh session: Python start, then the first call at B = args[1]
  start <- timed(hpcml:::py_modules())
  first <- timed(hpcml_bootstrap(y ~ ., d, B = args[1], workers = args[2], seed = 1L))
  cat(sprintf("COLD %.3f %.3f\n", start$s, first$s))
  quit(save = "no")
}

B <- if (length(args) >= 1) args[1] else 100L
cores <- if (length(args) >= 2) args[2] else 2L
B_large <- if (length(args) >= 3) args[3] else 10L * B
n_small <- if (length(args) >= 4) args[4] else 1000L
script <- normalizePath(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)))
cat(sprintf("load average at start: %s\n", paste(readLines("/proc/loadavg"), collapse = " ")))

# 1. The notes' bootstrap loop.
registerDoParallel(cores = cores)
r_loop <- timed(foreach(i = seq_len(B), .combine = rbind) %dopar% {
  idx <- sample.int(n, n, replace = TRUE)
  coef(lm(y ~ ., data = d[idx, ]))
})

# 2a. Many small lm fits with doParallel (the backend is still registered).
small <- function() foreach(i = seq_len(n_small), .combine = rbind) %dopar% {
  x <- rnorm(100); y <- 2 * x + rnorm(100)
  coef(lm(y ~ x))
}
small_par <- timed(small())
stopImplicitCluster()

# 1, hpcml. The first call also starts the session's worker processes and stores the data.
start <- timed(hpcml:::py_modules())
h_cold <- timed(hpcml_bootstrap(y ~ ., d, B = B, workers = cores, seed = 1L))
h <- timed(hpcml_bootstrap(y ~ ., d, B = B, workers = cores, seed = 2L))
h_nobca <- timed(hpcml_bootstrap(y ~ ., d, B = B, workers = cores, seed = 3L, bca = FALSE))
h_large <- timed(hpcml_bootstrap(y ~ ., d, B = B_large, workers = cores, seed = 4L))
h_large_nobca <- timed(hpcml_bootstrap(y ~ ., d, B = B_large, workers = cores, seed = 5L, bca = FALSE))

# 2b. The same small fits with doHpcml (Python already started above).
registerDoHpcml(workers = cores, seed = 1L)
small_h <- timed(small())
small_h2 <- timed(small())

# The first call at B_large, in a fresh R session.
rscript <- file.path(R.home("bin"), "Rscript")
cold_out <- system2(rscript, c(shQuote(script), "cold", B_large, cores), stdout = TRUE)
cold <- as.numeric(strsplit(grep("^COLD ", cold_out, value = TRUE), " ")[[1]][-1])

runs <- list(
  list(sprintf("R doParallel foreach %%dopar%% lm, B=%d", B), r_loop$s, B),
  list(sprintf("hpcml_bootstrap, B=%d, first call of the session", B), h_cold$s, B),
  list(sprintf("hpcml_bootstrap, B=%d, later call", B), h$s, B),
  list(sprintf("hpcml_bootstrap, B=%d, later call, bca = FALSE", B), h_nobca$s, B),
  list(sprintf("hpcml_bootstrap, B=%d, first call (fresh session)", B_large), cold[2], B_large),
  list(sprintf("hpcml_bootstrap, B=%d, later call", B_large), h_large$s, B_large),
  list(sprintf("hpcml_bootstrap, B=%d, later call, bca = FALSE", B_large), h_large_nobca$s, B_large))
rows <- data.frame(run = vapply(runs, `[[`, "", 1), seconds = vapply(runs, `[[`, 0, 2),
                   replicates = vapply(runs, `[[`, 0, 3))
rows$ms_per_replicate <- 1000 * rows$seconds / rows$replicates
rows$speedup_vs_R <- rows$ms_per_replicate[1] / rows$ms_per_replicate
cat(sprintf("data %d x %d, %d cores; Python start + import hpcml (once per session): %.2f s (fresh session: %.2f s)\n",
            n, p, cores, start$s, cold[1]))
print(rows, row.names = FALSE, digits = 4)
cat(sprintf("hpcml task time only (B=%d, sum over tasks / cores): %.1f ms per replicate\n", B_large,
            1000 * sum(h_large$value$run$results$seconds) / cores / B_large))
se_r <- apply(r_loop$value, 2, sd)
cat(sprintf("max |SE_hpcml / SE_R - 1| over the 11 coefficients (B=%d each, Monte Carlo error ~%.0f%%): %.3f\n",
            B, 100 / sqrt(B), max(abs(h$value$se / se_r - 1))))
stopifnot(identical(h_nobca$value$t0, h$value$t0), is.null(h_nobca$value$table$bca_low))

cat(sprintf("\n%d small lm fits (100 rows each), foreach %%dopar%%, %d cores:\n", n_small, cores))
small_rows <- data.frame(run = c("registerDoParallel(cores)", "registerDoHpcml(workers), first loop",
                                 "registerDoHpcml(workers), second loop"),
                         seconds = c(small_par$s, small_h$s, small_h2$s))
small_rows$ms_per_fit <- 1000 * small_rows$seconds / n_small
small_rows$speedup_vs_doParallel <- small_rows$seconds[1] / small_rows$seconds
print(small_rows, row.names = FALSE, digits = 4)
stopifnot(identical(dim(small_par$value), dim(small_h$value)))
cat(sprintf("load average at end: %s\n", paste(readLines("/proc/loadavg"), collapse = " ")))
