# Large vectors once per machine: written once as a file that every worker maps (shared.R), on
# hpcml's Python workers (other backends, `out`, or options(hpcml.r_workers = "python")); a
# local loop without them runs in forks of the session, which share its memory (local_pool.R).
library(foreach)

# Run `expr` with the session's local loops sent through hpcml's Python workers.
on_python_workers <- function(expr) {
  old <- options(hpcml.r_workers = "python")
  on.exit(options(old))
  expr
}

# Vectors of `bytes` or more are shared (the default, 32 MiB, would make these tests slow).
share_above <- function(bytes) {
  old <- Sys.getenv("HPCML_MAP_MIN_BYTES", NA)
  Sys.setenv(HPCML_MAP_MIN_BYTES = format(bytes, scientific = FALSE))
  function() if (is.na(old)) Sys.unsetenv("HPCML_MAP_MIN_BYTES") else Sys.setenv(HPCML_MAP_MIN_BYTES = old)
}

is_mapped <- function(x) any(grepl("hpcml mapped file", utils::capture.output(.Internal(inspect(x)))))

big_loop <- function(X, Y, N, flags) {
  foreach(i = 1:6, .combine = rbind, .options.hpcml = list(chunk_size = 3)) %dopar% {
    c(coef(lm(Y ~ X[, i])), mapped = is_mapped(X), n_mapped = is_mapped(N), flags = sum(flags))
  }
}

test_that("a loop's large matrix is mapped by the workers, with the numbers it gives copied", {
  set.seed(5)
  X <- matrix(rnorm(4000 * 6), 4000, 6)
  Y <- drop(X %*% (1:6)) + rnorm(4000)
  N <- matrix(sample.int(100L, 4000 * 6, replace = TRUE), 4000, 6)  # integers
  flags <- rnorm(40000) > 0                                          # logicals
  registerDoHpcml(workers = 2, seed = 1)
  restore <- share_above(1e15)
  copied <- big_loop(X, Y, N, flags)
  restore()
  restore <- share_above(10000)
  on.exit(restore())
  mapped <- on_python_workers(big_loop(X, Y, N, flags))
  forked <- big_loop(X, Y, N, flags)
  expect_true(all(mapped[, "mapped"] == 1) && all(mapped[, "n_mapped"] == 1))
  expect_identical(forked, copied)
  expect_true(all(copied[, "mapped"] == 0))
  cols <- c("(Intercept)", "X[, i]", "flags")
  expect_identical(mapped[, cols], copied[, cols])
  if (requireNamespace("doParallel", quietly = TRUE)) {
    doParallel::registerDoParallel(cores = 2)
    on.exit(foreach::registerDoSEQ(), add = TRUE)
    expect_identical(big_loop(X, Y, N, flags)[, cols], mapped[, cols])
  }
})

test_that("a loop body that changes its copy of a mapped matrix changes nothing else", {
  restore <- share_above(10000)
  on.exit(restore())
  set.seed(6)
  X <- matrix(rnorm(5000 * 4), 5000, 4)
  first <- X[1, 1]
  total <- sum(X)
  out <- tempfile("hpcml-shared-")
  registerDoHpcml(workers = 2, seed = 1)
  # chunks of 4: each worker runs several iterations on the one mapped copy.
  seen <- foreach(i = 1:8, .combine = rbind, .options.hpcml = list(chunk_size = 4, out = out)) %dopar% {
    before <- c(X[1, 1], sum(X))
    X[1, 1] <- -i  # R copies the mapped matrix first: this iteration's own copy
    X[, 2] <- 0
    c(before, X[1, 1], sum(X[, 2]), is_mapped(X))
  }
  expect_equal(unname(seen[, 1]), rep(first, 8))
  expect_equal(unname(seen[, 2]), rep(total, 8))
  expect_equal(unname(seen[, 3]), -(1:8))
  expect_equal(unname(seen[, 4]), rep(0, 8))
  expect_equal(unname(seen[, 5]), rep(0, 8))  # the changed copy is an ordinary vector
  expect_identical(X[1, 1], first)
  # The kept run's file still holds the matrix's values.
  rds <- jsonlite::read_json(file.path(out, "spec.json"))$model$rds
  files <- environment(readRDS(rds))$.hpcml_shared_files
  expect_length(files, 1L)
  expect_identical(readBin(files, "double", n = length(X) + 1L), as.vector(X))
  expect_identical(format(file.info(files)$mode), "400")  # read-only, this user's
  unlink(c(files, out), recursive = TRUE)
})

