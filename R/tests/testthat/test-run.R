spec_file <- function(replicates = 20, kind = "ols") {
  path <- tempfile("hpcml-spec-", fileext = ".yaml")
  writeLines(c(
    "name: r-run-test", "seed: 3",
    "data: {source: 'sklearn:diabetes', target: target}",
    sprintf("model: {kind: %s, features: [bmi, bp, s5]}", kind),
    sprintf("plan: {bootstrap: {replicates: %d}}", replicates),
    "backend: {name: local, workers: 2}",
    sprintf("output: %s", tempfile("hpcml-run-"))), path)
  path
}

test_that("hpcml_run runs a YAML spec and returns data frames", {
  res <- hpcml_run(spec_file(), backend = "local")
  expect_s3_class(res, "hpcml_run")
  expect_true(res$ok)
  expect_s3_class(res$results, "data.frame")
  expect_equal(nrow(res$results), 20)
  expect_true(all(res$results$status == "ok"))
  expect_true(all(c("coef_(Intercept)", "coef_bmi", "coef_bp", "coef_s5") %in% names(res$results)))
  expect_equal(res$table$output, c("coef_(Intercept)", "coef_bmi", "coef_bp", "coef_s5"))
  expect_true(dir.exists(res$run_dir))
  expect_equal(res$summary$run$tasks, 20)
  expect_output(print(res), "20 tasks, 0 failed")
})

test_that("the same spec as an R list gives the same numbers as the YAML", {
  yaml_res <- hpcml_run(spec_file(replicates = 8), workers = 1)
  spec <- list(name = "r-run-test", seed = 3L, data = list(source = "sklearn:diabetes", target = "target"),
               model = list(kind = "ols", features = list("bmi", "bp", "s5")),
               plan = list(bootstrap = list(replicates = 8L)), backend = list(name = "local", workers = 2L),
               output = tempfile("hpcml-run-"))
  list_res <- hpcml_run(spec)
  cols <- grep("^coef_", names(yaml_res$results), value = TRUE)
  expect_identical(yaml_res$results[cols], list_res$results[cols])
})

test_that("Python errors become R errors with the message", {
  expect_error(hpcml_run(spec_file(kind = "nosuchmodel")), "model.kind: unknown model")
  expect_error(hpcml_run("no/such/spec.yaml"), "spec: file not found")
  spec <- spec_file()
  expect_error(hpcml_run(spec, backend = "nosuchbackend"), "backend.name: unknown backend")
  expect_error(hpcml_run(spec, workers = 0), "backend.workers")
  # One line, no Python traceback.
  msg <- tryCatch(hpcml_run(spec, backend = "nosuchbackend"), error = conditionMessage)
  expect_false(grepl("\n", msg))
  expect_false(grepl("Traceback", msg))
})

test_that("every bad field is named in one R error line", {
  spec <- list(name = "bad", data = list(source = "sklearn:diabetes", target = "target"),
               model = list(kind = "ols", bogus = 1L, fit_intercept = "maybe"),
               plan = list(bootstrap = list(replicates = 2L)))
  msg <- tryCatch(hpcml_run(spec), error = conditionMessage)
  expect_match(msg, "model.fit_intercept: Input should be a valid boolean", fixed = TRUE)
  expect_match(msg, "model.bogus: unknown key (got 1)", fixed = TRUE)
  expect_false(grepl("\n", msg))
  expect_error(hpcml_kmeans(data.frame(a = c(1, 2), b = c(3, 4)), centers = 3),
               "model.k: k=3 exceeds the number of rows (2)", fixed = TRUE)
})

test_that("hpcml_available finds the Python package", {
  expect_true(hpcml_available())
})

closure_spec <- function(code, plan, workers = 2L) {
  list(name = "r-closure", seed = 5L, data = list(source = "none"), model = list(kind = "r", code = code),
       plan = plan, backend = list(name = "local", workers = as.integer(workers)), output = tempfile("hpcml-run-"))
}

