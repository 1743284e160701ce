# The machinery under registerDoHpcml(), hpcml_lapply() and hpcml_boot(): an R closure saved
# once (RDS, named by its content) and run as the tasks of an `r` job, one task per iteration.
#
# Every worker process reads the RDS once (the `r` kind caches it), so the loop body and
# everything it exports are loaded once per worker, never once per iteration. Task i is called
# as fun(task_index = i - 1) after R's generator is set to L'Ecuyer-CMRG and seeded from the
# job's seed and i: each iteration has its own stream, the same on every backend and worker
# count. Each value comes back serialized and is unserialized here, in order.

# Where the RDS files of kept runs live: hpcml's cache directory, as for hpcml.map's inputs.
hpcml_cache_dir <- function() {
  dir <- Sys.getenv("HPCML_CACHE_DIR")
  if (nzchar(dir)) return(dir)
  base <- Sys.getenv("XDG_CACHE_HOME")
  if (!nzchar(base)) base <- file.path(path.expand("~"), ".cache")
  file.path(base, "hpcml")
}

# Save `fun` once, under a name made of its content (`named`) or a new one; returns the path.
save_task_function <- function(fun, dir, named = TRUE) {
  dir.create(dir, recursive = TRUE, showWarnings = FALSE)
  tmp <- tempfile("hpcml-task-", tmpdir = dir, fileext = ".rds")
  saveRDS(fun, tmp, compress = FALSE)
  if (!named) return(normalizePath(tmp))
  path <- file.path(dir, sprintf("rtask-%s.rds", unname(tools::md5sum(tmp))))
  if (file.exists(path)) unlink(tmp) else file.rename(tmp, path)
  normalizePath(path)
}

# A closure the worker can call: `body(task_index)` evaluated in an environment that holds
# `objects` and whose parent is the global environment (never this package's namespace, so the
# workers need not have the R package installed), after attaching `packages`.
task_closure <- function(body, objects, packages = character(0)) {
  state <- own_env(list2env(objects, parent = globalenv()))
  state$.hpcml_packages <- packages
  state$.hpcml_body <- body
  fun <- function(task_index) {
    for (p in .hpcml_packages) {  # attached once per worker process, not once per iteration
      if (!(paste0("package:", p) %in% search())) suppressPackageStartupMessages(library(p, character.only = TRUE))
    }
    .hpcml_body(task_index + 1L)
  }
  environment(fun) <- state
  environment(state$.hpcml_body) <- state
  fun
}

# Is `x` one whole number from `low` to `high` (an R integer's range: as.integer() would
# truncate 3.5 and turn 2^31 into NA)?
is_whole_number <- function(x, low, high = .Machine$integer.max) {
  is.numeric(x) && length(x) == 1L && !is.na(x) && x >= low && x <= high && x == round(x)
}

# The seed of a call: given, else drawn from R's generator (set.seed() before the call makes
# the whole call reproducible, as with doRNG).
resolve_seed <- function(seed) {
  if (!is.null(seed)) {
    if (!is_whole_number(seed, 0)) {
      stop(sprintf("seed: must be a whole number from 0 to %d (got %s)", .Machine$integer.max, one_line(seed)),
           call. = FALSE)
    }
    return(as.integer(seed))
  }
  sample.int(.Machine$integer.max - 1L, 1L)
}

