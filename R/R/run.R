#' Run an hpcml job spec
#'
#' Runs a YAML job spec (or the same spec as an R list) on the chosen backend and returns
#' its results. Keyword arguments override the spec, as on the command line.
#'
#' @param spec Path to a YAML job spec, or a named list with the same fields. In a list, a model
#'   of kind \code{"r"} may give an R function as \code{code}
#'   (\code{model = list(kind = "r", code = my_function)}): the function and the variables it
#'   uses (found as \pkg{foreach} finds a loop's, in its environment and every enclosing one up
#'   to the global environment) are saved once per run and read once per worker process.
#' @param backend Backend name ("local", "dask", "mpi", "spark"); NULL keeps the spec's.
#' @param workers Number of workers; NULL keeps the spec's.
#' @param out Run directory; NULL keeps the spec's.
#' @param overwrite Replace an existing hpcml run in \code{out} (only a directory holding an
#'   hpcml run is ever deleted; never the working directory or a parent of it).
#' @param resume Rerun only the tasks without an ok result in the run directory.
#' @param plots Draw the run's PNG plots into its run directory (about a second per run).
#' @param data A data.frame (or numeric matrix) to use instead of the spec's \code{data.source}:
#'   handed to Python once (\code{hpcml.run(spec, data = frame)}), stored once by content.
#' @param ... Other backend options (e.g. \code{start_method = "spawn"}).
#' @return A list of class \code{hpcml_run}: \code{results} (one row per task),
#'   \code{summary} (the plan's summary as a list), \code{table} (the summary table as a
#'   data.frame), \code{coefficients} (for a \code{fit} of \code{ols} or \code{logistic}: a
#'   data.frame shaped like \code{coef(summary(lm))} / \code{coef(summary(glm))}, NA for
#'   aliased coefficients; else NULL), \code{run_dir} and \code{ok}. With \code{backend = "mpi"}
#'   under \code{mpirun} every rank runs the job; rank 0 gets the result, the other ranks NULL.
#' @examples
#' \dontrun{
#' res <- hpcml_run("docs/examples/bootstrap.yaml", backend = "local")
#' res$table
#' }
#' @export
hpcml_run <- function(spec, backend = NULL, workers = NULL, out = NULL, overwrite = FALSE,
                      resume = FALSE, plots = TRUE, data = NULL, ...) {
  m <- py_modules()
  if (is.character(spec) && length(spec) == 1 && !file.exists(spec)) {
    stop(sprintf("spec: file not found (got '%s')", spec), call. = FALSE)
  }
  if (is.list(spec)) spec <- reticulate::r_to_py(with_r_function(spec))
  if (!is.null(workers)) workers <- as.integer(workers)
  if (!is.null(out)) out <- normalizePath(out, mustWork = FALSE)
  if (!is.null(data)) data <- py_frame(data)
  res <- keep_r_state(py_call(m$hpcml$run, spec, backend = backend, workers = workers, out = out,
                              overwrite = overwrite, resume = resume, progress = FALSE,
                              plots = isTRUE(plots), data = data, ...))
  finalize_mpi_at_exit()
  if (py_none(res)) return(invisible(NULL))  # an MPI rank other than 0: rank 0 has the results
  results <- as_r(res$results)
  if (!is.data.frame(results)) results <- as.data.frame(results)
  rownames(results) <- NULL
  if (all(c("error", "traceback") %in% names(results))) {  # R errors with all their lines (tasks.R)
    failed <- which(!is.na(results$error))
    results$error[failed] <- mapply(whole_error, results$error[failed], results$traceback[failed], USE.NAMES = FALSE)
  }
  summary <- as_r(res$summary)
  structure(list(results = results, summary = summary, table = records_frame(summary$table),
                 coefficients = coefficient_matrix(summary),
                 run_dir = as.character(reticulate::py_str(res$run_dir)), ok = isTRUE(as_r(res$ok))),
            class = "hpcml_run")
}

# A fit of ols/logistic: the summary table shaped like coef(summary(lm/glm)), NA where aliased.
coefficient_matrix <- function(summary) {
  rows <- summary$table
  if (!identical(summary$plan, "fit") || !(summary$model %in% c("ols", "logistic")) || !length(rows)) return(NULL)
  stat <- if (identical(summary$model, "ols")) "t" else "z"
  num <- function(key) vapply(rows, function(r) if (is.null(r[[key]])) NA_real_ else as.numeric(r[[key]]), numeric(1))
  out <- data.frame(num("estimate"), num("std_error"), num(paste0(stat, "_value")), num("p_value"),
                    row.names = vapply(rows, function(r) r$term, character(1)), check.names = FALSE)
  names(out) <- c("Estimate", "Std. Error", paste(stat, "value"), sprintf("Pr(>|%s|)", stat))
  out
}

#' @export
print.hpcml_run <- function(x, ...) {
  s <- x$summary
  cat(sprintf("hpcml run '%s': %s / %s, %d tasks, %d failed, %.2f s on %s\n", s$name, s$plan, s$model,
              as.integer(s$run$tasks), as.integer(s$run$failed), s$run$seconds, s$run$backend))
  print(x$table, row.names = FALSE)
  cat("run directory:", x$run_dir, "\n")
  invisible(x)
}

# `model = list(kind = "r", code = f)` with an R function `f`: the function and the variables it
# uses (exported as foreach exports a loop's) are saved once, as an RDS named by its content in
# hpcml's cache directory, and the spec names it (`rds:`); each worker process reads it once.
with_r_function <- function(spec) {
  code <- spec$model$code
  if (!is.function(code)) return(spec)
  kind <- spec$model$kind
  if (!identical(kind, "r")) {
    stop(sprintf("model.code: an R function is a model of kind 'r' (got kind '%s')",
                 if (is.null(kind)) "" else paste(kind, collapse = " ")), call. = FALSE)
  }
  spec$model$code <- NULL
  spec$model$rds <- save_task_function(with_globals(code), file.path(hpcml_cache_dir(), "inputs"))
  spec
}

as_r <- function(x) if (inherits(x, "python.builtin.object")) reticulate::py_to_r(x) else x

# A job spec list for a data.frame handed over as hpcml_run(spec, data = frame).
spec_list <- function(name, target, model, plan, backend, workers, seed, out, chunk_size = NULL) {
  be <- list(name = backend)
  if (!is.null(workers)) be$workers <- as.integer(workers)
  if (!is.null(chunk_size)) be$chunk_size <- as.integer(chunk_size)
  data <- if (is.null(target)) empty_dict() else list(target = target)
  list(name = name, seed = as.integer(seed), data = data, model = model, plan = plan, backend = be,
       output = out %||% tempfile("hpcml-run-"))
}

`%||%` <- function(a, b) if (is.null(a)) b else a

# An empty mapping for the spec (`fit: {}`): reticulate turns an empty R list into a Python list.
empty_dict <- function() reticulate::dict()
