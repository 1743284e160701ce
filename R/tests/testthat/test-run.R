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
