# Loops on the local backend run on the session's own R workers (R/local_pool.R), without Python.
library(foreach)

test_that("each iteration's seed is the integer hpcml's Python workers give R", {
  seeds <- c(0, 1, 7, 12345, 2^31 - 1, 2^40 + 7)
  indices <- c(0:1999, 2^32 - 1, 2^32, 1e12)
  got <- lapply(seeds, function(s) {
    c(.Call(hpcml:::C_hpcml_task_seeds, s, 0, 2000L),
      vapply(indices[2001:2003], function(i) .Call(hpcml:::C_hpcml_task_seeds, s, i, 1L), 1L))
  })
  reticulate::py_run_string("
from hpcml.plans.base import task_rng
from hpcml.models.r.common import r_seed
from hpcml.models.base import FitContext
def _hpcml_test_r_seeds(seed, indices):
    return [r_seed(FitContext(rng=task_rng(int(seed), int(i)))) for i in indices]
")
  reference <- reticulate::py_eval("_hpcml_test_r_seeds")
  for (k in seq_along(seeds)) {
    expect_identical(got[[k]], as.integer(unlist(reference(seeds[k], indices))), info = sprintf("seed %s", seeds[k]))
  }
})

test_that("the session's R workers and hpcml's Python workers return the same values and errors", {
  draw <- function(n) if (n < 0) stop("negative n: ", n) else c(mean(rnorm(n)), sample.int(1000, 1))
  x <- c(rep(50, 9), -1, rep(20, 30))
  on_r <- tryCatch(hpcml_lapply(x, draw, workers = 2, seed = 11), error = conditionMessage)
  old <- options(hpcml.r_workers = "python")
  on.exit(options(old), add = TRUE)
  on_python <- tryCatch(hpcml_lapply(x, draw, workers = 2, seed = 11), error = conditionMessage)
  expect_identical(on_r, on_python)
  expect_match(on_r, "element 10 failed: negative n: -1")
  x[10] <- 5
  on_python <- hpcml_lapply(x, draw, workers = 2, seed = 11)
  options(old)
  expect_identical(hpcml_lapply(x, draw, workers = 2, seed = 11), on_python)
  expect_identical(hpcml_lapply(x, draw, workers = 1, chunk_size = 3, seed = 11), on_python)
})

test_that("a worker that dies fails the loop with a message, and the next loop starts new workers", {
  die <- function(i) if (i == 3) quit(save = "no", status = 1) else i
  expect_error(hpcml_lapply(1:4, die, workers = 2),
               "an R worker process of this session died or could not be reached while running the loop")
  # whatever the loop's error handling: the other iterations are never returned as if complete
  registerDoHpcml(workers = 2, seed = 1)
  expect_error(foreach::foreach(i = 1:6, .combine = c, .errorhandling = "remove") %dopar% {
    if (i == 2) tools::pskill(Sys.getpid(), tools::SIGKILL)
    i
  }, "an R worker process of this session died")
  expect_equal(hpcml_lapply(1:4, function(i) i * 2, workers = 2), list(2, 4, 6, 8))
})

test_that("bad worker counts and chunk sizes name the field and the value", {
  expect_error(hpcml_lapply(1:3, sqrt, workers = 0), "backend.workers: must be a whole number of at least 1 (got 0)",
               fixed = TRUE)
  expect_error(hpcml_lapply(1:3, sqrt, workers = 3.5), "backend.workers: must be a whole number of at least 1 (got 3.5)",
               fixed = TRUE)
  expect_error(hpcml_lapply(1:3, sqrt, chunk_size = 0), "backend.chunk_size: must be a whole number of at least 1 (got 0)",
               fixed = TRUE)
  expect_error(hpcml_lapply(1:3, sqrt, seed = 3.7), "seed: must be a whole number from 0 to 2147483647 (got 3.7)",
               fixed = TRUE)
  expect_error(hpcml_lapply(1:3, sqrt, seed = 2^31), "seed: must be a whole number from 0 to 2147483647 (got 2147483648)",
               fixed = TRUE)
  expect_error(hpcml_lapply(1:3, sqrt, seed = -1), "seed: must be a whole number", fixed = TRUE)
})

# The last line a fresh Rscript running `lines` prints, ended after `limit` seconds where
# timeout(1) is found (a script that would wait forever fails its test instead).
last_line_of_script <- function(lines, limit = 120) {
  script <- tempfile(fileext = ".R")
  writeLines(lines, script)
  rscript <- file.path(R.home("bin"), "Rscript")
  timeout <- Sys.which("timeout")
  out <- suppressWarnings(if (nzchar(timeout)) {
    system2(timeout, c(limit, shQuote(rscript), shQuote(script)), stdout = TRUE, stderr = TRUE)
  } else {
    system2(rscript, script, stdout = TRUE, stderr = TRUE)
  })
  if (!is.null(attr(out, "status")) && attr(out, "status") == 124) return(sprintf("still running after %d s", limit))
  trimws(out[length(out)])
}

test_that("a session's local loops never start Python", {
  last <- last_line_of_script(c(
    "suppressPackageStartupMessages(library(hpcml))",
    "x <- hpcml_lapply(1:100, function(i) i^2, workers = 2)",
    "hpcml::registerDoHpcml(workers = 2)",
    "y <- foreach::`%dopar%`(foreach::foreach(i = 1:10), i)",
    "b <- hpcml_boot(1:20, function(d, i) mean(d[i]), R = 50, workers = 2)",
    "cat(identical(x, lapply(1:100, function(i) i^2)), identical(y, as.list(1:10)),",
    "    'reticulate' %in% loadedNamespaces(), '\\n')"))
  expect_identical(last, "TRUE TRUE FALSE")
})

test_that("after an interrupted loop, the next loop gets its own values from new workers", {
  last <- last_line_of_script(c(
    "suppressPackageStartupMessages(library(hpcml))",
    "invisible(hpcml_lapply(1:2, identity, workers = 2))",
    "old <- hpcml:::.hpcml$r_pool_pids",
    "system(sprintf('sleep 1 && kill -INT %d', Sys.getpid()), wait = FALSE)",
    "first <- tryCatch(hpcml_lapply(1:4, function(i) { Sys.sleep(3); -i }, workers = 2),",
    "                  interrupt = function(e) 'interrupted')",
    "second <- hpcml_lapply(1:4, function(i) i * 10, workers = 2)",
    "Sys.sleep(0.5)",
    "running <- function(p) { f <- sprintf('/proc/%d/stat', p)  # a zombie has ended",
    "  file.exists(f) && !grepl('^[0-9]+ \\\\(.*\\\\) Z', readLines(f, warn = FALSE)[1]) }",
    "alive <- vapply(old, running, NA)",
    "cat(identical(first, 'interrupted'), identical(second, list(10, 20, 30, 40)), any(alive),",
    "    length(intersect(old, hpcml:::.hpcml$r_pool_pids)), '\\n')"))
  expect_identical(last, "TRUE TRUE FALSE 0")
})

test_that("a relative path in a loop body means what it means in the session now", {
  invisible(hpcml_lapply(1:2, identity, workers = 2))  # the workers start here
  dirs <- file.path(tempfile("hpcml-wd-"), c("a", "b"))
  for (k in 1:2) {
    dir.create(dirs[k], recursive = TRUE)
    writeLines(c("a", "b")[k], file.path(dirs[k], "which.txt"))
  }
  old <- setwd(dirs[2])
  on.exit(setwd(old), add = TRUE)
  on.exit(invisible(hpcml_lapply(1:2, identity, workers = 2)), add = TRUE)  # workers leave the folder
  got <- hpcml_lapply(1:4, function(i) readLines("which.txt"), workers = 2)
  expect_identical(unlist(got), rep("b", 4))
})

test_that("starting the workers leaves the session's random numbers as they were", {
  hpcml:::stop_r_workers(kill = TRUE)
  set.seed(42)
  invisible(hpcml_lapply(1:4, sqrt, workers = 2, seed = 1))  # starts the workers, given a seed
  after <- runif(3)
  set.seed(42)
  expect_identical(after, runif(3))
})

test_that("a process that connects in a worker's place is refused before any loop reaches it", {
  # Workers that cannot read the session's token (as another user's process could not).
  cl <- parallel::makePSOCKcluster(2)
  on.exit(try(parallel::stopCluster(cl), silent = TRUE), add = TRUE)
  expect_true(hpcml:::check_r_workers(cl))
  parallel::clusterCall(cl, function() {
    env <- baseenv()
    unlockBinding("readLines", env)
    assign("readLines", function(...) "not the token", envir = env)
  })
  expect_error(hpcml:::check_r_workers(cl),
               "local backend: a process that is not one of this session's R workers connected")
})

test_that("an earlier loop's RNGkind() or options() never change a later loop's numbers", {
  registerDoHpcml(workers = 2, seed = 1, chunk_size = 1)
  draw <- function() foreach::foreach(i = 1:4, .combine = c) %dopar% c(rnorm(1), sample(5, 1))
  fit <- function() foreach::foreach(i = 1:2, .combine = c) %dopar% unname(coef(lm(mpg ~ factor(cyl), mtcars))[2])
  a <- draw()
  f <- fit()
  invisible(foreach::foreach(i = 1:2) %dopar% {
    RNGkind(normal.kind = "Box-Muller", sample.kind = "Rounding")
    options(contrasts = c("contr.sum", "contr.poly"), hpcml.test.left = TRUE)
    0
  })
  expect_identical(draw(), a)
  expect_identical(fit(), f)
  # within one chunk too: iteration 1 changes the kinds, iteration 2 draws as if alone
  change <- function(change) foreach::foreach(i = 1:2, .combine = c, .options.hpcml = list(chunk_size = 2)) %dopar% {
    if (i == 1 && change) RNGkind(normal.kind = "Box-Muller", sample.kind = "Rounding")
    c(rnorm(1), sample(5, 1))
  }
  expect_identical(suppressWarnings(change(TRUE))[3:4], change(FALSE)[3:4])
  expect_identical(foreach::foreach(i = 1:2, .combine = c) %dopar% is.null(getOption("hpcml.test.left")), c(TRUE, TRUE))
  # the session's own kinds are not the iterations' either (a fork would inherit them)
  old <- RNGkind()
  on.exit(RNGkind(old[1], old[2], old[3]), add = TRUE)
  suppressWarnings(RNGkind("Mersenne-Twister", "Box-Muller", "Rounding"))
  expect_identical(draw(), a)
  py <- local({ o <- options(hpcml.r_workers = "python"); on.exit(options(o)); draw() })
  expect_identical(py, a)
})

test_that("the session's R workers and its forks run a loop with the session's options", {
  old <- options(contrasts = c("contr.sum", "contr.poly"))
  on.exit(options(old), add = TRUE)
  ref <- unname(coef(lm(mpg ~ factor(cyl), mtcars)))
  body <- function(i) unname(coef(lm(mpg ~ factor(cyl), mtcars)))
  expect_identical(hpcml_lapply(1:2, body, workers = 2), list(ref, ref))
  big <- numeric(5e6)  # 40 MB: this loop runs in forks of the session
  body_big <- function(i) { length(big); unname(coef(lm(mpg ~ factor(cyl), mtcars))) }
  environment(body_big) <- list2env(list(big = big), parent = globalenv())
  expect_identical(hpcml_lapply(1:2, body_big, workers = 2), list(ref, ref))
})

test_that("a worker interrupted while it runs a chunk fails the loop at once, and the next loop runs", {
  skip_on_os("windows")
  # SIGINT to a worker (a Ctrl-C reaching it, or `kill -INT`) while it runs a chunk: parallel's
  # worker loop would drop the reply and wait for work, and the session wait for the reply forever.
  last <- last_line_of_script(c(
    "suppressPackageStartupMessages(library(hpcml))",
    "body <- function(i) { if (i == 2) tools::pskill(Sys.getpid(), tools::SIGINT); Sys.sleep(0.2); i }",
    "first <- tryCatch(hpcml_lapply(1:4, body, workers = 2), error = conditionMessage)",
    "second <- hpcml_lapply(1:4, function(i) i * 10, workers = 2)",
    "cat(grepl('an R worker process of this session was interrupted while running iterations 2 to 2 (SIGINT)',",
    "          first, fixed = TRUE), identical(second, list(10, 20, 30, 40)), '\\n')"))
  expect_identical(last, "TRUE TRUE")
})

test_that("a Ctrl-C at the session's terminal does not reach its R workers", {
  skip_if_not(file.exists("/proc/self/stat") && nzchar(Sys.which("setsid")), "needs Linux's /proc and setsid(1)")
  invisible(hpcml_lapply(1:2, identity, workers = 2))
  # Ctrl-C goes to the terminal's foreground process group: the workers' own session has none.
  group_and_session <- function(pid) {
    stat <- readLines(sprintf("/proc/%d/stat", pid), warn = FALSE)[1]
    as.integer(strsplit(sub("^.*\\) ", "", stat), " ")[[1]][3:4])
  }
  mine <- group_and_session(Sys.getpid())
  for (pid in hpcml:::.hpcml$r_pool_pids) {
    theirs <- group_and_session(pid)
    expect_false(theirs[1] == mine[1], info = "process group")
    expect_false(theirs[2] == mine[2], info = "session")
  }
})

test_that("a loop body that ends its forked process leaves the session's workers running", {
  skip_on_os("windows")
  # quit() in a fork runs the session's exit finalizers there: they must not stop the session's
  # workers, whose sockets the fork inherited.
  last <- last_line_of_script(c(
    "suppressPackageStartupMessages(library(hpcml))",
    "invisible(hpcml_lapply(1:2, identity, workers = 2))",
    "old <- hpcml:::.hpcml$r_pool_pids",
    "big <- numeric(5e6)  # 40 MB: the next loop runs in forks of the session",
    "first <- tryCatch(hpcml_lapply(1:4, function(i) { length(big); if (i == 2) quit(save = 'no'); i }, workers = 2),",
    "                  error = conditionMessage)",
    "second <- hpcml_lapply(1:4, function(i) i * 10, workers = 2)",
    "cat(grepl('the forked process ended', first), identical(second, list(10, 20, 30, 40)),",
    "    identical(sort(old), sort(hpcml:::.hpcml$r_pool_pids)), '\\n')"))
  expect_identical(last, "TRUE TRUE TRUE")
})

test_that("a local loop inside a forked loop body runs in the fork, with its own values and seeds", {
  skip_on_os("windows")
  # Forks once sent their nested loops' chunks on the session's sockets, all at once, and took
  # each other's replies (wrong values, or a wait without end).
  last <- last_line_of_script(c(
    "suppressPackageStartupMessages(library(hpcml))",
    "invisible(hpcml_lapply(1:2, identity, workers = 2))",
    "big <- numeric(5e6)  # 40 MB: the outer loop runs in forks of the session",
    "inner <- function(i) hpcml_lapply(1:6, function(j) c(j + 10 * i, runif(1)), workers = 2, seed = 5)",
    "outer <- function(i) { length(big); set.seed(9, kind = 'Mersenne-Twister'); a <- runif(1); x <- inner(i); c(a, runif(1), unlist(x)) }",
    "got <- hpcml_lapply(1:4, outer, workers = 2)",
    "set.seed(9, kind = 'Mersenne-Twister'); want_rng <- runif(2)  # the fork's own numbers go on after its inner loop",
    "want <- lapply(1:4, function(i) c(want_rng, unlist(inner(i))))",
    "cat(identical(got, want), '\\n')"))
  expect_identical(last, "TRUE")
})
