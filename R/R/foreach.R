#' Run foreach loops on hpcml's backends
#'
#' Registers hpcml as the \code{\%dopar\%} backend of \pkg{foreach}: a loop written for
#' \pkg{doParallel} or \pkg{doMPI} runs unchanged on local processes, Dask or MPI, with the
#' same numbers on every backend and worker count.
#'
#' The loop body and the objects it uses (found as foreach finds them, plus \code{.export})
#' are serialized once per loop into one file and read once per worker process, not once per
#' iteration. Each iteration is one hpcml task: before it runs, R's generator is set to
#' L'Ecuyer-CMRG and seeded from the loop's seed and the iteration's index, so every
#' iteration draws from its own stream (as with \pkg{doRNG}) whatever the backend, the number
#' of workers or the chunking.
#'
#' \code{foreach}'s \code{.combine}, \code{.inorder}, \code{.multicombine},
#' \code{.maxcombine}, \code{.export}, \code{.noexport}, \code{.packages} and
#' \code{.errorhandling} (\code{"stop"}, \code{"remove"}, \code{"pass"}) work as with
#' doParallel. With \code{"pass"} a failed iteration's value is a \code{simpleError} carrying
#' R's message. Per loop, \code{.options.hpcml = list(...)} overrides the registered
#' \code{backend}, \code{workers}, \code{chunk_size}, \code{seed}, and sets \code{out} (a run
#' directory to keep) and \code{resume} (\code{TRUE}: rerun only the iterations without a
#' result in \code{out}, e.g. after a crash; needs a fixed \code{seed}).
#'
#' @param backend Where iterations run: "local" (processes on this machine), "dask", "mpi"
#'   (every rank of an \code{mpirun} runs the script; rank 0 gets the loop's value, the other
#'   ranks \code{NULL}) or another hpcml backend.
#' @param workers Number of worker processes (NULL: the backend's default).
#' @param chunk_size Iterations per chunk handed to a worker (NULL: hpcml chooses).
#' @param seed Root seed of the iterations' streams. NULL draws one from R's generator at
#'   each loop, so \code{set.seed()} before the loop makes it reproducible.
#' @param ... Other backend options (e.g. \code{start_method = "spawn"}, \code{address} of a
#'   Dask scheduler).
#' @return \code{registerDoHpcml} returns nothing useful (invisible NULL).
#' @seealso \code{\link{hpcml_lapply}}, \code{\link{hpcml_boot}}
#' @examples
#' \dontrun{
#' library(foreach)
#' registerDoHpcml(backend = "local", workers = 2)
#' getDoParName()                     # "doHpcml"
#' coefs <- foreach(i = 1:24, .combine = rbind) %dopar% {
#'   x <- rnorm(100); y <- 2 * x + rnorm(100)
#'   coef(lm(y ~ x))
#' }
#' }
#' @export
registerDoHpcml <- function(backend = "local", workers = NULL, chunk_size = NULL, seed = NULL, ...) {
  config <- list(backend = backend, workers = workers, chunk_size = chunk_size, seed = seed,
                 options = list(...))
  foreach::setDoPar(doHpcml, data = config, info = doHpcml_info)
  invisible(NULL)
}

doHpcml_info <- function(data, item) {
  switch(item,
         workers = as.integer(data$workers %||% default_workers()),
         name = "doHpcml",
         version = as.character(utils::packageVersion("hpcml")),
         NULL)
}

# hpcml's local backend uses one worker per core when not told.
default_workers <- function() {
  n <- parallel::detectCores()
  if (is.na(n)) 1L else n
}

# What foreach's makeDotsEnv does in doParallel: an environment holding the loop's `...`,
# whose parent is the global environment (never this namespace, which workers need not have).
make_dots_env <- function(...) {
  list(...)
  function() NULL
}

# The variables `expr` uses, found as foreach finds them, in `envir` and every enclosing
# environment up to the global one: a loop inside a function (or a test) sees what a forked
# doParallel worker sees. A name is taken from the innermost environment that has it.
collect_exports <- function(expr, exportenv, envir, bad = character(0)) {
  env <- envir
  repeat {
    if (identical(env, emptyenv()) || isNamespace(env) || identical(env, baseenv())) break
    if (!identical(env, globalenv()) && !is.null(attr(env, "name"))) break  # an attached package
    foreach::getexports(expr, exportenv, env, bad = union(bad, ls(exportenv, all.names = TRUE)))
    if (identical(env, globalenv())) break
    env <- parent.env(env)
  }
  invisible(exportenv)
}

doHpcml <- function(obj, expr, envir, data) {
  if (!inherits(obj, "foreach")) stop("obj must be a foreach object", call. = FALSE)
  opts <- obj$options$hpcml %||% list()
  known <- c("backend", "workers", "chunk_size", "seed", "out", "resume")
  bad <- setdiff(names(opts), known)
  if (length(bad)) {
    stop(sprintf(".options.hpcml: unknown option '%s'; use %s", bad[1], paste(known, collapse = ", ")),
         call. = FALSE)
  }
  config <- utils::modifyList(data, opts[intersect(names(opts), c("backend", "workers", "chunk_size", "seed"))])

  it <- iterators::iter(obj)
  args_list <- as.list(it)
  accumulator <- foreach::makeAccum(it)

  # The objects the body uses, found as doParallel finds them, plus .export.
  dots <- make_dots_env
  environment(dots) <- globalenv()
  exportenv <- tryCatch({
    args <- eval(quote(list(...)), envir)
    environment(do.call(dots, args))
  }, error = function(e) new.env(parent = globalenv()))
  own_env(exportenv)
  collect_exports(expr, exportenv, envir, bad = union(obj$noexport, obj$argnames))
  for (sym in obj$export) {
    if (!exists(sym, envir, inherits = TRUE)) stop(sprintf("unable to find variable \"%s\"", sym), call. = FALSE)
    assign(sym, get(sym, envir, inherits = TRUE), pos = exportenv, inherits = FALSE)
  }

  values <- if (length(args_list)) {
    body <- function(i) eval(.hpcml_expr, list2env(.hpcml_args[[i]], parent = .hpcml_exports))
    fun <- task_closure(body, list(.hpcml_expr = expr, .hpcml_args = args_list, .hpcml_exports = exportenv),
                        packages = obj$packages)
    run_tasks(fun, length(args_list), "foreach", backend = config$backend, workers = config$workers,
              chunk_size = config$chunk_size, out = opts$out, resume = isTRUE(opts$resume),
              seed = config$seed, options = config$options)
  } else {
    list(ok = logical(0), value = list(), error = character(0))
  }
  if (is.null(values)) return(NULL)  # an MPI rank other than 0

  results <- values$value
  results[!values$ok] <- lapply(values$error[!values$ok], simpleError)
  tryCatch(accumulator(results, seq_along(results)), error = function(e) {
    stop(simpleError(sprintf("error calling combine function:\n%s", conditionMessage(e))))
  })
  error_value <- foreach::getErrorValue(it)
  error_index <- foreach::getErrorIndex(it)
  if (identical(obj$errorHandling, "stop") && !is.null(error_value)) {
    stop(simpleError(sprintf("task %d failed - \"%s\"", error_index, conditionMessage(error_value)), call = expr))
  }
  foreach::getResult(it)
}
