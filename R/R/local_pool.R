# R loops on the local backend, run by R worker processes of this session, without Python.
#
# A loop without `out` on the local backend (foreach with registerDoHpcml(), hpcml_lapply,
# hpcml_boot) needs nothing from Python: its iterations are R calls, and each iteration's seed
# is an integer computed by hpcml's seed contract (src/task_seeds.c: the same integers the
# Python workers compute). So such a loop runs on R processes this session starts once and
# keeps (a PSOCK cluster of the parallel package, closed when R quits): the loop's function
# goes to each worker once, serialized; each chunk of iterations goes as one call and comes
# back as one list of values. A loop that uses a large vector (32 MiB or more, as shared.R
# counts them) runs on processes forked from the session instead, as mclapply and
# doParallel's `cores` do: they see the session's memory copy-on-write, so nothing is
# serialized, written or copied. Python starts only when a loop needs it (another backend,
# `out`, backend options). The values, errors and seeds are those of the Python path:
# iteration i runs fun(task_index = i - 1) after set.seed(seed_i, kind = "L'Ecuyer-CMRG",
# normal.kind = "Inversion", sample.kind = "Rejection").
# options(hpcml.r_workers = "python") sends every loop through Python instead.

# Can this loop run on the session's R workers?
runs_on_r_workers <- function(backend, keep, options) {
  identical(backend, "local") && !keep && !length(options) &&
    !identical(getOption("hpcml.r_workers", "r"), "python")
}

# The session's R workers: at least `workers` of them, started on first use and kept.
r_workers <- function(workers) {
  forget_parents_workers()
  pool <- .hpcml$r_pool
  # A loop that never finished (interrupted) may have left a chunk running or its value unread
  # on a socket, which the next loop would take for its own: such workers are ended, not reused.
  if (!is.null(pool) && (length(pool) < workers || isTRUE(.hpcml$r_pool_busy))) {
    stop_r_workers(kill = isTRUE(.hpcml$r_pool_busy))
    pool <- NULL
  }
  if (is.null(pool)) {
    pool <- start_r_workers(workers)
    # busy until every reply of the start is read: interrupted before, the workers are not reused
    .hpcml$r_pool_busy <- TRUE
    .hpcml$r_pool <- pool
    check_r_workers(pool)
    .hpcml$r_pool_pids <- unlist(parallel::clusterCall(pool, Sys.getpid))
    if (!isTRUE(.hpcml$r_pool_finalizer)) {
      .hpcml$r_pool_finalizer <- TRUE
      reg.finalizer(.hpcml, function(e) stop_r_workers(), onexit = TRUE)
    }
  }
  pool[seq_len(workers)]
}

# A process forked from the session (a loop body in run_forked, mclapply or mcparallel of the
# user's) inherits the session's pool: its sockets are the session's connections to the
# session's workers. A message it sent or read there would be taken for, or take, one of the
# session's, and stopCluster in its exit finalizer (a loop body calling quit()) would end the
# session's workers. It forgets them, closing nothing (its copies of the sockets close when it
# ends); its own loops run in it (run_here).
forget_parents_workers <- function() {
  # (only the session starts workers: a fork runs its loops in place)
  if (forked_from_session()) {
    .hpcml$r_pool <- NULL
    .hpcml$r_pool_pids <- NULL
    .hpcml$r_pool_busy <- FALSE
  }
  invisible(NULL)
}

