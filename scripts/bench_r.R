#!/usr/bin/env Rscript
# The seeds' doParallel bootstrap loop in R vs the same bootstrap through hpcml from R.
#
#   RETICULATE_PYTHON=.venv/bin/python Rscript scripts/bench_r.R [B] [cores] [B_large]
#
# Same data (100,000 x 10, y ~ .), same replicate count B, same cores. The R side is the
# seeds' pattern: registerDoParallel(cores), foreach %dopar% lm on a resampled copy. The
# hpcml side is hpcml_bootstrap(), which fits each replicate as a weighted least-squares
# problem (resampling counts as weights, no copy of the data) on `cores` worker processes.
suppressPackageStartupMessages({ library(doParallel); library(hpcml) })
args <- as.integer(commandArgs(trailingOnly = TRUE))
B <- if (length(args) >= 1) args[1] else 100L
cores <- if (length(args) >= 2) args[2] else 2L
B_large <- if (length(args) >= 3) args[3] else 10L * B

set.seed(1)
n <- 100000L; p <- 10L
X <- matrix(rnorm(n * p), n, p, dimnames = list(NULL, paste0("x", seq_len(p))))
d <- data.frame(X, y = drop(X %*% seq(0.1, 1, length.out = p)) + rnorm(n))

timed <- function(expr) { t0 <- proc.time()[["elapsed"]]; value <- force(expr); list(value = value, s = proc.time()[["elapsed"]] - t0) }

# 1. The seeds' loop.
registerDoParallel(cores = cores)
r_loop <- timed(foreach(i = seq_len(B), .combine = rbind) %dopar% {
  idx <- sample.int(n, n, replace = TRUE)
  coef(lm(y ~ ., data = d[idx, ]))
})
stopImplicitCluster()

# 2. hpcml from R. The first call also starts Python and imports hpcml (once per R session).
start <- timed(hpcml:::py_modules())
h <- timed(hpcml_bootstrap(y ~ ., d, B = B, workers = cores, seed = 1L))
h_large <- timed(hpcml_bootstrap(y ~ ., d, B = B_large, workers = cores, seed = 1L))

se_r <- apply(r_loop$value, 2, sd)
rows <- data.frame(
  run = c(sprintf("R doParallel foreach %%dopar%% lm, B=%d", B), sprintf("hpcml_bootstrap, B=%d", B),
          sprintf("hpcml_bootstrap, B=%d", B_large)),
  seconds = c(r_loop$s, h$s, h_large$s),
  ms_per_replicate = 1000 * c(r_loop$s / B, h$s / B, h_large$s / B_large))
rows$speedup_vs_R <- rows$ms_per_replicate[1] / rows$ms_per_replicate
cat(sprintf("data %d x %d, %d cores; Python start + import hpcml (once per session): %.2f s\n", n, p, cores, start$s))
print(rows, row.names = FALSE, digits = 4)
cat(sprintf("hpcml task time only (B=%d, sum over tasks / cores): %.1f ms per replicate\n", B_large,
            1000 * sum(h_large$value$run$results$seconds) / cores / B_large))
cat(sprintf("max |SE_hpcml / SE_R - 1| over the 11 coefficients (B=%d each, Monte Carlo error ~%.0f%%): %.3f\n",
            B, 100 / sqrt(B), max(abs(h$value$se / se_r - 1))))
