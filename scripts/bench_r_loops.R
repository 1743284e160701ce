#!/usr/bin/env Rscript
# Many small R iterations: hpcml's loops vs doParallel and mclapply, side by side in one run.
#
#   RETICULATE_PYTHON=.venv/bin/python Rscript scripts/bench_r_loops.R [cores]
#
# Each row is timed after one warm-up call of the same kind (workers started, Python loaded),
# except "first loop of the session", which is the session's very first hpcml call; the short
# loops (lapply, boot) are the medians of five rounds, each hpcml loop right after its peer's.
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
registerDoHpcml(workers = cores)
invisible(foreach(i = 1:10) %dopar% sqrt(i))
hp <- timed(foreach(i = 1:2000) %dopar% sqrt(i))
# The short loops: five rounds, each hpcml loop right after its peer's; medians.
laps <- replicate(5, c(mc = timed(mclapply(1:2000, sqrt, mc.cores = cores)),
                       lap = timed(hpcml_lapply(1:2000, sqrt, workers = cores)),
                       mc200 = timed(mclapply(1:200, sqrt, mc.cores = cores)),
                       lap200 = timed(hpcml_lapply(1:200, sqrt, workers = cores))))
med <- apply(laps, 1, median)
mc <- med[["mc"]]; lap <- med[["lap"]]; mc200 <- med[["mc200"]]; lap200 <- med[["lap200"]]
# boot's own example statistic (the ratio of city populations), R = 2,000, as boot runs it on
# forked workers and as hpcml_boot runs it: the same replicates (same seed, same t).
ratio <- function(d, w) sum(d$x * w) / sum(d$u * w)
set.seed(1); invisible(hpcml_boot(boot::city, ratio, R = 20, stype = "w", workers = cores))
boots <- replicate(5, {
  set.seed(1); bt <- 0; b <- timed(bt <- boot::boot(boot::city, ratio, R = 2000, stype = "w",
                                                   parallel = "multicore", ncpus = cores))
  set.seed(1); ht <- 0; h <- timed(ht <- hpcml_boot(boot::city, ratio, R = 2000, stype = "w", workers = cores))
  stopifnot(isTRUE(all.equal(bt$t, ht$t)))
  c(b, h)
})
boot_t <- median(boots[1, ]); hboot_t <- median(boots[2, ])
# CPU seconds of one warm hpcml_lapply over 2,000 elements, in this session (the driver) and in
# its workers (Linux /proc), over ten loops: what the machine's load does not change much.
cpu_of <- function(pid) {
  f <- sprintf("/proc/%d/stat", pid)
  if (!file.exists(f)) return(NA_real_)
  stat <- strsplit(readLines(f, warn = FALSE), " ")[[1]]
  sum(as.numeric(stat[14:15])) / 100  # utime + stime, in clock ticks of 1/100 s
}
children <- function(pid) suppressWarnings(as.integer(system(sprintf("pgrep -P %d", pid), intern = TRUE)))
# Every R or Python process below this session (a Python pool's workers are its grandchildren).
descendants <- function(pid) {
  kids <- children(pid)
  found <- c(kids, unlist(lapply(kids, descendants)))
  comm <- vapply(found, function(p) {
    f <- sprintf("/proc/%d/comm", p)
    if (file.exists(f)) readLines(f, warn = FALSE)[1] else ""
  }, "")
  found[grepl("^(R|python)", comm)]
}
cpu <- if (file.exists("/proc/self/stat") && nzchar(Sys.which("pgrep"))) {
  # (the session's R workers are started through a shell that exits: not below it any more)
  workers_pids <- unique(c(descendants(Sys.getpid()), hpcml:::.hpcml$r_pool_pids))
  before <- vapply(c(Sys.getpid(), workers_pids), cpu_of, numeric(1))
  for (k in 1:10) invisible(hpcml_lapply(1:2000, sqrt, workers = cores))
  used <- (vapply(c(Sys.getpid(), workers_pids), cpu_of, numeric(1)) - before) / 10
  used[!is.na(used)]
}
mc_cpu <- { t0 <- proc.time(); for (k in 1:10) invisible(mclapply(1:2000, sqrt, mc.cores = cores))
            d <- proc.time() - t0; sum(d[c("user.self", "sys.self", "user.child", "sys.child")], na.rm = TRUE) / 10 }

registerDoHpcml(backend = "dask", workers = cores)
dask_first <- timed(foreach(i = 1:200) %dopar% sqrt(i))
dask_kept <- timed(foreach(i = 1:200) %dopar% sqrt(i))

# A session's first loop against doParallel's, each in an Rscript started afresh (R's start,
# library(), the workers' start and the loop), interleaved, three rounds: medians.
fresh <- function(code) timed(system2(file.path(R.home("bin"), "Rscript"), c("-e", shQuote(code)), stdout = FALSE))
fresh_dopar <- sprintf("suppressPackageStartupMessages(library(doParallel)); cl <- makeCluster(%d); registerDoParallel(cl); x <- foreach(i = 1:2000) %%dopar%% sqrt(i); stopCluster(cl)", cores)
fresh_hpcml <- sprintf("suppressPackageStartupMessages(library(hpcml)); x <- hpcml_lapply(1:2000, sqrt, workers = %d)", cores)
rounds <- replicate(3, c(dopar = fresh(fresh_dopar), hpcml = fresh(fresh_hpcml)))
fresh_d <- median(rounds["dopar", ]); fresh_h <- median(rounds["hpcml", ])

cat(sprintf("# %d cores, %s, load average %s\n", cores, format(Sys.time(), "%Y-%m-%d %H:%M"),
            paste(readLines("/proc/loadavg", warn = FALSE), collapse = " ")))
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
row("fresh Rscript, first loop 2000: doParallel", fresh_d, fresh_d)
row("fresh Rscript, first loop 2000: hpcml_lapply", fresh_h, fresh_d)
cat(sprintf("%-52s %8.3f s\n", "  hpcml's first loop minus doParallel's", fresh_h - fresh_d))
if (!is.null(cpu)) cat(sprintf("%-52s %8.3f s  (workers: %s s)\n", "CPU of one warm hpcml_lapply 2000: this session", cpu[1],
                               paste(sprintf("%.3f", cpu[-1]), collapse = " + ")))
cat(sprintf("%-52s %8.3f s\n", "CPU of one mclapply 2000 (session and its forks)", mc_cpu))
