#!/usr/bin/env Rscript
# Many small R iterations: hpcml's loops vs doParallel and mclapply, side by side in one run.
#
#   RETICULATE_PYTHON=.venv/bin/python Rscript scripts/bench_r_loops.R [cores]
#
# Each row is timed after one warm-up call of the same kind (workers started, Python loaded),
# except "first loop of the session", which is the session's very first hpcml call.
suppressPackageStartupMessages({ library(doParallel); library(hpcml); library(parallel) })
argv <- commandArgs(trailingOnly = TRUE)
cores <- if (length(argv)) as.integer(argv[1]) else 2L
timed <- function(expr) { t0 <- proc.time()[["elapsed"]]; force(expr); proc.time()[["elapsed"]] - t0 }
row <- function(what, s, ref) cat(sprintf("%-52s %8.3f s  %6.1fx\n", what, s, s / ref))

first <- timed(hpcml_lapply(1:2000, sqrt, workers = cores))
cl <- makeCluster(cores); registerDoParallel(cl)
invisible(foreach(i = 1:10) %dopar% sqrt(i))
dopar <- timed(foreach(i = 1:2000) %dopar% sqrt(i))
stopCluster(cl)
mc <- timed(mclapply(1:2000, sqrt, mc.cores = cores))
mc200 <- timed(mclapply(1:200, sqrt, mc.cores = cores))
registerDoHpcml(workers = cores)
invisible(foreach(i = 1:10) %dopar% sqrt(i))
hp <- timed(foreach(i = 1:2000) %dopar% sqrt(i))
lap <- timed(hpcml_lapply(1:2000, sqrt, workers = cores))
lap200 <- timed(hpcml_lapply(1:200, sqrt, workers = cores))
# boot's own example statistic (the ratio of city populations), R = 2,000, as boot runs it on
# forked workers and as hpcml_boot runs it: the same replicates (same seed, same t).
ratio <- function(d, w) sum(d$x * w) / sum(d$u * w)
set.seed(1); invisible(hpcml_boot(boot::city, ratio, R = 20, stype = "w", workers = cores))
set.seed(1); bt <- 0; boot_t <- timed(bt <- boot::boot(boot::city, ratio, R = 2000, stype = "w",
                                                        parallel = "multicore", ncpus = cores))
set.seed(1); ht <- 0; hboot_t <- timed(ht <- hpcml_boot(boot::city, ratio, R = 2000, stype = "w", workers = cores))
stopifnot(isTRUE(all.equal(bt$t, ht$t)))
registerDoHpcml(backend = "dask", workers = cores)
dask_first <- timed(foreach(i = 1:200) %dopar% sqrt(i))
dask_kept <- timed(foreach(i = 1:200) %dopar% sqrt(i))

cat(sprintf("# %d cores, %s\n", cores, format(Sys.time(), "%Y-%m-%d %H:%M")))
row("foreach %dopar% sqrt, 2000: doParallel", dopar, dopar)
row("foreach %dopar% sqrt, 2000: registerDoHpcml()", hp, dopar)
row("lapply sqrt, 2000: mclapply", mc, mc)
row("lapply sqrt, 2000: hpcml_lapply", lap, mc)
row("lapply sqrt, 200: mclapply", mc200, mc200)
row("lapply sqrt, 200: hpcml_lapply", lap200, mc200)
row("boot city ratio, R = 2000: boot multicore", boot_t, boot_t)
row("boot city ratio, R = 2000: hpcml_boot", hboot_t, boot_t)
row("hpcml_lapply, 2000: first loop of the session", first, dopar)
row("foreach on Dask, 200: the session's first Dask loop", dask_first, dopar)
row("foreach on Dask, 200: next loop (cluster kept)", dask_kept, dopar)