# Run `n` calls of `fun` as hpcml tasks: list(ok = n logicals, value = a list of n values (NULL
# where a call failed), error = n messages (NA where a call was ok)).
run_tasks <- function(fun, n, name, backend = "local", workers = NULL, chunk_size = NULL, out = NULL,
                      resume = FALSE, seed = NULL, options = list()) {
  seed <- resolve_seed(seed)
  for (field in c("workers", "chunk_size")) {
    value <- get(field)
    if (!is.null(value) && !is_whole_number(value, 1)) {
      stop(sprintf("backend.%s: must be a whole number of at least 1 (got %s)", field, one_line(value)), call. = FALSE)
    }
  }
  if (runs_on_r_workers(backend, !is.null(out), options)) {
    # The session's own R workers, or forks of it (local_pool.R): no Python.
    return(run_on_r_workers(fun, n, seed, workers = workers, chunk_size = chunk_size))
  }
  m <- py_modules()
  be <- c(list(name = backend), options)
  # A session runs loop after loop: its Dask LocalCluster is started once and kept (closed when
  # R quits), as the local backend keeps its worker pool.
  if (identical(backend, "dask") && is.null(be$reuse_workers) && is.null(be$address) &&
      (is.null(be$cluster) || identical(be$cluster, "local"))) be$reuse_workers <- TRUE
  if (!is.null(workers)) be$workers <- as.integer(workers)
  if (!is.null(chunk_size)) be$chunk_size <- as.integer(chunk_size)
  # The local workers start (and start R) while this session saves the loop and Python
  # prepares the run: a session's first loop waits for them once, not after its own set-up.
  m$local$prestart(reticulate::r_to_py(be), warm = "r")
  keep <- !is.null(out)
  # Workers of other backends may run on other nodes, whose temporary folder is not this one's:
  # they read the function and write their results in hpcml's cache directory instead (on
  # clusters, in the home directory every node sees). A kept run's function is named by its
  # content (a resume finds it again); any other is this call's own file, removed afterwards.
  shared <- keep || !identical(backend, "local")
  # Large vectors are written once per machine and mapped by the workers (shared.R); the files
  # of a run not kept are removed afterwards (unless another loop uses them now).
  vectors <- share_vectors(fun, shared = !identical(backend, "local"))
  on.exit(release_vectors(vectors, remove = !keep), add = TRUE)
  base <- if (shared) hpcml_cache_dir() else tempdir()
  if (keep) {
    out <- normalizePath(out, mustWork = FALSE)
    rds <- save_task_function(fun, file.path(base, "inputs"))
  } else {
    out <- tempfile("hpcml-run-", tmpdir = file.path(base, "runs"))
    rds <- save_task_function(fun, file.path(base, "inputs"), named = FALSE)
    on.exit(unlink(c(out, rds), recursive = TRUE), add = TRUE)
  }
  spec <- list(name = name, seed = seed, data = list(source = "none"),
               model = list(kind = "r", rds = rds, result = "object"),
               plan = list(replicate = list(n = as.integer(n))), backend = be, output = out)
  if (!keep && backend %in% c("local", "dask")) {
    # A run removed as soon as it ends keeps its records in memory: no chunk files to fsync,
    # no results table or report to write and read back (hpcml.map does the same).
    return(task_values(keep_r_state(py_call(m$loop_values$run_loop, reticulate::r_to_py(spec))), n))
  }
  res <- keep_r_state(py_call(m$hpcml$run, reticulate::r_to_py(spec), resume = isTRUE(resume),
                              overwrite = !isTRUE(resume), progress = FALSE, plots = FALSE))
  finalize_mpi_at_exit()
  if (py_none(res)) return(NULL)  # another MPI rank than 0: rank 0 has the results
  task_values(m$loop_values$table_values(res$results, as.integer(n)), n)
}

# Under mpirun, mpi4py finalizes MPI when Python exits, but the Python inside R never exits
# (reticulate does not finalize it): without MPI_Finalize, mpirun reports every rank as ended
# abnormally. So MPI is finalized when R quits, once the MPI backend has started it.
# The Dask LocalCluster kept for the session's loops is closed the same way (Python's own exit
# hooks never run inside R).
.finalize_mpi <- "
import sys
_warm = sys.modules.get('hpcml.backends.dask_warm')
if _warm is not None:
    _warm.close_warm()
_mpi = sys.modules.get('mpi4py.MPI')
if _mpi is not None and _mpi.Is_initialized() and not _mpi.Is_finalized():
    _mpi.Finalize()
"

