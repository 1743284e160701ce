# registerDoHpcml(): foreach loops on hpcml's backends, as the lecture notes write them.
library(foreach)

# The notes' loop: 24 iterations, each fits lm on data it simulates, rows bound together.
notes_loop <- function() {
  foreach(i = 1:24, .combine = rbind) %dopar% {
    x <- rnorm(50)
    y <- 1 + 2 * x + rnorm(50)
    c(i = i, coef(lm(y ~ x)))
  }
}

test_that("getDoParName and getDoParWorkers answer", {
  registerDoHpcml(workers = 2)
  expect_equal(getDoParName(), "doHpcml")
  expect_equal(getDoParWorkers(), 2L)
  expect_true(getDoParRegistered())
})

test_that("a loop gives the same numbers with 1 and 2 workers and with any chunking", {
  registerDoHpcml(workers = 1, seed = 11)
  one <- notes_loop()
  registerDoHpcml(workers = 2, seed = 11)
  two <- notes_loop()
  chunked <- foreach(i = 1:24, .combine = rbind, .options.hpcml = list(chunk_size = 5)) %dopar% {
    x <- rnorm(50)
    y <- 1 + 2 * x + rnorm(50)
    c(i = i, coef(lm(y ~ x)))
  }
  expect_identical(one, two)
  expect_identical(one, chunked)
  expect_equal(dim(one), c(24L, 3L))
  expect_equal(unname(one[, "i"]), as.numeric(1:24))
  expect_equal(mean(one[, "x"]), 2, tolerance = 0.1)
  # Every iteration has its own stream: no two iterations drew the same numbers.
  expect_equal(length(unique(one[, "x"])), 24L)
})

test_that("set.seed() before a loop makes it reproducible when no seed is registered", {
  registerDoHpcml(workers = 2)
  set.seed(5)
  a <- foreach(i = 1:4, .combine = c) %dopar% runif(1)
  set.seed(5)
  b <- foreach(i = 1:4, .combine = c) %dopar% runif(1)
  expect_identical(a, b)
})

test_that(".combine, .inorder, .multicombine and the default list", {
  registerDoHpcml(workers = 2, seed = 1)
  expect_equal(foreach(i = 1:5) %dopar% i^2, as.list((1:5)^2))
  expect_equal(foreach(i = 1:5, .combine = "+") %dopar% i, 15)
  expect_equal(foreach(i = 1:3, .combine = cbind, .multicombine = TRUE) %dopar% rep(i, 2),
               cbind(result.1 = c(1, 1), result.2 = c(2, 2), result.3 = c(3, 3)))
  expect_setequal(foreach(i = 1:6, .combine = c, .inorder = FALSE) %dopar% i, 1:6)
  expect_equal(foreach(a = 1:3, b = c(10, 20, 30), .combine = c) %dopar% (a + b), c(11, 22, 33))
  expect_equal(foreach(i = 1:3, .combine = rbind) %dopar% data.frame(i = i, sq = i^2),
               data.frame(i = 1:3, sq = c(1, 4, 9)), ignore_attr = TRUE)
})

test_that(".errorhandling stop, remove and pass", {
  registerDoHpcml(workers = 2, seed = 1)
  expect_error(foreach(i = 1:4) %dopar% { if (i == 3) stop("bad row ", i); i }, 'task 3 failed - "bad row 3"')
  expect_equal(foreach(i = 1:4, .combine = c, .errorhandling = "remove") %dopar% {
    if (i %% 2 == 0) stop("even") else i
  }, c(1L, 3L))
  passed <- foreach(i = 1:3, .errorhandling = "pass") %dopar% { if (i == 2) stop("two") else i }
  expect_equal(passed[c(1, 3)], list(1L, 3L))
  expect_s3_class(passed[[2]], "error")
  expect_equal(conditionMessage(passed[[2]]), "two")
})

