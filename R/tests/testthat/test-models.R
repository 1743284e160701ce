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

test_that("non-numeric columns are an R error naming the column", {
  expect_error(hpcml_pca(iris), "column 'Species' is not numeric")
})
