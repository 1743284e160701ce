# hpcml_boot(): boot::boot's contract and return value, replicates run as hpcml tasks.

ratio <- function(d, i) sum(d$x[i]) / sum(d$u[i])
ratio_w <- function(d, w) sum(d$x * w) / sum(d$u * w)

test_that("hpcml_boot gives boot::boot's replicates for the same seed, with stype i and w", {
  set.seed(42)
  ref <- boot::boot(boot::city, ratio, R = 99)
  set.seed(42)
  got <- hpcml_boot(boot::city, ratio, R = 99, workers = 2)
  expect_s3_class(got, "boot")
  expect_identical(got$t0, ref$t0)
  expect_identical(got$t, ref$t)
  expect_identical(got$seed, ref$seed)
  expect_identical(boot::boot.array(got), boot::boot.array(ref))

  set.seed(42)
  ref_w <- boot::boot(boot::city, ratio_w, R = 49, stype = "w")
  set.seed(42)
  got_w <- hpcml_boot(boot::city, ratio_w, R = 49, stype = "w", workers = 1)
  expect_identical(got_w$t, ref_w$t)
})

test_that("boot.ci, print and plot work on hpcml_boot's result", {
  set.seed(1)
  st <- function(d, i) coef(lm(mpg ~ wt, data = d[i, ]))
  b <- hpcml_boot(mtcars, st, R = 199, workers = 2)
  expect_equal(dim(b$t), c(199L, 2L))
  set.seed(1)
  ref <- boot::boot(mtcars, st, R = 199)
  ci <- suppressWarnings(boot::boot.ci(b, type = c("norm", "perc", "bca"), index = 2))
  ci_ref <- suppressWarnings(boot::boot.ci(ref, type = c("norm", "perc", "bca"), index = 2))
  expect_equal(ci$bca, ci_ref$bca)
  expect_equal(ci$percent, ci_ref$percent)
  expect_output(print(b), "ORDINARY NONPARAMETRIC BOOTSTRAP")
  pdf(NULL)
  on.exit(grDevices::dev.off(), add = TRUE)
  expect_silent(plot(b, index = 2))
})

test_that("the statistic's extra arguments and a failing replicate", {
  set.seed(3)
  b <- hpcml_boot(1:20, function(d, i, power) mean(d[i]^power), R = 10, power = 2, workers = 1)
  expect_equal(b$t0, mean((1:20)^2))
  bad <- function(d, i) if (sum(i == 1) > 1) stop("row 1 drawn twice") else mean(d[i])
  set.seed(3)
  expect_error(hpcml_boot(1:20, bad, R = 20, workers = 1), "hpcml_boot: replicate [0-9]+ failed: row 1 drawn twice")
})

# One line, naming what is wrong: the error's message has no line break.
expect_one_line_error <- function(expr, pattern) {
  err <- tryCatch({ expr; NULL }, error = function(e) e)
  expect_s3_class(err, "error")
  expect_match(conditionMessage(err), pattern)
  expect_false(grepl("\n", conditionMessage(err)))
}

# boot's documentation example of a parametric bootstrap: exponential air-conditioning failures.
air_fun <- function(data) mean(data$hours)
air_rg <- function(data, mle) {
  out <- data
  out$hours <- stats::rexp(nrow(out), 1 / mle)
  out
}

test_that("sim = \"parametric\" draws ran.gen(data, mle) as boot::boot does: the same t, t0 and fields", {
  mle <- mean(boot::aircondit$hours)
  set.seed(7)
  ref <- boot::boot(boot::aircondit, air_fun, R = 99, sim = "parametric", ran.gen = air_rg, mle = mle)
  set.seed(7)
  got <- hpcml_boot(boot::aircondit, air_fun, R = 99, sim = "parametric", ran.gen = air_rg, mle = mle, workers = 2)
  expect_identical(got$sim, "parametric")
  expect_identical(got$t0, ref$t0)
  expect_identical(got$t, ref$t)
  expect_gt(stats::sd(got$t), 10)  # not the data's statistic repeated (sd 0)
  expect_identical(got$mle, ref$mle)
  expect_identical(sort(names(got)), sort(names(ref)))
})