test_that("an R function is a model of kind r, with the variables it uses", {
  cache <- tempfile("hpcml-cache-")
  old <- Sys.getenv("HPCML_CACHE_DIR", NA)
  Sys.setenv(HPCML_CACHE_DIR = cache)
  on.exit(if (is.na(old)) Sys.unsetenv("HPCML_CACHE_DIR") else Sys.setenv(HPCML_CACHE_DIR = old), add = TRUE)
  # Free variables of the function: a formula, a helper function, and a variable the helper uses.
  my_formula <- mpg ~ wt + hp
  shift <- 100
  shifted <- function(x) x + shift
  fit_coef <- function(data, weights) {
    f <- my_formula
    environment(f) <- environment()  # lm looks up `weights` where the formula was made
    fit <- lm(f, data = data, weights = weights)
    c(coef(fit), shifted_wt = shifted(unname(coef(fit)["wt"])))
  }
  fit <- hpcml_run(closure_spec(fit_coef, list(fit = reticulate::dict())), data = mtcars)
  expect_true(fit$ok)
  reference <- coef(lm(mpg ~ wt + hp, data = mtcars))
  expect_equal(unlist(fit$results[c("(Intercept)", "wt", "hp")]), reference, tolerance = 1e-10)
  expect_equal(fit$results$shifted_wt, unname(reference["wt"]) + 100, tolerance = 1e-10)
  # Saved once per run: one RDS, which the spec names instead of the code.
  expect_length(list.files(file.path(cache, "inputs"), pattern = "^rtask-.*[.]rds$"), 1L)

  # A bootstrap gives the same numbers with 1 and 2 workers, and the numbers are lm's on the
  # weights R draws for the same seed.
  boot_plan <- list(bootstrap = list(replicates = 6L))
  one <- hpcml_run(closure_spec(fit_coef, boot_plan, workers = 1L), data = mtcars)
  two <- hpcml_run(closure_spec(fit_coef, boot_plan, workers = 2L), data = mtcars)
  expect_true(one$ok)
  expect_identical(one$results[c("(Intercept)", "wt", "hp")], two$results[c("(Intercept)", "wt", "hp")])
  expect_equal(length(unique(one$results$wt)), 6L)
})

test_that("a syntax error in R code of a spec is the task's error, with R's every line", {
  spec <- list(name = "r-parse-error", seed = 1L, data = list(source = "none"),
               model = list(kind = "r", code = "function(task_index) {"),
               plan = list(replicate = list(n = 1L)), backend = list(name = "local", workers = 1L),
               output = tempfile("hpcml-run-"))
  res <- hpcml_run(spec, plots = FALSE)
  expect_false(res$ok)
  expected <- tryCatch(parse(text = "function(task_index) {"), error = conditionMessage)
  expect_identical(res$results$error, paste("RError:", expected))
  expect_match(res$results$error, "\n1: function(task_index) {\n", fixed = TRUE)
})

test_that("an R function from a function factory takes its own and the global variables", {
  assign("hpcml_test_power", 2, envir = globalenv())
  on.exit(rm("hpcml_test_power", envir = globalenv()), add = TRUE)
  make <- function(k) function(task_index) list(value = k * (task_index + 1)^hpcml_test_power)
  environment(make) <- globalenv()  # as if defined at the top level of a script
  res <- hpcml_run(closure_spec(make(3), list(replicate = list(n = 4L))))
  expect_true(res$ok)
  expect_equal(res$results$value[order(res$results$task_index)], 3 * (1:4)^2)
})

test_that("an R function as the code of another kind is refused by name", {
  spec <- closure_spec(function(data) 1, list(replicate = list(n = 1L)))
  spec$model$kind <- "ols"
  expect_error(hpcml_run(spec), "model.code: an R function is a model of kind 'r' (got kind 'ols')", fixed = TRUE)
})
