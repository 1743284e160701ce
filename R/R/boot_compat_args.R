# Checks of hpcml_boot()'s arguments against boot::boot's. boot's own arguments never reach
# the statistic there; before these checks, hpcml_boot passed those it did not know on to the
# statistic, which then ran an ordinary bootstrap and answered as if the argument were honoured.

check_boot_sim <- function(sim) {
  known <- c("ordinary", "balanced", "permutation", "parametric")
  if (identical(sim, known)) return("ordinary")  # not given
  if (!is.character(sim) || length(sim) != 1L || !(sim %in% known)) {
    stop(sprintf("hpcml_boot: sim = %s is not supported (use %s, or boot::boot)", one_line(sim),
                 paste0('"', known, '"', collapse = ", ")), call. = FALSE)
  }
  sim
}

# boot's R: a whole number. boot::boot itself fails on R = 10.7 with an unrelated message
# ("dims [product 100] do not match the length of object [107]"); as.integer() would run 10.
check_boot_R <- function(R) {
  if (!is_whole_number(R, 1)) stop(sprintf("hpcml_boot: R must be a whole number of replicates, at least 1 (got %s)", one_line(R)),
                call. = FALSE)
  as.integer(R)
}

# The statistic's extra arguments (`...`), less boot::boot's own arguments: `parallel` and
# `ncpus` are accepted and ignored (hpcml's backend and workers decide), the others must keep
# boot's default (what hpcml_boot does) or are refused in one line naming the argument.
boot_dots <- function(dots) {
  refused <- list(
    L = list(NULL, "empirical influence values are for sim = \"antithetic\", which hpcml_boot does not run"),
    m = list(0, "predictions (m > 0) are not supported"),
    weights = list(NULL, "importance resampling (weights) is not supported"),
    simple = list(FALSE, "simple = TRUE is not supported (the index array is drawn once, as by default)"),
    cl = list(NULL, "a cluster is not used: choose hpcml's backend and workers"))
  if (is.null(names(dots))) return(dots)
  for (name in intersect(names(dots), names(refused))) {
    value <- dots[[name]]
    default <- identical(value, refused[[name]][[1]]) || (name == "m" && is.numeric(value) && all(value == 0))
    if (!default) {
      stop(sprintf("hpcml_boot: %s = %s: %s; use boot::boot", name, one_line(value), refused[[name]][[2]]),
           call. = FALSE)
    }
  }
  dots[!(names(dots) %in% c(names(refused), "parallel", "ncpus"))]
}

# A value as a short one-line string for an error message.
one_line <- function(x) {
  text <- paste(deparse(x, width.cutoff = 60L), collapse = " ")
  if (nchar(text) > 60L) paste0(substr(text, 1L, 57L), "...") else text
}