test_that("sim = \"balanced\" and \"permutation\" give boot::boot's t and fields", {
  for (sim in c("balanced", "permutation")) {
    set.seed(5)
    ref <- boot::boot(boot::city, ratio, R = 30, sim = sim)
    set.seed(5)
    got <- hpcml_boot(boot::city, ratio, R = 30, sim = sim, workers = 1)
    expect_identical(got$t, ref$t)
    expect_identical(got$sim, sim)
    expect_identical(sort(names(got)), sort(names(ref)))
  }
})

test_that("R's generator is left where boot::boot leaves it, for every sim", {
  mle <- mean(boot::aircondit$hours)
  runs <- list(
    ordinary = function(f) f(boot::city, ratio, R = 20),
    weights = function(f) f(boot::city, ratio_w, R = 20, stype = "w"),
    balanced = function(f) f(boot::city, ratio, R = 20, sim = "balanced"),
    parametric = function(f) f(boot::aircondit, air_fun, R = 20, sim = "parametric", ran.gen = air_rg, mle = mle))
  for (name in names(runs)) {
    set.seed(1)
    runs[[name]](boot::boot)
    a <- stats::runif(1)
    set.seed(1)
    runs[[name]](function(...) hpcml_boot(..., workers = 1))
    b <- stats::runif(1)
    expect_identical(b, a, label = sprintf("runif(1) after hpcml_boot (%s)", name))
  }
})

test_that("boot's own arguments never reach the statistic: refused by name, or ignored", {
  one_arg <- function(d, i) mean(d[i])
  expect_one_line_error(hpcml_boot(1:10, one_arg, R = 5, weights = rep(0.1, 10)), "^hpcml_boot: weights = ")
  expect_one_line_error(hpcml_boot(1:10, one_arg, R = 5, m = 2), "^hpcml_boot: m = 2: ")
  expect_one_line_error(hpcml_boot(1:10, one_arg, R = 5, L = 1:10), "^hpcml_boot: L = ")
  expect_one_line_error(hpcml_boot(1:10, one_arg, R = 5, simple = TRUE), "^hpcml_boot: simple = TRUE: ")
  expect_one_line_error(hpcml_boot(1:10, one_arg, R = 5, cl = "a cluster"), "^hpcml_boot: cl = ")
  expect_one_line_error(hpcml_boot(1:10, one_arg, R = 5, sim = "antithetic"), '^hpcml_boot: sim = "antithetic" ')
  # boot's parallel and ncpus are ignored (workers decides), as are boot's defaults of the others.
  set.seed(2)
  ref <- boot::boot(1:10, one_arg, R = 5)
  set.seed(2)
  got <- hpcml_boot(1:10, one_arg, R = 5, parallel = "multicore", ncpus = 4, m = 0, weights = NULL, workers = 1)
  expect_identical(got$t, ref$t)
})

test_that("no data is boot::boot's error, and R must be a whole number", {
  expect_error(boot::boot(NULL, ratio, R = 5), "no data in call to 'boot'")
  expect_error(hpcml_boot(NULL, ratio, R = 5), "no data in call to 'boot'")
  expect_error(hpcml_boot(boot::city[0, ], ratio, R = 5), "no data in call to 'boot'")
  expect_one_line_error(hpcml_boot(boot::city, ratio, R = 10.7), "^hpcml_boot: R must be a whole number .*\\(got 10.7\\)$")
  expect_one_line_error(hpcml_boot(boot::city, ratio, R = 0), "^hpcml_boot: R .*\\(got 0\\)$")
  expect_one_line_error(hpcml_boot(boot::city, ratio, R = c(10, 20)), "^hpcml_boot: R .*\\(got c\\(10, 20\\)\\)$")
})

test_that("a replicate's R error of several lines comes back whole", {
  two_lines <- function(d, i) if (sum(i == 1) > 1) stop("row 1 drawn twice\nsecond line of the message") else mean(d[i])
  set.seed(3)
  expect_error(hpcml_boot(1:20, two_lines, R = 20, workers = 1),
               "replicate [0-9]+ failed: row 1 drawn twice\nsecond line of the message")
})