# `workers` PSOCK workers. Where setsid(1) is found each starts in a session of its own: a
# Ctrl-C at the session's terminal goes to the terminal's foreground process group, which would
# otherwise hold the workers too, and a worker interrupted while it runs a call returns to
# waiting for the next one without replying (parallel's worker loop takes an interrupt as "go
# on"), leaving the session waiting for that reply forever wherever the session itself was not
# interrupted (with reticulate loaded, its interrupt handler may take the Ctrl-C instead). In a
# session of their own the interrupt reaches the session alone: its loop stops, and the next
# loop ends these workers and starts new ones.
start_r_workers <- function(workers) {
  # Without TCP_NODELAY on both ends, a chunk's values of a few kilobytes wait for the
  # other end's delayed acknowledgement (tens of milliseconds per message).
  old <- options(socketOptions = "no-delay")
  on.exit(options(old), add = TRUE)
  args <- c("-e", shQuote("options(socketOptions = 'no-delay')"))
  setsid <- if (.Platform$OS.type == "unix") Sys.which("setsid") else ""
  if (!nzchar(setsid)) return(parallel::makePSOCKcluster(workers, rscript_args = args))
  # The command is `setsid Rscript --default-packages=... -e ...`: `methods` would put its
  # --default-packages before Rscript, so the same packages are named here instead.
  rscript <- file.path(R.home("bin"), "Rscript")
  parallel::makePSOCKcluster(workers, rscript = unname(setsid), methods = FALSE,
                             rscript_args = c(shQuote(rscript), worker_default_packages, args))
}

# What parallel's `methods = TRUE` (its default) gives a worker.
worker_default_packages <- "--default-packages=datasets,utils,grDevices,graphics,stats,methods"

# The cluster's port listens on every interface until each worker has connected: a process
# that connected in a worker's place (another user's, another machine's) would be sent loops
# and could return values of its own. Before anything else is sent, each worker must read back
# a random token from a file only this user can read, in this session's temporary folder.
check_r_workers <- function(pool) {
  # never from R's generator: starting workers must not change the session's random numbers
  token <- if (file.exists("/dev/urandom")) {
    con <- file("/dev/urandom", "rb", raw = TRUE)
    on.exit(close(con), add = TRUE)
    paste(readBin(con, "raw", 20L), collapse = "")
  } else {
    basename(tempfile("", tmpdir = ""))
  }
  file <- tempfile("hpcml-workers-")
  writeLines(token, file)
  Sys.chmod(file, "0600")
  on.exit(unlink(file), add = TRUE)
  read_token <- function(f) readLines(f, warn = FALSE)[1]
  environment(read_token) <- globalenv()  # nothing of this package's needed on the worker
  read <- tryCatch(parallel::clusterCall(pool, read_token, file), error = function(e) list())
  if (length(read) != length(pool) || !all(vapply(read, identical, NA, token))) {
    stop_r_workers(kill = TRUE)
    stop("local backend: a process that is not one of this session's R workers connected in a worker's place; ",
         "no loop was sent to it", call. = FALSE)
  }
  invisible(TRUE)
}

# `kill`: also end the processes (a worker still running a chunk never reads stopCluster's
# message; one in an endless loop would run on). In a process forked from the session (its exit
# runs this finalizer when a loop body calls quit()) the workers are the session's: untouched.
stop_r_workers <- function(kill = FALSE) {
  force(kill)  # before the busy flag it may be computed from is cleared
  forget_parents_workers()
  pool <- .hpcml$r_pool
  pids <- .hpcml$r_pool_pids
  .hpcml$r_pool <- NULL
  .hpcml$r_pool_pids <- NULL
  .hpcml$r_pool_busy <- FALSE
  if (!is.null(pool)) try(parallel::stopCluster(pool), silent = TRUE)
  if (kill && length(pids)) tools::pskill(pids, tools::SIGKILL)
  invisible(NULL)
}

# Run on a worker (its environment is the global one: workers need not have this package
# loaded): keep the loop's function, in the session's working directory and library paths of
# now, not of when the worker started (a relative path in the loop body means what it means
# in the session). TRUE, or "interrupted" for a worker interrupted here (SIGINT sent to it):
# parallel's worker loop takes an interrupt as "go on" and would send no reply at all, while
# the session waits for one.
receive_loop <- function(blob, wd, paths, opts) {
  tryCatch({
    setwd(wd)
    .libPaths(paths)
    # the session's options() too, as a fork of the session has them, and nothing an earlier
    # loop's body set (options(contrasts = ...) in one loop must not change the next one's fits)
    current <- options()
    for (name in setdiff(names(current), names(opts))) try(options(stats::setNames(list(NULL), name)), silent = TRUE)
    for (name in names(opts)) {  # only those that differ: setting every option costs a millisecond a loop
      if (!identical(current[[name]], opts[[name]])) try(options(opts[name]), silent = TRUE)
    }
    fn <- unserialize(blob)
    # a %dopar% inside the loop body runs sequentially in the worker, as on hpcml's other workers
    if (requireNamespace("foreach", quietly = TRUE)) foreach::registerDoSEQ()
    assign(".hpcml_loop", fn, envir = globalenv())
    TRUE
  }, interrupt = function(e) "interrupted")
}