test_that("an R error of several lines keeps every line, with .errorhandling stop and pass", {
  registerDoHpcml(workers = 1, seed = 1)
  expect_error(foreach(i = 1:2) %dopar% { if (i == 2) stop("top line\nbottom line") else i },
               'task 2 failed - "top line\nbottom line"', fixed = TRUE)
  passed <- foreach(i = 1:2, .errorhandling = "pass") %dopar% { if (i == 2) stop("top line\nbottom line") else i }
  expect_identical(conditionMessage(passed[[2]]), "top line\nbottom line")
})

test_that(".export, .packages and functions of the caller travel with the body", {
  registerDoHpcml(workers = 2, seed = 1)
  hidden <- 40
  helper <- function(x) x + offset
  offset <- 2
  # `hidden` is reached through get(): foreach cannot see it, .export sends it.
  got <- foreach(i = 1:2, .combine = c, .export = "hidden") %dopar% (get("hidden") + helper(i))
  expect_equal(got, c(43, 44))
  expect_error(foreach(i = 1:2, .export = "no_such_variable") %dopar% i, "no_such_variable")
  ext <- foreach(i = 1:2, .combine = c, .packages = "tools") %dopar% file_ext(paste0("f", i, ".csv"))
  expect_equal(ext, c("csv", "csv"))
})

test_that("exported data is loaded once per worker process, not once per iteration", {
  registerDoHpcml(workers = 2, seed = 1)
  big <- matrix(runif(2e6), ncol = 20)  # 16 MB, used by every iteration
  state <- new.env()
  state$calls <- 0
  res <- foreach(i = 1:12, .combine = rbind, .options.hpcml = list(chunk_size = 6)) %dopar% {
    state$calls <- state$calls + 1  # the environment lives as long as the worker's copy
    c(pid = Sys.getpid(), calls = state$calls, s = sum(big[, 1 + i %% 20]))
  }
  expect_equal(unname(res[, "s"]), vapply(1:12, function(i) sum(big[, 1 + i %% 20]), numeric(1)))
  # Within a process, the copy of `state` persists from one iteration to the next.
  for (pid in unique(res[, "pid"])) {
    calls <- res[res[, "pid"] == pid, "calls"]
    expect_equal(sort(unname(calls)), seq_along(calls))
  }
  expect_lte(length(unique(res[, "pid"])), 2L)
})

test_that("out and resume: a second run reruns only the iterations without a result", {
  registerDoHpcml(workers = 2, seed = 7)
  out <- tempfile("hpcml-foreach-")
  marks <- tempfile("marks-")
  dir.create(marks)
  flag <- file.path(marks, "fail")
  file.create(flag)
  body <- quote({
    file.create(tempfile(paste0("ran-", i, "-"), tmpdir = marks))  # a new name every time it runs
    if (i == 3 && file.exists(flag)) stop("crash in 3")
    runif(1)
  })
  loop <- function(resume) {
    eval(bquote(foreach(i = 1:4, .combine = c, .options.hpcml = list(out = out, resume = .(resume))) %dopar% .(body)))
  }
  expect_error(loop(FALSE), "crash in 3")
  unlink(flag)
  before <- list.files(marks)
  resumed <- loop(TRUE)
  ran_again <- setdiff(list.files(marks), before)
  expect_equal(length(ran_again), 1L)
  expect_match(ran_again, "^ran-3-")
  registerDoHpcml(workers = 1, seed = 7)
  fresh <- foreach(i = 1:4, .combine = c) %dopar% runif(1)
  expect_identical(resumed, fresh)
})

test_that("bad options are refused by name", {
  registerDoHpcml(workers = 1)
  expect_error(foreach(i = 1:2, .options.hpcml = list(worker = 2)) %dopar% i, "unknown option 'worker'")
  registerDoHpcml(backend = "nosuch")
  expect_error(foreach(i = 1:2) %dopar% i, "backend.name: unknown backend")
})