finalize_mpi_at_exit <- function() {
  m <- py_modules()
  if (isTRUE(m$mpi_finalizer)) return(invisible(NULL))
  m$mpi_finalizer <- TRUE
  reg.finalizer(m, function(e) try(reticulate::py_run_string(.finalize_mpi), silent = TRUE), onexit = TRUE)
  invisible(NULL)
}

# Evaluate `expr` (a run) and give the R session back as it was: under mpirun, rank 0 runs tasks
# too, in this very R session (the embedded Python's R is this R), and an `r` task seeds R's
# generator (L'Ecuyer-CMRG) and registers foreach's sequential backend for the task's own
# %dopar%. Without this, the script's generator would change and its next %dopar% loop would
# run on doSEQ instead of doHpcml.
keep_r_state <- function(expr) {
  seed <- if (exists(".Random.seed", envir = globalenv(), inherits = FALSE)) get(".Random.seed", envir = globalenv())
  dopar <- if (requireNamespace("foreach", quietly = TRUE)) {
    globals <- get(".foreachGlobals", envir = asNamespace("foreach"))
    list(fun = globals$fun, data = globals$data, info = globals$info)
  }
  on.exit({
    if (is.null(seed)) {
      if (exists(".Random.seed", envir = globalenv(), inherits = FALSE)) rm(".Random.seed", envir = globalenv())
    } else {
      assign(".Random.seed", seed, envir = globalenv())
    }
    if (!is.null(dopar$fun)) foreach::setDoPar(dopar$fun, dopar$data, dopar$info)
  }, add = TRUE)
  expr
}

# hpcml.run returns None on the MPI ranks other than 0 (a Python None: calls are unconverted).
py_none <- function(x) is.null(x) || inherits(x, "python.builtin.NoneType")

# What hpcml.drivers.loop_values returns (a Python tuple, unconverted) -> list(ok, value, error):
# every value's bytes come over in one conversion and are cut apart here.
task_values <- function(pair, n) {
  parts <- reticulate::py_to_r(pair)  # a tuple of six: one conversion
  part <- function(k) parts[[k + 1L]]
  ok <- as.logical(part(0))
  value <- vector("list", n)
  if (any(ok)) {
    raw <- as.raw(part(1))
    ends <- cumsum(as.numeric(part(2)))
    starts <- c(1, ends[-length(ends)] + 1)
    value[ok] <- lapply(seq_along(ends), function(k) unserialize(raw[starts[k]:ends[k]]))
  }
  error <- rep(NA_character_, n)
  error[!ok] <- "no result"
  failed <- as.integer(part(3))
  if (length(failed)) {
    errors <- part(4)
    tracebacks <- part(5)
    error[failed + 1L] <- mapply(task_error, errors, tracebacks, USE.NAMES = FALSE)
  }
  list(ok = ok, value = value, error = error)
}

# "RError: message" -> "message": the R error as R printed it, every line of it.
task_error <- function(error, traceback = NULL) {
  if (is.null(error) || (length(error) == 1 && is.na(error))) return("task failed")
  sub("^RError: ", "", whole_error(as.character(error)[1], traceback))
}

# A task's `error` holds its exception's whole message, cut at 4,000 characters; the whole
# message of an R error (a message of several lines; a parse error's lines that show where the
# code is wrong) also ends the task's `traceback`: it replaces `error` when they agree.
whole_error <- function(error, traceback) {
  full <- r_error_message(traceback)
  if (!is.null(full) && startsWith(paste0("RError: ", full), error)) paste0("RError: ", full) else error
}

# The message of the RError a Python traceback ends with (NULL when it ends with another error).
r_error_message <- function(traceback) {
  if (!is.character(traceback) || length(traceback) != 1L || is.na(traceback)) return(NULL)
  head <- "(^|\n)hpcml\\.models\\.r\\.bridge\\.RError: "
  starts <- gregexpr(head, traceback)[[1]]
  if (starts[1] < 0) return(NULL)
  last <- starts[length(starts)]
  sub("\\s+$", "", sub(head, "", substring(traceback, last)))
}
