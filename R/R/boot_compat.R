# The boot-compatible API: hpcml_boot() takes and returns what boot::boot() does.
# (hpcml_bootstrap(), the formula bootstrap of lm/glm fits, is in formula_bootstrap.R.)

#' Bootstrap any statistic on hpcml's backends, as boot::boot does
#'
#' \code{boot::boot(data, statistic, R)} with the replicates run as hpcml tasks. The
#' contract is boot's: \code{statistic(data, indices, ...)} with \code{stype = "i"},
#' frequencies with \code{"f"}, weights with \code{"w"}. The resamples are drawn here exactly
#' as \code{boot::boot} draws them (from R's generator, whose state is kept in \code{$seed}),
#' so \code{set.seed(s); hpcml_boot(...)} gives the same \code{t0} and \code{t} as
#' \code{set.seed(s); boot::boot(...)}, leaves R's generator in the same state (the next
#' \code{runif()} is the same), and \code{boot::boot.array()}, \code{boot::boot.ci()}
#' (including BCa), \code{print} and \code{plot} work on the result unchanged.
#'
#' \code{sim} is boot's \code{"ordinary"}, \code{"balanced"} or \code{"permutation"}, or
#' \code{"parametric"}: then \code{statistic(data, ...)} is called on \code{ran.gen(data, mle)}
#' for each replicate, as in boot. The simulated data sets are drawn in this R session, in
#' boot's order (so the same numbers as boot), and only the statistic runs as tasks: all
#' \code{R} data sets travel to the workers. boot's \code{sim = "antithetic"}, \code{L},
#' \code{m > 0}, \code{weights} (importance resampling), \code{simple = TRUE} and \code{cl}
#' are refused with an error naming the argument. boot's \code{parallel} and \code{ncpus} are
#' accepted and ignored: \code{backend} and \code{workers} say where the replicates run.
#'
#' The data, the statistic and the resampling indices (\code{R} times \code{NROW(data)}
#' integers) are serialized once and read once per worker process. If the statistic draws
#' random numbers, each replicate draws from its own L'Ecuyer-CMRG stream, the same on every
#' backend and worker count (boot's replicates share one stream: those numbers differ).
#'
#' @param data A data.frame, matrix or vector: each row (element) is an observation.
#'   \code{NULL} or no rows is boot's error "no data in call to 'boot'".
#' @param statistic \code{function(data, indices, ...)} returning a numeric vector (the same
#'   length for every replicate); \code{function(data, ...)} with \code{sim = "parametric"}.
#' @param R Number of bootstrap replicates: a whole number (\code{10.7} is an error).
#' @param ... More arguments to \code{statistic}, except boot's own arguments (above).
#' @param sim "ordinary" (default), "balanced", "permutation" or "parametric", as in boot.
#' @param stype What the second argument of \code{statistic} is: "i" indices, "f"
#'   frequencies, "w" weights (frequencies divided by the stratum's size).
#' @param strata Strata of the observations (resampling is within each stratum), as in boot.
#' @param ran.gen,mle With \code{sim = "parametric"}: \code{ran.gen(data, mle)} returns one
#'   simulated data set, as in boot.
#' @param backend,workers,chunk_size Where and how to run (see \code{\link{registerDoHpcml}}).
#' @param out A run directory to keep (NULL: a temporary one).
#' @return An object of class \code{"boot"} with the fields \code{boot::boot} returns for the
#'   same \code{sim}: \code{t0}, \code{t} (R rows), \code{R}, \code{data}, \code{seed},
#'   \code{statistic}, \code{sim}, \code{call}, and \code{stype}, \code{strata},
#'   \code{weights} (\code{weights} not for "permutation"), or \code{ran.gen}, \code{mle} for
#'   "parametric". Failed replicates raise an R error naming the first one, with R's whole
#'   message.
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
hpcml_boot <- function(data, statistic, R, ..., sim = c("ordinary", "balanced", "permutation", "parametric"),
                       stype = c("i", "f", "w"), strata = rep(1, n), ran.gen = function(d, p) d, mle = NULL,
                       backend = "local", workers = NULL, chunk_size = NULL, out = NULL) {
  call <- match.call()
  sim <- check_boot_sim(sim)
  stype <- match.arg(stype)
  statistic <- match.fun(statistic)
  R <- check_boot_R(R)
  dots <- boot_dots(list(...))
  # boot::boot's order: the generator's state is kept before anything is drawn.
  if (!exists(".Random.seed", envir = .GlobalEnv, inherits = FALSE)) stats::runif(1)
  seed <- get(".Random.seed", envir = .GlobalEnv, inherits = FALSE)
  n <- NROW(data)
  if (n == 0 || is.null(n)) stop("no data in call to 'boot'")  # boot::boot's error
  strata_index <- tapply(seq_len(n), as.numeric(strata))
  ns <- tabulate(strata_index)[strata_index]

  if (sim == "parametric") {
    ran.gen <- match.fun(ran.gen)
    t0 <- do.call(function(...) statistic(data, ...), dots)  # as boot::boot calls it
    # boot::boot draws the simulated data sets in this session, one per replicate, in order:
    # they are drawn here the same way (so the same numbers), only the statistic runs as tasks.
    sets <- lapply(seq_len(R), function(r) ran.gen(data, mle))
    body <- function(r) do.call(.hpcml_statistic, c(list(.hpcml_sets[[r]]), .hpcml_dots))
    objects <- list(.hpcml_sets = sets)
  } else {
    index_array <- utils::getFromNamespace("index.array", "boot")
    idx <- index_array(n, R, sim, strata_index, 0, NULL, NULL)
    original <- switch(stype, i = seq_len(n), f = rep(1, n), w = 1 / ns)
    t0 <- do.call(function(...) statistic(data, original, ...), dots)  # as boot::boot calls it
    body <- function(r) {
      i <- .hpcml_idx[r, ]
      arg <- switch(.hpcml_stype, i = i, f = tabulate(i, .hpcml_n), w = tabulate(i, .hpcml_n) / .hpcml_ns)
      if (length(.hpcml_dots)) do.call(.hpcml_statistic, c(list(.hpcml_data, arg), .hpcml_dots))
      else .hpcml_statistic(.hpcml_data, arg)
    }
    objects <- list(.hpcml_idx = idx, .hpcml_stype = stype, .hpcml_n = n, .hpcml_ns = ns, .hpcml_data = data)
  }
  objects <- c(objects, list(.hpcml_statistic = with_globals(statistic), .hpcml_dots = dots))
  values <- run_tasks(task_closure(body, objects), R, "boot", backend = backend, workers = workers,
                      chunk_size = chunk_size, out = out, seed = seed_leaving_generator())
  if (is.null(values)) return(NULL)  # an MPI rank other than 0
  t <- boot_t(values, R, length(t0))
  # What boot:::boot.return keeps for each sim.
  res <- list(t0 = t0, t = t, R = R, data = data, seed = seed, statistic = statistic, sim = sim, call = call)
  res <- if (sim == "parametric") {
    c(res, list(ran.gen = ran.gen, mle = mle))
  } else if (sim == "permutation") {
    c(res, list(stype = stype, strata = strata))
  } else {
    c(res, list(stype = stype, strata = strata, weights = 1 / ns))
  }
  structure(res, class = "boot", boot_type = "boot")
}

