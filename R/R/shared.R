# Large vectors once per machine: a loop's large matrix or vector (an `.export`, a global of
# the loop body, hpcml_boot's data...) is written once, as a file of its values, and every
# worker maps that file instead of reading its own copy from the loop's RDS.
#
# Before the loop's function is saved (tasks.R), every double, integer or logical vector of at
# least HPCML_MAP_MIN_BYTES (32 MiB) that the function holds (in its environment, in lists and
# data frames' columns, and in the environments hpcml made for the loop's exports) is replaced
# by a reference to its file (hpcml.data.r_vectors writes it, named by its SHA-256). Each worker
# checks the file (this user's, no one else may write it) and maps it (src/shared.c): a vector
# of its own whose pages are the page cache's one copy, never written back, copied by R before
# any change. A worker without this package reads the file into memory instead. Other values
# (character vectors, lists, functions, small vectors) travel in the RDS as before.

#' @useDynLib hpcml, .registration = TRUE, .fixes = "C_"
NULL

# Environments of a loop's objects made by hpcml (never the user's): the only environments
# whose bindings are replaced by references. Marked with an attribute, which the worker sees too.
own_env <- function(env) {
  attr(env, "hpcml_objects") <- TRUE
  env
}

shared_min_bytes <- function() {
  value <- suppressWarnings(as.numeric(Sys.getenv("HPCML_MAP_MIN_BYTES", "33554432")))
  if (is.na(value)) 32 * 2^20 else value
}

# Apply `leaf` to every value held in `env` (an environment from own_env), looking into lists
# (a data frame's columns) and into the environments of functions that own_env marked, once
# each. `leaf` gets atomic vectors of at least `min_length` elements and lists of class
# "hpcml_shared_vector"; what it returns replaces the value. Self-contained (only base R):
# it travels with the loop's function to workers that may not have this package.
walk_objects <- function(env, leaf, min_length) {
  seen <- list()
  walk <- function(x) {
    if (is.environment(x)) {
      if (!isTRUE(attr(x, "hpcml_objects")) || any(vapply(seen, identical, NA, x))) return(x)
      seen[[length(seen) + 1L]] <<- x
      for (name in setdiff(ls(x, all.names = TRUE, sorted = FALSE), "...")) {
        if (!bindingIsActive(name, x)) assign(name, walk(get(name, envir = x, inherits = FALSE)), envir = x)
      }
      return(x)
    }
    if (is.function(x)) {
      if (!is.null(environment(x))) walk(environment(x))
      return(x)
    }
    if (typeof(x) == "list") {
      if (inherits(x, "hpcml_shared_vector")) return(leaf(x))
      todo <- which(lengths(x) >= min_length | vapply(x, is.recursive, NA))
      if (!length(todo)) return(x)
      cls <- oldClass(x)
      oldClass(x) <- NULL  # a data frame's columns are replaced as a list's elements
      for (k in todo) x[k] <- list(walk(x[[k]]))
      oldClass(x) <- cls
      return(x)
    }
    if (is.atomic(x) && length(x) >= min_length) leaf(x) else x
  }
  walk(env)
  invisible(env)
}

# Replace the large vectors held by `fun`'s environment (task_closure's) by references to the
# files holding them; `shared`: in the cache directory every node sees (other backends than
# "local"). Returns the files; the environment gets what workers need to map them back.
share_vectors <- function(fun, shared) {
  if (.Platform$OS.type != "unix") return(character(0))  # mapping files needs mmap
  state <- environment(fun)
  min_bytes <- shared_min_bytes()
  files <- character(0)
  publish <- NULL
  leaf <- function(x) {
    type <- typeof(x)
    if (!type %in% c("double", "integer", "logical") || isS4(x)) return(x)
    bytes <- length(x) * if (type == "double") 8 else 4
    if (bytes < min_bytes) return(x)
    address <- .Call(C_hpcml_data_address, x)
    if (is.null(address)) return(x)  # a compact sequence (1:n): its RDS is small already
    if (is.null(publish)) publish <<- py_modules()$hpcml_r_vectors$publish
    file <- publish(address, bytes, shared)
    if (is.null(file)) return(x)
    files <<- union(files, file)
    structure(list(file = file, type = type, length = length(x), attributes = attributes(x)),
              class = "hpcml_shared_vector")
  }
  walk_objects(state, leaf, ceiling(min_bytes / 8))
  if (length(files)) {
    state$.hpcml_shared_files <- files
    state$.hpcml_walk <- walk_objects
    environment(state$.hpcml_walk) <- globalenv()
    state$.hpcml_attach <- attach_shared
    environment(state$.hpcml_attach) <- state
  }
  files
}

# Run on the worker (kinds.py calls it once the files are checked): every reference becomes the
# mapped vector (or, without this package, the file read into memory). Its environment is the
# loop function's, so it only uses base R and what that environment holds.
attach_shared <- function() {
  map <- if (requireNamespace("hpcml", quietly = TRUE)) {
    tryCatch(utils::getFromNamespace("map_vector", "hpcml"), error = function(e) NULL)
  }
  if (is.null(map)) {
    map <- function(file, type, length, attributes) {
      x <- vector(type, length)
      con <- file(file, "rb")
      on.exit(close(con))
      block <- 2^24
      for (start in seq(0, length - 1, by = block)) {
        k <- min(block, length - start)
        x[start + seq_len(k)] <- readBin(con, type, n = k, size = if (type == "double") 8L else 4L)
      }
      attributes(x) <- attributes
      x
    }
  }
  leaf <- function(x) {
    if (!inherits(x, "hpcml_shared_vector")) return(x)
    map(x$file, x$type, x$length, as.list(x$attributes))
  }
  .hpcml_walk(parent.env(environment()), leaf, Inf)
  invisible(TRUE)
}

# The vector whose values are `file` (written by share_vectors), mapped read-only and shared.
map_vector <- function(file, type, length, attributes) {
  .Call(C_hpcml_map_vector, file, type, as.numeric(length), as.list(attributes))
}

# After the loop: let go of its files, removing them unless the run is kept (or another session
# uses the same vector now).
release_vectors <- function(files, remove) {
  if (length(files)) py_modules()$hpcml_r_vectors$release(as.list(files), remove)
  invisible(NULL)
}
