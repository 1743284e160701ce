# The Python side of hpcml, imported once per R session through reticulate.
# Set RETICULATE_PYTHON (or options(hpcml.python = "/path/to/python")) to the Python where
# hpcml is installed.

.hpcml <- new.env(parent = emptyenv())

# R's LD_LIBRARY_PATH lists the system library folder first; a Python built elsewhere (pyenv,
# conda) would then load the system libpython in its worker processes and fail. Putting the
# interpreter's own library folder first keeps workers on the same libpython as this one.
.fix_ld_path <- "
import os, sysconfig
libdir = sysconfig.get_config_var('LIBDIR') or ''
old = os.environ.get('LD_LIBRARY_PATH', '')
if libdir and os.path.isdir(libdir) and not old.startswith(libdir + ':'):
    os.environ['LD_LIBRARY_PATH'] = libdir + (':' + old if old else '')
# reticulate 1.28 converts pandas frames with an API pandas 2 deprecates; the warning is noise.
import warnings
warnings.filterwarnings('ignore', message='Index.format', category=FutureWarning)
"

py_modules <- function() {
  if (is.null(.hpcml$runner)) {
    python <- getOption("hpcml.python")
    if (!nzchar(Sys.getenv("RETICULATE_PYTHON")) && !is.null(python)) {
      reticulate::use_python(python, required = TRUE)
    }
    .hpcml$runner <- py_call(reticulate::import, "hpcml")
    reticulate::py_run_string(.fix_ld_path)
    .hpcml$pandas <- reticulate::import("pandas")
  }
  .hpcml
}

#' Is hpcml importable from R?
#'
#' @return TRUE when reticulate finds a Python with the hpcml package.
hpcml_available <- function() {
  isTRUE(tryCatch(reticulate::py_module_available("hpcml"), error = function(e) FALSE))
}

# A Python exception's message as a one-line R error (no Python traceback).
py_message <- function(e) {
  lines <- strsplit(conditionMessage(e), "\n", fixed = TRUE)[[1]]
  lines <- trimws(lines[nzchar(trimws(lines))])
  lines <- lines[!grepl("^(Run `reticulate::py_last_error|Detailed traceback|File \"|Traceback)", lines)]
  lines <- sub("^Error in py_call_impl\\(.*\\) *: *", "", lines)
  if (length(lines) && startsWith(lines[1], "hpcml.errors.SpecError: ")) {
    # Bad input: one "field: problem (got value)" per line in Python; all of them, on one line.
    return(paste(sub("^hpcml.errors.SpecError: ", "", lines), collapse = "; "))
  }
  if (length(lines)) lines[1] else conditionMessage(e)
}

py_call <- function(f, ...) {
  tryCatch(f(...), error = function(e) stop(py_message(e), call. = FALSE))
}

# NULL (Python None) -> NA so that lists of records bind into data frames.
records_frame <- function(records) {
  if (!length(records)) return(data.frame())
  rows <- lapply(records, function(r) {
    r <- lapply(r, function(v) if (is.null(v)) NA else v)
    as.data.frame(r, check.names = FALSE, stringsAsFactors = FALSE)
  })
  cols <- unique(unlist(lapply(rows, names)))
  rows <- lapply(rows, function(r) { r[setdiff(cols, names(r))] <- NA; r[cols] })
  do.call(rbind, rows)
}

# A data.frame / matrix written to a Parquet file through pandas (exact doubles, any column name).
write_parquet <- function(frame, path) {
  m <- py_modules()
  pdf <- reticulate::r_to_py(as.data.frame(frame, optional = TRUE))
  py_call(pdf$to_parquet, path, index = FALSE)
  invisible(path)
}
