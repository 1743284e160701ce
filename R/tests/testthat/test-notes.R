# The lecture notes' three doParallel exercises (TestdoParallel Ex 1-3), unchanged except for
# registerDoHpcml() in place of registerDoParallel(cores = 24), with a small N and P.
library(foreach)

test_that("exercise 1: one shared matrix, one regression per iteration, rows bound", {
  registerDoHpcml(workers = 2, seed = 1)
  N <- 2000; P <- 24
  X <- matrix(rnorm(N * P), N, P)
  B <- matrix(rnorm(P), P, 1)
  Y <- X %*% B + rnorm(N)
  coef_xloop <- foreach(i = 1:24, .combine = rbind) %dopar% {
    fit <- lm(Y ~ X[, i])
    coef(fit)
  }
  coef_serial <- foreach(i = 1:24, .combine = rbind) %do% {
    fit <- lm(Y ~ X[, i])
    coef(fit)
  }
  expect_equal(coef_xloop, coef_serial)
  expect_equal(dim(coef_xloop), c(24L, 2L))
})

test_that("exercise 2: each iteration makes its own random data; 1 and 2 workers agree", {
  N <- 500; P <- 5
  ex2 <- function() {
    foreach(i = 1:24, .combine = rbind) %dopar% {
      X <- matrix(rnorm(N * P), N, P)
      B <- matrix(1:P, P, 1)
      Y <- X %*% B + rnorm(N)
      coef(lm(Y ~ X - 1))
    }
  }
  registerDoHpcml(workers = 1, seed = 2)
  one <- ex2()
  registerDoHpcml(workers = 2, seed = 2)
  two <- ex2()
  expect_identical(one, two)
  expect_equal(unname(colMeans(two)), 1:P, tolerance = 0.05)
})

test_that("exercise 3: the data split into parts, each iteration reads its own part", {
  registerDoHpcml(workers = 2, seed = 3)
  N <- 2400; P <- 4
  X <- matrix(rnorm(N * P), N, P)
  Y <- X %*% matrix(c(1, -1, 2, 0.5), P, 1) + rnorm(N)
  parts <- tempfile("parts-")
  dir.create(parts)
  rows <- split(seq_len(N), rep(1:24, each = N / 24))
  for (k in 1:24) saveRDS(list(X = X[rows[[k]], ], Y = Y[rows[[k]]]), file.path(parts, sprintf("part%02d.rds", k)))
  per_part <- foreach(i = 1:24, .combine = rbind) %dopar% {
    d <- readRDS(file.path(parts, sprintf("part%02d.rds", i)))
    coef(lm(d$Y ~ d$X - 1))
  }
  serial <- foreach(i = 1:24, .combine = rbind) %do% {
    d <- readRDS(file.path(parts, sprintf("part%02d.rds", i)))
    coef(lm(d$Y ~ d$X - 1))
  }
  expect_equal(per_part, serial)
  expect_equal(unname(colMeans(per_part)), c(1, -1, 2, 0.5), tolerance = 0.1)
})
