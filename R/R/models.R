#' k-means clustering with hpcml
#'
#' Lloyd's algorithm with k-means++ starts, \code{nstart} starts kept by lowest
#' within-cluster sum of squares, seeded so every backend gives the same centers.
#'
#' @param x A numeric matrix or data.frame (rows are observations).
#' @param centers Number of clusters.
#' @param nstart Number of random starts.
#' @param iter.max Maximum iterations per start.
#' @param tol 0 (default): Lloyd until no row changes cluster, as \code{stats::kmeans}; a
#'   positive value stops earlier once the centres move less than \code{tol} times the mean
#'   column variance. The centres are the means of their clusters either way.
#' @param seed Root seed.
#' @param backend,workers Where to run (see \code{\link{hpcml_run}}).
#' @return A list of class \code{hpcml_kmeans} like \code{stats::kmeans}: \code{cluster},
#'   \code{centers}, \code{tot.withinss}, \code{size}, \code{iter}.
#' @examples
#' \dontrun{
#' km <- hpcml_kmeans(iris[, 1:4], centers = 3)
#' table(km$cluster, iris$Species)
#' }
#' @export
hpcml_kmeans <- function(x, centers = 3, nstart = 10, iter.max = 300, tol = 0, seed = 0L, backend = "local",
                         workers = 1) {
  x <- numeric_frame(x)
  model <- list(kind = "kmeans", features = as.list(names(x)), k = as.integer(centers),
                n_init = as.integer(nstart), max_iter = as.integer(iter.max), tol = as.numeric(tol))
  run <- hpcml_run(spec_list("r-kmeans", NULL, model, list(fit = empty_dict()), backend, workers, seed, NULL),
                   plots = FALSE, data = x)
  row <- run$results[1, ]
  if (!identical(row$status, "ok")) stop(row$error, call. = FALSE)
  k <- as.integer(centers)
  ctr <- t(vapply(seq_len(k), function(j) unlist(row[paste0("center_", j, "_", names(x))]), numeric(ncol(x))))
  dimnames(ctr) <- list(seq_len(k), names(x))
  X <- as.matrix(x)
  d2 <- vapply(seq_len(k), function(j) rowSums((X - matrix(ctr[j, ], nrow(X), ncol(X), byrow = TRUE))^2),
               numeric(nrow(X)))
  cluster <- max.col(-matrix(d2, nrow(X)), ties.method = "first")
  structure(list(cluster = cluster, centers = ctr, tot.withinss = row$inertia,
                 size = tabulate(cluster, k), iter = row$n_iter, run = run), class = "hpcml_kmeans")
}

#' Principal components with hpcml
#'
#' @param x A numeric matrix or data.frame.
#' @param n_components Number of components (NULL: all).
#' @param method "full", "randomized" or "tsqr" (tall-skinny QR for very long data).
#' @param scale. Scale columns to unit variance first, as \code{prcomp(scale. = TRUE)}.
#' @param seed Root seed (randomized method).
#' @param backend,workers Where to run (see \code{\link{hpcml_run}}).
#' @return A list of class \code{hpcml_pca}: \code{sdev} and \code{rotation} (as
#'   \code{prcomp}'s, the rotation's signs may differ), \code{importance}
#'   (a data.frame of variance proportions) and \code{k_for} (components needed for 80, 90,
#'   95 percent of the variance).
#' @examples
#' \dontrun{
#' p <- hpcml_pca(USArrests)
#' p$importance
#' }
#' @export
hpcml_pca <- function(x, n_components = NULL, method = "full", scale. = FALSE, seed = 0L, backend = "local",
                      workers = 1) {
  x <- numeric_frame(x)
  model <- list(kind = "pca", features = as.list(names(x)), method = method, scale = isTRUE(scale.))
  # NULL means every component, as prcomp and hpcml's own default.
  if (!is.null(n_components)) model$n_components <- as.integer(n_components)
  run <- hpcml_run(spec_list("r-pca", NULL, model, list(fit = empty_dict()), backend, workers, seed, NULL),
                   plots = FALSE, data = x)
  row <- run$results[1, ]
  if (!identical(row$status, "ok")) stop(row$error, call. = FALSE)
  k <- sum(grepl("^sv_[0-9]+$", names(row)))
  sv <- unlist(row[paste0("sv_", seq_len(k))])
  importance <- data.frame(component = paste0("PC", seq_len(k)), sdev = sv / sqrt(nrow(x) - 1),
                           proportion = unlist(row[paste0("evr_", seq_len(k))]),
                           cumulative = unlist(row[paste0("cum_evr_", seq_len(k))]), row.names = NULL)
  kept <- as.integer(row$n_components)
  importance <- importance[seq_len(kept), , drop = FALSE]
  load <- run$summary$loadings
  rotation <- NULL
  if (length(load)) {
    rotation <- t(vapply(load, function(r) unlist(r[paste0("PC", seq_len(kept))]), numeric(kept)))
    if (kept == 1) rotation <- t(rotation)
    dimnames(rotation) <- list(vapply(load, function(r) r$feature, character(1)), paste0("PC", seq_len(kept)))
  }
  structure(list(sdev = unname(importance$sdev), rotation = rotation, importance = importance,
                 k_for = unlist(run$summary$variance_thresholds), run = run), class = "hpcml_pca")
}

numeric_frame <- function(x) {
  x <- as.data.frame(x)
  bad <- names(x)[!vapply(x, is.numeric, logical(1))]
  if (length(bad)) stop(sprintf("x: column '%s' is not numeric", bad[1]), call. = FALSE)
  if (is.null(names(x)) || any(!nzchar(names(x)))) names(x) <- paste0("x", seq_along(x))
  x
}

#' @export
print.hpcml_kmeans <- function(x, ...) {
  cat(sprintf("hpcml k-means: %d clusters of sizes %s\n", nrow(x$centers), paste(x$size, collapse = ", ")))
  print(x$centers)
  cat("tot.withinss:", format(x$tot.withinss), "\n")
  invisible(x)
}

#' @export
print.hpcml_pca <- function(x, ...) {
  cat("hpcml PCA\n")
  print(x$importance, row.names = FALSE)
  invisible(x)
}
