# hpcml_bootstrap(): the bootstrap of an lm/glm formula, run as an hpcml job spec.
# (hpcml_boot(), the boot::boot-compatible API for any statistic, is in boot_compat.R.)

#' Bootstrap a linear or logistic regression formula with hpcml
#'
#' Refits \code{formula} on \code{B} bootstrap resamples of \code{data} in parallel. The design
#' matrix is built by R's \code{model.matrix}, so factors expand exactly as in \code{lm} and
#' \code{glm} and the coefficient names match theirs (e.g. \code{afamyes}). Each replicate is
#' seeded from \code{seed} and its index, so the numbers are the same on every backend.
#'
#' @param formula A model formula, e.g. \code{deny ~ afam + pirat}.
#' @param data A data.frame holding the formula's variables.
#' @param B Number of bootstrap replicates.
#' @param family "gaussian" (least squares, like \code{lm}) or "binomial" (logistic, like
#'   \code{glm(family = binomial)}; the response's first level is 0, as in \code{glm}).
#' @param backend,workers,chunk_size Where and how to run (see \code{\link{hpcml_run}}).
#' @param seed Root seed of the resampling.
#' @param out Run directory, with its plots (default: a temporary folder, no plots).
#' @param bca BCa limits in \code{table}: they need a jackknife of the full data (200
#'   leave-group-out fits). \code{FALSE} skips it when only the SEs and percentile limits are
#'   wanted; \code{t}, \code{t0} and \code{se} are the same either way.
#' @return A list of class \code{hpcml_boot}: \code{t} (a data.frame, one row per replicate,
#'   one column per coefficient), \code{t0} (coefficients of the fit on all rows), \code{se}
#'   (bootstrap standard errors), \code{table} (estimate, mean, se, percentile and, with
#'   \code{bca}, BCa limits), \code{run}.
#' @examples
#' \dontrun{
#' data("HMDA", package = "AER")
#' b <- hpcml_bootstrap(deny ~ afam + pirat, HMDA, B = 1000, family = "binomial")
#' b$se
#' }
#' @importFrom stats model.frame model.matrix model.response setNames
#' @export
hpcml_bootstrap <- function(formula, data, B = 1000, family = c("gaussian", "binomial"),
                            backend = "local", workers = NULL, seed = 0L, chunk_size = NULL, out = NULL,
                            bca = TRUE) {
  family <- match.arg(family)
  mf <- model.frame(formula, data)
  X <- model.matrix(formula, mf)
  y <- model.response(mf)
  if (family == "binomial") y <- binary_response(y)
  intercept <- "(Intercept)" %in% colnames(X)
  X <- X[, colnames(X) != "(Intercept)", drop = FALSE]
  coef_names <- c(if (intercept) "(Intercept)", colnames(X))
  target <- make.unique(c(colnames(X), "response"))[ncol(X) + 1]
  model <- list(kind = if (family == "gaussian") "ols" else "logistic", features = as.list(colnames(X)),
                fit_intercept = intercept)
  plan <- list(bootstrap = list(replicates = as.integer(B), bca = isTRUE(bca)))
  spec <- spec_list("r-bootstrap", target, model, plan, backend, workers, seed, out, chunk_size)
  frame <- py_matrix_frame(cbind(X, as.numeric(y)), c(colnames(X), target))
  run <- hpcml_run(spec, plots = !is.null(out), data = frame)  # plots only where the caller keeps the run
  ok <- run$results[run$results$status == "ok", , drop = FALSE]
  ok <- ok[order(ok$task_index), , drop = FALSE]
  t <- ok[, paste0("coef_", coef_names), drop = FALSE]
  names(t) <- coef_names
  rownames(t) <- NULL
  table <- run$table
  table$output <- sub("^coef_", "", table$output)
  t0 <- setNames(table$estimate[match(coef_names, table$output)], coef_names)
  se <- setNames(vapply(t, stats::sd, numeric(1)), coef_names)
  structure(list(t = t, t0 = t0, se = se, table = table, R = nrow(t), family = family, call = match.call(),
                 run = run), class = "hpcml_boot")
}

# A numeric matrix as a pandas DataFrame with these column names: handed over as one NumPy
# array (no data.frame of R's, no row names), the same doubles as data.frame(X) would give.
py_matrix_frame <- function(M, names) {
  m <- py_modules()
  storage.mode(M) <- "double"
  dimnames(M) <- NULL
  m$pandas_raw$DataFrame(reticulate::r_to_py(M), columns = reticulate::r_to_py(as.list(names)), copy = FALSE)
}

# glm's rule for a binomial response: a factor's first level is failure, others success.
binary_response <- function(y) {
  if (is.factor(y)) return(as.numeric(y != levels(y)[1]))
  if (is.logical(y)) return(as.numeric(y))
  y <- as.numeric(y)
  if (!all(y %in% c(0, 1))) stop("family = \"binomial\" needs a 0/1, logical or factor response", call. = FALSE)
  y
}

#' @export
print.hpcml_boot <- function(x, ...) {
  cat(sprintf("hpcml bootstrap (%s), %d replicates\n", x$family, x$R))
  tab <- data.frame(original = x$t0, bias = colMeans(x$t) - x$t0, std.error = x$se, check.names = FALSE)
  print(tab)
  invisible(x)
}
