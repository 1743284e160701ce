library(testthat)
library(hpcml)

test_check("hpcml")
