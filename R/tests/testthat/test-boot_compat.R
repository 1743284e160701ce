# hpcml_boot(): boot::boot's contract and return value, replicates run as hpcml tasks.

ratio <- function(d, i) sum(d$x[i]) / sum(d$u[i])
ratio_w <- function(d, w) sum(d$x * w) / sum(d$u * w)

test_that("hpcml_boot gives boot::boot's replicates for the same seed, with stype i and w", {
  set.seed(42)
  ref <- boot::boot(boot::city, ratio, R = 99)
  set.seed(42)
  got <- hpcml_boot(boot::city, ratio, R = 99, workers = 2)
  expect_s3_class(got, "boot")
  expect_equal(got$t0, ref$t0)
  expect_equal(got$t, ref$t)
  expect_identical(got$seed, ref$seed)
  expect_identical(boot::boot.array(got), boot::boot.array(ref))

  set.seed(42)
  ref_w <- boot::boot(boot::city, ratio_w, R = 49, stype = "w")
  set.seed(42)
  got_w <- hpcml_boot(boot::city, ratio_w, R = 49, stype = "w", workers = 1)
  expect_equal(got_w$t, ref_w$t)
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
