#' Apply a function to each element of a list on hpcml's backends
#'
#' \code{lapply(X, FUN, ...)} with every call an hpcml task: on local processes, Dask or MPI,
#' with the same numbers on every backend and worker count (call \emph{i} draws from its own
#' L'Ecuyer-CMRG stream, seeded from \code{seed} and \emph{i}). \code{FUN}, \code{X} and
#' \code{...} are serialized once and read once per worker process. Variables that \code{FUN}
#' uses (from its environment and every enclosing one up to the global environment) travel
#' with it, as \pkg{foreach} exports a loop's.
#'
#' @param X A vector or list.
#' @param FUN The function to apply to each element.
#' @param ... More arguments to \code{FUN}.
#' @param backend Where the calls run ("local", "dask", "mpi", ...; see
#'   \code{\link{registerDoHpcml}}).
#' @param workers Number of worker processes (NULL: the backend's default).
#' @param chunk_size Calls per chunk handed to a worker (NULL: hpcml chooses).
#' @param seed Root seed of the calls' streams (NULL: drawn from R's generator, so
#'   \code{set.seed()} before the call makes it reproducible).
#' @param out A run directory to keep (NULL: a temporary one, removed afterwards).
#' @param resume With \code{out}: run only the calls without a result there (after a crash).
#' @return A list as long as \code{X}, with its names. If calls fail, an R error naming the
#'   first failed element (its index and name) and R's message.
#' @examples
#' \dontrun{
#' fits <- hpcml_lapply(split(mtcars, mtcars$cyl), function(d) coef(lm(mpg ~ wt, data = d)),
#'                      workers = 2)
#' }
#' @export
hpcml_lapply <- function(X, FUN, ..., backend = "local", workers = NULL, chunk_size = NULL, seed = NULL,
                         out = NULL, resume = FALSE) {
  FUN <- match.fun(FUN)
  X <- as.list(X)
  if (!length(X)) return(list())
  FUN <- with_globals(FUN)
  # With no `...`, FUN is called as lapply calls it (one call per element, no do.call).
  body <- if (...length()) function(i) do.call(.hpcml_FUN, c(list(.hpcml_X[[i]]), .hpcml_dots))
          else function(i) .hpcml_FUN(.hpcml_X[[i]])
  fun <- task_closure(body, list(.hpcml_FUN = FUN, .hpcml_X = X, .hpcml_dots = list(...)))
  values <- run_tasks(fun, length(X), "lapply", backend = backend, workers = workers, chunk_size = chunk_size,
                      out = out, resume = resume, seed = seed)
  if (is.null(values)) return(NULL)  # an MPI rank other than 0
  failed <- which(!values$ok)
  if (length(failed)) {
    k <- failed[1]
    label <- if (!is.null(names(X)) && nzchar(names(X)[k])) sprintf("element %d ('%s')", k, names(X)[k])
             else sprintf("element %d", k)
    more <- if (length(failed) > 1) sprintf(" (%d of %d elements failed)", length(failed), length(X)) else ""
    stop(sprintf("hpcml_lapply: %s failed: %s%s", label, values$error[k], more), call. = FALSE)
  }
  out <- values$value
  names(out) <- names(X)
  out
}

# A function of the user's (defined at top level, or in a function defined there) with the
# variables it uses (found as foreach finds a loop's, in its environment and every enclosing one
# up to the global environment) copied into an environment of its own whose parent is the
# global environment: workers have an empty global environment, and a closure made in a
# function needs the globals it uses as much as its local variables. A function whose
# environment leads to a package namespace (a package's function, or a closure one made) keeps
# its environment: it finds what it needs in the package.
with_globals <- function(FUN) {
  if (!user_environment(environment(FUN))) return(FUN)
  exports <- own_env(new.env(parent = globalenv()))
  # Default values of the arguments may use variables too.
  defaults <- Filter(function(x) !(is.name(x) && !nzchar(as.character(x))), as.list(formals(FUN)))
  used <- as.call(c(as.name("{"), unname(defaults), list(body(FUN))))
  collect_exports(used, exports, environment(FUN), bad = names(formals(FUN)))
  environment(FUN) <- exports
  FUN
}

# Does `env` lead to the global environment without passing a namespace or an attached package?
user_environment <- function(env) {
  while (!is.null(env) && !identical(env, emptyenv())) {
    if (identical(env, globalenv())) return(TRUE)
    if (isNamespace(env) || identical(env, baseenv()) || !is.null(attr(env, "name"))) return(FALSE)
    env <- parent.env(env)
  }
  FALSE
}
