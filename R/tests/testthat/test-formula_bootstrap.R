# hpcml_bootstrap(): the formula bootstrap of lm/glm fits (R/formula_bootstrap.R).

test_that("hpcml's logistic fit equals glm(family = binomial) to 1e-8 on HMDA", {
  d <- hmda()
  b <- hpcml_bootstrap(deny ~ afam + pirat, d, B = 20, family = "binomial", workers = 2, seed = 1L)
  ref <- glm(deny ~ afam + pirat, data = d, family = binomial, control = glm.control(epsilon = 1e-14))
  expect_named(b$t0, names(coef(ref)))
  expect_equal(b$t0, coef(ref), tolerance = 1e-8)
  expect_lt(max(abs(b$t0 - coef(ref))), 1e-8)
  expect_s3_class(b, "hpcml_boot")
  expect_equal(dim(b$t), c(20L, 3L))
})

test_that("hpcml's OLS fit equals lm to 1e-8 on HMDA", {
  d <- hmda()
  d$denied <- as.numeric(d$deny == "yes")
  b <- hpcml_bootstrap(denied ~ afam + pirat, d, B = 10, workers = 1)
  ref <- lm(denied ~ afam + pirat, data = d)
  expect_lt(max(abs(b$t0 - coef(ref))), 1e-8)
  expect_equal(names(b$se), names(coef(ref)))
})

test_that("bootstrap SEs agree with boot::boot within Monte Carlo error", {
  d <- hmda()
  B <- 1000
  b <- hpcml_bootstrap(deny ~ afam + pirat, d, B = B, family = "binomial", workers = 2, seed = 11L)
  set.seed(11)
  ref <- boot::boot(d, function(data, i) coef(glm(deny ~ afam + pirat, data = data[i, ], family = binomial)), R = B)
  se_boot <- apply(ref$t, 2, sd)
  # Both are estimates from B replicates; their difference has this Monte Carlo sd.
  mc <- sqrt(se_mc_sd(b$t)^2 + se_mc_sd(ref$t)^2)
  expect_true(all(abs(b$se - se_boot) < 4 * mc),
              info = paste("hpcml", format(b$se), "boot", format(se_boot), "mc sd", format(mc)))
  # And the SEs are the right size: far from zero, within 15% of each other.
  expect_true(all(abs(b$se / se_boot - 1) < 0.15))
  expect_equal(nrow(b$table), 3)
})

test_that("bootstrap replicates are the same for any worker count and chunking", {
  d <- hmda()
  a <- hpcml_bootstrap(deny ~ afam + pirat, d, B = 30, family = "binomial", workers = 1, seed = 5L)
  b <- hpcml_bootstrap(deny ~ afam + pirat, d, B = 30, family = "binomial", workers = 2, chunk_size = 4, seed = 5L)
  expect_identical(a$t, b$t)
  expect_false(isTRUE(all.equal(a$t[1, ], a$t[2, ])))  # replicates differ from each other
})

test_that("bca = FALSE gives the same replicates, estimates and SEs, without the BCa limits", {
  d <- hmda()
  d$denied <- as.numeric(d$deny == "yes")
  a <- hpcml_bootstrap(denied ~ afam + pirat + hirat, d, B = 70, workers = 2, seed = 4L)
  b <- hpcml_bootstrap(denied ~ afam + pirat + hirat, d, B = 70, workers = 2, seed = 4L, bca = FALSE)
  expect_identical(a$t, b$t)
  expect_identical(a$t0, b$t0)
  expect_identical(a$se, b$se)
  expect_true(all(c("bca_low", "bca_high") %in% names(a$table)))
  expect_false(any(c("bca_low", "bca_high") %in% names(b$table)))
  expect_identical(b$table, a$table[, names(b$table)])
  # The estimate is still the fit on all rows, as lm gives it.
  ref <- lm(denied ~ afam + pirat + hirat, data = d)
  expect_lt(max(abs(b$t0 - coef(ref))), 1e-8)
})

test_that("a non-binary response for binomial is an R error naming the problem", {
  d <- hmda()
  expect_error(hpcml_bootstrap(pirat ~ afam, d, B = 5, family = "binomial"), "0/1, logical or factor")
})

test_that("the Dask backend gives the local backend's replicates", {
  skip_if_not(reticulate::py_module_available("distributed"), "dask is not installed (pip install 'hpcml[dask]')")
  d <- hmda()
  a <- hpcml_bootstrap(deny ~ afam + pirat, d, B = 12, family = "binomial", workers = 2, seed = 5L)
  b <- hpcml_bootstrap(deny ~ afam + pirat, d, B = 12, family = "binomial", backend = "dask", workers = 2, seed = 5L)
  expect_identical(a$t, b$t)
  expect_equal(b$run$summary$run$backend, "dask")
})
