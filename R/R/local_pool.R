# R loops on the local backend, run by R worker processes of this session, without Python.
#
# A loop without `out` on the local backend (foreach with registerDoHpcml(), hpcml_lapply,
# hpcml_boot) needs nothing from Python: its iterations are R calls, and each iteration's seed
# is an integer computed by hpcml's seed contract (src/task_seeds.c: the same integers the
# Python workers compute). So such a loop runs on R processes this session starts once and
# keeps (a PSOCK cluster of the parallel package, closed when R quits): the loop's function
# goes to each worker once, serialized; each chunk of iterations goes as one call and comes
# back as one list of values. Python starts only when a loop needs it (another backend, `out`,
# backend options, a large vector to share). The values, errors and seeds are those of the
# Python path: iteration i runs fun(task_index = i - 1) after
# set.seed(seed_i, kind = "L'Ecuyer-CMRG"). options(hpcml.r_workers = "python") sends every
# loop through Python instead.

# Can this loop run on the session's R workers?
runs_on_r_workers <- function(backend, keep, options) {
  identical(backend, "local") && !keep && !length(options) &&
    !identical(getOption("hpcml.r_workers", "r"), "python")
}

# The session's R workers: at least `workers` of them, started on first use and kept.
r_workers <- function(workers) {
  pool <- .hpcml$r_pool
  if (!is.null(pool) && length(pool) < workers) {
    stop_r_workers()
    pool <- NULL
  }
  if (is.null(pool)) {
    # Without TCP_NODELAY on both ends, a chunk's values of a few kilobytes wait for the
    # other end's delayed acknowledgement (tens of milliseconds per message).
    old <- options(socketOptions = "no-delay")
    on.exit(options(old), add = TRUE)
    pool <- parallel::makePSOCKcluster(workers, rscript_args = c("-e", shQuote("options(socketOptions = 'no-delay')")))
    .hpcml$r_pool <- pool
    # the packages a loop attaches are found where this session finds them
    parallel::clusterCall(pool, function(paths) invisible(.libPaths(paths)), .libPaths())
    if (!isTRUE(.hpcml$r_pool_finalizer)) {
      .hpcml$r_pool_finalizer <- TRUE
      reg.finalizer(.hpcml, function(e) stop_r_workers(), onexit = TRUE)
    }
  }
  pool[seq_len(workers)]
}

stop_r_workers <- function() {
  pool <- .hpcml$r_pool
  .hpcml$r_pool <- NULL
  if (!is.null(pool)) try(parallel::stopCluster(pool), silent = TRUE)
  invisible(NULL)
}

# Run on a worker (its environment is the global one: workers need not have this package
# loaded): keep the loop's function, mapping the large vectors it refers to (R/shared.R).
receive_loop <- function(blob) {
  fn <- unserialize(blob)
  state <- environment(fn)
  if (exists(".hpcml_attach", envir = state, inherits = FALSE)) state$.hpcml_attach()
  # a %dopar% inside the loop body runs sequentially in the worker, as on hpcml's other workers
  if (requireNamespace("foreach", quietly = TRUE)) foreach::registerDoSEQ()
  assign(".hpcml_loop", fn, envir = globalenv())
  NULL
}

# Run on a worker: a chunk of iterations, each seeded as if alone, in one plain loop under one
# tryCatch (entered again after a failing iteration, whose message is kept).
run_chunk <- function(chunk) {
  fn <- get(".hpcml_loop", envir = globalenv())
  indices <- chunk$indices
  seeds <- chunk$seeds
  n <- length(indices)
  ok <- logical(n)
  values <- vector("list", n)
  errors <- rep(NA_character_, n)
  k <- 1L
  j <- 0L
  while (k <= n) {
    k <- tryCatch({
      for (j in k:n) {
        set.seed(seeds[j], kind = "L'Ecuyer-CMRG")
        value <- fn(task_index = indices[j])
        if (!is.null(value)) values[[j]] <- value
        ok[j] <- TRUE
      }
      n + 1L
    }, error = function(e) {
      errors[j] <<- conditionMessage(e)
      j + 1L
    })
  }
  list(ok = ok, value = values, error = errors)
}

# The chunks of a loop of `n` iterations on `workers` workers: `chunk_size` iterations each, or
# four chunks a worker (a slow iteration holds up only its own chunk).
loop_chunks <- function(n, seed, workers, chunk_size = NULL) {
  size <- if (is.null(chunk_size)) max(1L, as.integer(ceiling(n / (4 * workers)))) else as.integer(chunk_size)
  starts <- seq(1L, n, by = size)
  seeds <- .Call(C_hpcml_task_seeds, as.numeric(seed), 0, as.integer(n))
  lapply(starts, function(a) {
    b <- min(n, a + size - 1L)
    list(indices = (a:b) - 1L, seeds = seeds[a:b])
  })
}

# `fun`'s `n` iterations on the session's R workers: list(ok, value, error) as run_tasks returns.
run_on_r_workers <- function(fun, n, seed, workers = NULL, chunk_size = NULL) {
  workers <- as.integer(workers %||% default_workers())
  if (is.na(workers) || workers < 1L) stop(sprintf("backend.workers: must be at least 1 (got %s)", workers), call. = FALSE)
  if (!is.null(chunk_size) && (is.na(chunk_size) || chunk_size < 1L)) {
    stop(sprintf("backend.chunk_size: must be at least 1 (got %s)", chunk_size), call. = FALSE)
  }
  if (is.na(seed) || seed < 0) stop(sprintf("seed: must be a non-negative integer (got %s)", seed), call. = FALSE)
  if (n == 0) return(list(ok = logical(0), value = list(), error = character(0)))
  chunks <- loop_chunks(n, seed, workers, chunk_size)
  pool <- r_workers(min(workers, length(chunks)))
  environment(receive_loop) <- globalenv()
  environment(run_chunk) <- globalenv()
  blob <- serialize(fun, NULL)
  parts <- tryCatch({
    parallel::clusterCall(pool, receive_loop, blob)
    parallel::clusterApplyLB(pool, chunks, run_chunk)
  }, error = function(e) {
    # A worker that died (the loop body ended its process, or it crashed) takes the loop's
    # values with it: every iteration is reported failed, and the next loop starts new workers.
    stop_r_workers()
    structure(list(), error = conditionMessage(e))
  })
  if (!is.null(attr(parts, "error"))) {
    why <- sprintf("an R worker process of this session died or could not be reached (%s)", attr(parts, "error"))
    return(list(ok = rep(FALSE, n), value = vector("list", n), error = rep(why, n)))
  }
  list(ok = unlist(lapply(parts, `[[`, "ok"), use.names = FALSE),
       value = do.call(c, lapply(parts, `[[`, "value")),
       error = unlist(lapply(parts, `[[`, "error"), use.names = FALSE))
}
