# The boot-compatible API: hpcml_boot() takes and returns what boot::boot() does.
# (hpcml_bootstrap(), the formula bootstrap of lm/glm fits, is in formula_bootstrap.R.)

#' Bootstrap any statistic on hpcml's backends, as boot::boot does
#'
#' \code{boot::boot(data, statistic, R)} with the replicates run as hpcml tasks. The
#' contract is boot's: \code{statistic(data, indices, ...)} with \code{stype = "i"},
#' frequencies with \code{"f"}, weights with \code{"w"}. The resamples are drawn here exactly
#' as \code{boot::boot} draws them (from R's generator, whose state is kept in \code{$seed}),
#' so \code{set.seed(s); hpcml_boot(...)} gives the same \code{t} as
#' \code{set.seed(s); boot::boot(...)} and \code{boot::boot.array()}, \code{boot::boot.ci()}
#' (including BCa), \code{print} and \code{plot} work on the result unchanged.
#'
#' The data, the statistic and the resampling indices (\code{R} times \code{NROW(data)}
#' integers) are serialized once and read once per worker process. If the statistic draws
#' random numbers, each replicate draws from its own L'Ecuyer-CMRG stream, the same on every
#' backend and worker count.
#'
#' @param data A data.frame, matrix or vector: each row (element) is an observation.
#' @param statistic \code{function(data, indices, ...)} returning a numeric vector (the same
#'   length for every replicate).
#' @param R Number of bootstrap replicates.
#' @param ... More arguments to \code{statistic}.
#' @param stype What the second argument of \code{statistic} is: "i" indices, "f"
#'   frequencies, "w" weights (frequencies divided by the stratum's size).
#' @param strata Strata of the observations (resampling is within each stratum), as in boot.
#' @param backend,workers,chunk_size Where and how to run (see \code{\link{registerDoHpcml}}).
#' @param out A run directory to keep (NULL: a temporary one).
#' @return An object of class \code{"boot"}, as \code{boot::boot} returns for an ordinary
#'   bootstrap: \code{t0}, \code{t} (R rows), \code{R}, \code{data}, \code{seed},
#'   \code{statistic}, \code{sim}, \code{call}, \code{stype}, \code{strata}, \code{weights}.
#'   Failed replicates raise an R error naming the first one.
#' @examples
#' \dontrun{
#' b <- hpcml_boot(mtcars, function(d, i) coef(lm(mpg ~ wt, data = d[i, ])), R = 999, workers = 2)
#' boot::boot.ci(b, type = c("perc", "bca"), index = 2)
#' plot(b, index = 2)
#' }
# boot's index.array draws the resamples (through getFromNamespace, which R CMD check does not
# see): importing boot.array records the dependency, and boot.array() reproduces the resamples.
#' @importFrom boot boot.array
#' @export
hpcml_boot <- function(data, statistic, R, ..., stype = c("i", "f", "w"), strata = rep(1, n),
                       backend = "local", workers = NULL, chunk_size = NULL, out = NULL) {
  call <- match.call()
  stype <- match.arg(stype)
  statistic <- match.fun(statistic)
  n <- NROW(data)
  R <- as.integer(R)
  if (is.na(R) || R < 1L) stop("R: the number of replicates must be a positive integer", call. = FALSE)
  # boot::boot's order: the generator's state is kept before the resamples are drawn.
  if (!exists(".Random.seed", envir = .GlobalEnv, inherits = FALSE)) stats::runif(1)
  seed <- get(".Random.seed", envir = .GlobalEnv, inherits = FALSE)
  strata_index <- tapply(seq_len(n), as.numeric(strata))
  index_array <- utils::getFromNamespace("index.array", "boot")
  idx <- index_array(n, R, "ordinary", strata_index, 0, NULL, NULL)
  ns <- tabulate(strata_index)[strata_index]
  original <- switch(stype, i = seq_len(n), f = rep(1, n), w = 1 / ns)
  t0 <- statistic(data, original, ...)

  statistic <- with_globals(statistic)
  body <- function(r) {
    i <- .hpcml_idx[r, ]
    arg <- switch(.hpcml_stype, i = i, f = tabulate(i, .hpcml_n), w = tabulate(i, .hpcml_n) / .hpcml_ns)
    do.call(.hpcml_statistic, c(list(.hpcml_data, arg), .hpcml_dots))
  }
  fun <- task_closure(body, list(.hpcml_idx = idx, .hpcml_stype = stype, .hpcml_n = n, .hpcml_ns = ns,
                                 .hpcml_data = data, .hpcml_statistic = statistic, .hpcml_dots = list(...)))
  values <- run_tasks(fun, R, "boot", backend = backend, workers = workers, chunk_size = chunk_size, out = out)
  if (is.null(values)) return(NULL)  # an MPI rank other than 0
  failed <- which(!vapply(values, function(v) isTRUE(v$ok), logical(1)))
  if (length(failed)) {
    stop(sprintf("hpcml_boot: replicate %d failed: %s%s", failed[1], values[[failed[1]]]$error,
                 if (length(failed) > 1) sprintf(" (%d of %d replicates failed)", length(failed), R) else ""),
         call. = FALSE)
  }
  t <- matrix(NA_real_, R, length(t0))
  for (r in seq_len(R)) {
    v <- values[[r]]$value
    if (length(v) != length(t0)) {
      stop(sprintf("hpcml_boot: replicate %d returned %d values, the statistic on the data %d", r, length(v),
                   length(t0)), call. = FALSE)
    }
    t[r, ] <- v
  }
  out <- list(t0 = t0, t = t, R = R, data = data, seed = seed, statistic = statistic, sim = "ordinary",
              call = call, stype = stype, strata = strata, weights = 1 / ns)
  structure(out, class = "boot", boot_type = "boot")
}
