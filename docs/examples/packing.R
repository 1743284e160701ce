# One R session per task, the seeds' packing pattern without the perl bundler:
#   hpcml runs `Rscript packing.R <task_index>` for every task, on any backend.
# R's generator is already seeded for this task (L'Ecuyer-CMRG, from the task's seed).
args <- commandArgs(trailingOnly = TRUE)
task_index <- as.integer(args[1])
n <- if (length(args) > 1) as.integer(args[2]) else 1000L

x <- rnorm(n)
y <- 2 * x + rnorm(n)
fit <- lm(y ~ x)
result <- list(task = task_index, slope = unname(coef(fit)[2]), draw = runif(1))

# Named numbers back to hpcml: one results column each.
jsonlite::write_json(result, Sys.getenv("HPCML_OUTPUT"), auto_unbox = TRUE, digits = NA)