test_that("hpcml_lapply's arguments and globals, and hpcml_boot's data frame, are mapped", {
  restore <- share_above(10000)
  on.exit(restore())
  set.seed(7)
  v <- runif(20000)
  w <- rnorm(20000)
  # A function of the global environment's kind (a test's has the package's namespace above it).
  f <- local(function(k, v) c(sum(v[seq_len(k)] * w[seq_len(k)]), is_mapped(v), is_mapped(w)),
             list2env(list(w = w, is_mapped = is_mapped), parent = globalenv()))
  got <- on_python_workers(hpcml_lapply(c(a = 10, b = 1000), f, v = v, workers = 2, seed = 1))
  expect_identical(got, lapply(c(a = 10, b = 1000), f, v = v) |> lapply(function(x) c(x[1], 1, 1)))
  d <- data.frame(y = rnorm(3000), x = rnorm(3000), g = factor(sample(letters[1:3], 3000, TRUE)))
  stat <- function(d, i) c(coef(lm(y ~ x + g, data = d[i, ])), mapped = is_mapped(d$x) && is_mapped(d$g),
                           levels = nlevels(d$g))
  set.seed(8)
  b <- on_python_workers(hpcml_boot(d, stat, R = 6, workers = 2))
  set.seed(8)
  ref <- boot::boot(d, stat, R = 6)
  expect_true(all(b$t[, 5] == 1))
  expect_identical(b$t[, -5], ref$t[, -5])
  expect_identical(b$t[, 6], rep(3, 6))
})

test_that("a local loop that uses a large vector runs in forks of the session, writing no file", {
  restore <- share_above(10000)
  on.exit(restore())
  map_dir <- tempfile("hpcml-map-")
  Sys.setenv(HPCML_MAP_DIR = map_dir)
  on.exit(Sys.unsetenv("HPCML_MAP_DIR"), add = TRUE)
  set.seed(9)
  X <- matrix(rnorm(3000 * 4), 3000, 4)
  session <- Sys.getpid()
  parent <- function() as.integer(strsplit(readLines("/proc/self/stat", warn = FALSE), " ")[[1]][4])
  body <- function(i) c(coef(lm(X[, 1] ~ X[, i])), runif(1), forked = parent() == session, mapped = is_mapped(X))
  environment(body) <- list2env(list(X = X, session = session, parent = parent, is_mapped = is_mapped),
                                parent = globalenv())
  got <- hpcml_lapply(2:4, body, workers = 2, seed = 3)
  expect_true(all(vapply(got, function(v) v[["forked"]] == 1 && v[["mapped"]] == 0, NA)))
  expect_false(dir.exists(map_dir))
  ref <- on_python_workers(hpcml_lapply(2:4, body, workers = 2, seed = 3))
  expect_identical(lapply(got, `[`, 1:3), lapply(ref, `[`, 1:3))
  # a fork that dies (killed: quit() in a fork would also remove the session's tempdir, as
  # in mclapply) fails its own chunk's iterations, with a message
  die <- function(i) if (i == 2) tools::pskill(Sys.getpid(), tools::SIGKILL) else sum(X[, i])
  environment(die) <- list2env(list(X = X), parent = globalenv())
  expect_error(hpcml_lapply(1:3, die, workers = 2, chunk_size = 1),
               "an R worker process of this session died or could not be reached while running iterations 2 to 2")
})

test_that("a worker maps only a file of this user's that no one else may write, of the vector's size", {
  map_vector <- utils::getFromNamespace("map_vector", "hpcml")
  f <- tempfile("hpcml-vector-")
  writeBin(as.numeric(1:1000), f)
  Sys.chmod(f, "0400")
  x <- map_vector(f, "double", 1000, list(dim = c(100L, 10L)))
  expect_identical(x, matrix(as.numeric(1:1000), 100, 10))
  expect_true(is_mapped(x))
  y <- x
  y[1] <- 0  # a copy: the mapped vector and the file keep their values
  expect_identical(x[1], 1)
  expect_identical(readBin(f, "double", n = 1), 1)
  expect_error(map_vector(f, "double", 999, list()), "size is not the vector's")
  Sys.chmod(f, "0666", use_umask = FALSE)
  expect_error(map_vector(f, "double", 1000, list()), "other users may write it")
  unlink(f)
})
