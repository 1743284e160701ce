test_that("hpcml_pca gives prcomp's standard deviations", {
  p <- hpcml_pca(USArrests)
  ref <- prcomp(USArrests)
  expect_s3_class(p, "hpcml_pca")
  expect_equal(p$sdev, ref$sdev, tolerance = 1e-10)
  expect_s3_class(p$importance, "data.frame")
  expect_equal(p$importance$cumulative[4], 1, tolerance = 1e-12)
  expect_equal(p$importance$proportion, ref$sdev^2 / sum(ref$sdev^2), tolerance = 1e-10)
  expect_equal(unname(p$k_for[["k_80"]]), 1L)
})

test_that("hpcml_kmeans finds the iris clusters as well as stats::kmeans", {
  x <- iris[, 1:4]
  km <- hpcml_kmeans(x, centers = 3, nstart = 10, seed = 1L)
  set.seed(1)
  ref <- kmeans(x, centers = 3, nstart = 25)
  expect_s3_class(km, "hpcml_kmeans")
  expect_length(km$cluster, 150)
  expect_equal(sort(km$size), sort(ref$size))
  expect_equal(km$tot.withinss, ref$tot.withinss, tolerance = 1e-8)
  expect_equal(dim(km$centers), c(3L, 4L))
  expect_equal(colnames(km$centers), names(x))
  # Same seed, same answer.
  expect_identical(hpcml_kmeans(x, centers = 3, nstart = 10, seed = 1L)$centers, km$centers)
})

test_that("hpcml_pca(scale. = TRUE) is prcomp(scale. = TRUE), rotation up to sign", {
  p <- hpcml_pca(USArrests, scale. = TRUE)
  ref <- prcomp(USArrests, scale. = TRUE)
  expect_equal(p$sdev, ref$sdev, tolerance = 1e-8)
  signs <- sign(colSums(p$rotation * ref$rotation))
  expect_equal(sweep(p$rotation, 2, signs, `*`), ref$rotation, tolerance = 1e-8)
})

test_that("hpcml_kmeans centres are R's on the same partition, with tol", {
  x <- iris[, 1:4]
  km <- hpcml_kmeans(x, centers = 3, nstart = 10, tol = 0, seed = 1L)
  ref <- kmeans(x, centers = km$centers, algorithm = "Lloyd", iter.max = 50)
  expect_equal(unname(km$centers), unname(ref$centers), tolerance = 1e-6)
  expect_equal(km$size, ref$size)
  expect_equal(km$cluster, ref$cluster)
})

test_that("a fit of ols returns coef(summary(lm)) with NA for aliased terms", {
  d <- transform(mtcars, wt2 = 2 * wt)
  res <- hpcml_run(list(name = "r-coef", data = list(target = "mpg"),
                        model = list(kind = "ols", features = list("wt", "hp", "wt2")),
                        plan = list(fit = reticulate::dict()), backend = list(name = "local", workers = 1L),
                        output = tempfile("hpcml-run-")), plots = FALSE, data = d)
  ref <- coef(summary(lm(mpg ~ wt + hp + wt2, data = d)))
  cf <- res$coefficients
  expect_equal(rownames(cf), c("(Intercept)", "wt", "hp", "wt2"))
  expect_equal(colnames(cf), colnames(ref))
  expect_true(all(is.na(cf["wt2", ])))
  expect_equal(as.matrix(cf[rownames(ref), ]), ref, tolerance = 1e-8)
})

test_that("non-numeric columns are an R error naming the column", {
  expect_error(hpcml_pca(iris), "column 'Species' is not numeric")
})
