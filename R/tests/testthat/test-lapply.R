# hpcml_lapply(): lapply on hpcml's backends.

test_that("hpcml_lapply is lapply: values, names, extra arguments, global variables", {
  scale_by <- 3
  got <- hpcml_lapply(list(a = 1, b = 2, c = 5), function(x, add) x * scale_by + add, add = 1, workers = 2)
  expect_equal(got, list(a = 4, b = 7, c = 16))
  expect_equal(hpcml_lapply(1:3, sqrt, workers = 1), lapply(1:3, sqrt))
  expect_equal(hpcml_lapply(list(), identity), list())
})

test_that("a function made by another takes its own and the global variables it uses", {
  assign("hpcml_test_offset", 10, envir = globalenv())
  on.exit(rm("hpcml_test_offset", envir = globalenv()), add = TRUE)
  make <- function(k) function(x) k * x + hpcml_test_offset
  environment(make) <- globalenv()  # as if defined at the top level of a script
  expect_equal(hpcml_lapply(1:3, make(2), workers = 2), list(12, 14, 16))
})

test_that("the same numbers with 1 and 2 workers", {
  draw <- function(n) mean(rnorm(n))
  one <- hpcml_lapply(rep(100, 6), draw, workers = 1, seed = 3)
  two <- hpcml_lapply(rep(100, 6), draw, workers = 2, seed = 3)
  expect_identical(one, two)
  expect_equal(length(unique(unlist(one))), 6L)
})

test_that("an error names the element and keeps R's message", {
  f <- function(x) if (x == "bad") stop("cannot use ", x) else nchar(x)
  expect_error(hpcml_lapply(list(a = "ok", b = "bad"), f, workers = 2),
               "hpcml_lapply: element 2 \\('b'\\) failed: cannot use bad")
  expect_error(hpcml_lapply(list("bad", "ok", "bad"), f, workers = 2),
               "element 1 failed: cannot use bad \\(2 of 3 elements failed\\)")
})

test_that("an R error of several lines, and a parse error, come back with every line", {
  f <- function(x) if (x == "bad") stop("first line\n  second line") else nchar(x)
  expect_error(hpcml_lapply(list("ok", "bad"), f, workers = 1),
               "element 2 failed: first line\n  second line", fixed = TRUE)
  # R's parse error: the lines after the first show the code and where it is wrong.
  err <- tryCatch(hpcml_lapply(list("1 + 1", "1 +* 2"), function(s) eval(parse(text = s)), workers = 1),
                  error = conditionMessage)
  expected <- tryCatch(parse(text = "1 +* 2"), error = conditionMessage)
  expect_match(expected, "\n1: 1 +*\n", fixed = TRUE)
  expect_identical(err, paste("hpcml_lapply: element 2 failed:", expected))
})