# The replicates' values as boot's matrix t (R rows); a failed replicate is an R error naming it.
boot_t <- function(values, R, width) {
  failed <- which(!values$ok)
  if (length(failed)) {
    stop(sprintf("hpcml_boot: replicate %d failed: %s%s", failed[1], values$error[failed[1]],
                 if (length(failed) > 1) sprintf(" (%d of %d replicates failed)", length(failed), R) else ""),
         call. = FALSE)
  }
  v <- values$value
  wrong <- which(lengths(v) != width)
  if (length(wrong)) {
    r <- wrong[1]
    stop(sprintf("hpcml_boot: replicate %d returned %d values, the statistic on the data %d", r, length(v[[r]]),
                 width), call. = FALSE)
  }
  if (all(vapply(v, is.numeric, logical(1)) | vapply(v, is.logical, logical(1)))) {  # one matrix at once
    return(matrix(as.numeric(unlist(v, use.names = FALSE)), R, width, byrow = TRUE))
  }
  t <- matrix(NA_real_, R, width)
  for (r in seq_len(R)) t[r, ] <- v[[r]]
  t
}

# The root seed of the replicates' own streams, drawn from R's generator, which is then put
# back: after hpcml_boot the generator is where boot::boot leaves it for the same call, so the
# rest of a script draws the same numbers with either.
seed_leaving_generator <- function() {
  state <- get(".Random.seed", envir = globalenv(), inherits = FALSE)
  on.exit(assign(".Random.seed", state, envir = globalenv()))
  resolve_seed(NULL)
}