# Run on a worker: a chunk of iterations, each seeded as if alone, in one plain loop under one
# tryCatch (entered again after a failing iteration, whose message is kept). A chunk interrupted
# on its worker (SIGINT sent to it) replies list(interrupted = TRUE), as receive_loop does.
run_chunk <- function(chunk, fn = get(".hpcml_loop", envir = globalenv())) {
  tryCatch({
    indices <- chunk$indices
    seeds <- chunk$seeds
    n <- length(indices)
    ok <- logical(n)
    values <- vector("list", n)
    errors <- rep(NA_character_, n)
    # Every iteration runs with R's default normal and sample kinds, whatever an earlier loop on
    # this worker, an earlier iteration or (in a fork) the session set: they are set here, and
    # set again before an iteration only when .Random.seed's first element, the code of all three
    # kinds, says they changed (naming them in every set.seed costs more than a tiny iteration).
    RNGkind("L'Ecuyer-CMRG", "Inversion", "Rejection")
    kinds <- globalenv()$.Random.seed[1L]
    k <- 1L
    j <- 0L
    while (k <= n) {
      k <- tryCatch({
        for (j in k:n) {
          current <- globalenv()$.Random.seed
          if (is.null(current) || current[1L] != kinds) RNGkind("L'Ecuyer-CMRG", "Inversion", "Rejection")
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
  }, interrupt = function(e) list(interrupted = TRUE))
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

# `fun`'s `n` iterations on the session's R workers (or forked processes, for a loop that uses
# a large vector): list(ok, value, error) as run_tasks returns.
run_on_r_workers <- function(fun, n, seed, workers = NULL, chunk_size = NULL) {
  workers <- as.integer(workers %||% default_workers())  # checked by run_tasks, as `seed`
  if (n == 0) return(list(ok = logical(0), value = list(), error = character(0)))
  chunks <- loop_chunks(n, seed, workers, chunk_size)
  workers <- min(workers, length(chunks))
  parts <- if (forked_from_session()) {
    run_here(fun, chunks)
  } else if (.Platform$OS.type == "unix" && holds_large_vectors(fun)) {
    run_forked(fun, chunks, workers)
  } else {
    run_on_pool(fun, chunks, workers)
  }
  parts <- lapply(parts, checked_part)
  lost <- which(vapply(parts, function(p) !is.null(attr(p, "lost")), NA))
  if (length(lost)) {
    # A worker that died (the loop body ended its process, or it crashed) is not an iteration's
    # error: the loop fails whatever its error handling (.errorhandling = "remove" would
    # otherwise return the other iterations as if nothing had happened).
    first <- chunks[[lost[1]]]$indices + 1L
    where <- if (length(lost) == length(chunks) && length(chunks) > 1) "the loop" else
      sprintf("iterations %d to %d", min(first), max(first))
    how <- if (identical(attr(parts[[lost[1]]], "lost"), interrupted_why)) "was interrupted" else
      "died or could not be reached"
    stop(sprintf("an R worker process of this session %s while running %s (%s); %s",
                 how, where, attr(parts[[lost[1]]], "lost"), "no values were returned"), call. = FALSE)
  }
  list(ok = unlist(lapply(parts, `[[`, "ok"), use.names = FALSE),
       value = do.call(c, lapply(parts, `[[`, "value")),
       error = unlist(lapply(parts, `[[`, "error"), use.names = FALSE))
}

# The process that loaded the package; any other process with this package loaded is a fork of
# it (a loop body in run_forked, or the user's own mclapply or mcparallel).
.onLoad <- function(libname, pkgname) {
  .hpcml$session_pid <- Sys.getpid()
}

forked_from_session <- function() {
  !is.null(.hpcml$session_pid) && !identical(.hpcml$session_pid, Sys.getpid())
}

# A loop inside a fork of the session runs its chunks in the fork, one after another, as a
# %dopar% in a loop body does: the session's workers are the session's (a fork sending them a
# chunk on the sockets it inherited would read, or lose, another process's reply), and forks
# starting workers of their own at once would all draw the same port from the same random
# numbers. The fork's own random numbers are given back as they were.
run_here <- function(fun, chunks) {
  seed <- globalenv()$.Random.seed
  kinds <- RNGkind()
  on.exit({
    if (is.null(seed)) {
      suppressWarnings(RNGkind(kinds[1], kinds[2], kinds[3]))
      rm(".Random.seed", envir = globalenv())
    } else {
      assign(".Random.seed", seed, envir = globalenv())
    }
  })
  lapply(chunks, run_chunk, fn = fun)
}

# A chunk whose worker was lost: `why` is kept for the iterations' error.
lost_chunk <- function(why) structure(list(), lost = why)

interrupted_why <- "SIGINT"

# A chunk's reply as run_on_r_workers takes it: run_chunk's list, or a lost chunk (one
# interrupted on its worker, or anything else a worker could send back).
checked_part <- function(p) {
  if (!is.null(attr(p, "lost"))) return(p)
  if (is.list(p) && identical(names(p), c("ok", "value", "error"))) return(p)
  if (is.list(p) && isTRUE(p$interrupted)) return(lost_chunk(interrupted_why))
  lost_chunk("its reply was not a chunk's values")
}

# The chunks on the session's kept R workers.
run_on_pool <- function(fun, chunks, workers) {
  pool <- r_workers(workers)
  environment(receive_loop) <- globalenv()
  environment(run_chunk) <- globalenv()
  blob <- serialize(fun, NULL)
  .hpcml$r_pool_busy <- TRUE  # cleared when every chunk's value is read
  parts <- tryCatch({
    kept <- parallel::clusterCall(pool, receive_loop, blob, getwd(), .libPaths(), options())
    if (all(vapply(kept, isTRUE, NA))) {
      parallel::clusterApplyLB(pool, chunks, run_chunk)
    } else {  # a worker without the loop's function: nothing is sent
      rep(list(lost_chunk(interrupted_why)), length(chunks))
    }
  }, error = function(e) {
    # which chunks were lost is not known: all of them are, and the next loop starts new workers
    stop_r_workers(kill = TRUE)
    rep(list(lost_chunk(conditionMessage(e))), length(chunks))
  })
  .hpcml$r_pool_busy <- FALSE
  parts
}

# The chunks on processes forked from this session, one a chunk, `workers` at a time (mclapply):
# the loop's large vectors are the session's own pages, shared until a process writes them.
run_forked <- function(fun, chunks, workers) {
  one <- function(chunk) {
    # a %dopar% inside the loop body runs sequentially in the fork, as on hpcml's workers
    if (requireNamespace("foreach", quietly = TRUE)) foreach::registerDoSEQ()
    run_chunk(chunk, fun)
  }
  parts <- suppressWarnings(parallel::mclapply(chunks, one, mc.cores = workers, mc.preschedule = FALSE,
                                               mc.set.seed = FALSE, mc.silent = TRUE))
  lapply(parts, function(p) {
    if (is.list(p) && !inherits(p, "try-error")) return(p)  # checked by checked_part
    lost_chunk(if (inherits(p, "try-error")) conditionMessage(attr(p, "condition")) else "the forked process ended")
  })
}

# Does the loop's function hold a vector that shared.R would write once and map (a double,
# integer or logical vector of HPCML_MAP_MIN_BYTES or more)?
holds_large_vectors <- function(fun) {
  min_bytes <- shared_min_bytes()
  found <- FALSE
  leaf <- function(x) {
    type <- typeof(x)
    size <- if (type == "double") 8 else 4
    if (type %in% c("double", "integer", "logical") && !isS4(x) && length(x) * size >= min_bytes) found <<- TRUE
    x
  }
  walk_objects(environment(fun), leaf, ceiling(min_bytes / 8))
  found
}
