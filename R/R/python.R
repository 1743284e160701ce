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

# Calls into hpcml return (value, None), or (None, error) for bad input: hpcml.SpecError is
# recognised by its class here, and its `lines()` become the R error (one line per problem).
.spec_guard <- "
import hpcml
def _hpcml_r_call(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs), None
    except hpcml.SpecError as err:
        return None, err
"

py_modules <- function() {
  if (is.null(.hpcml$hpcml)) {
    python <- getOption("hpcml.python")
    if (!nzchar(Sys.getenv("RETICULATE_PYTHON")) && !is.null(python)) {
      reticulate::use_python(python, required = TRUE)
    }
    hpcml <- tryCatch(reticulate::import("hpcml"), error = function(e) stop(py_message(e), call. = FALSE))
    reticulate::py_run_string(.fix_ld_path)
    reticulate::py_run_string(.spec_guard)
    .hpcml$guard <- reticulate::import_main(convert = FALSE)$`_hpcml_r_call`
    # Imported when first used: a loop's workers start before the driver imports them.
    .hpcml$pandas_raw <- reticulate::import("pandas", convert = FALSE, delay_load = TRUE)
    .hpcml$numpy <- reticulate::import("numpy", convert = FALSE, delay_load = TRUE)
    .hpcml$local <- reticulate::import("hpcml.backends.local_pools", convert = FALSE)
    .hpcml$loop_values <- reticulate::import("hpcml.drivers.loop_values", convert = FALSE, delay_load = TRUE)
    .hpcml$hpcml_r_vectors <- reticulate::import("hpcml.data.r_vectors", delay_load = TRUE)
    .hpcml$hpcml <- hpcml
  }
  .hpcml
}

#' Is hpcml importable from R?
#'
#' @return TRUE when reticulate finds a Python with the hpcml package.
#' @export
hpcml_available <- function() {
  isTRUE(tryCatch(reticulate::py_module_available("hpcml"), error = function(e) FALSE))
}

# A Python exception's message as a one-line R error (no Python traceback).
py_message <- function(e) {
  lines <- strsplit(conditionMessage(e), "\n", fixed = TRUE)[[1]]
  lines <- trimws(lines[nzchar(trimws(lines))])
  lines <- lines[!grepl("^(Run `reticulate::py_last_error|Detailed traceback|File \"|Traceback)", lines)]
  lines <- sub("^Error in py_call_impl\\(.*\\) *: *", "", lines)
  if (length(lines)) lines[1] else conditionMessage(e)
}

# Call a function of hpcml: bad input (hpcml.SpecError) is an R error of class
# "hpcml_spec_error" listing every problem on one line; other Python errors keep their type.
py_call <- function(f, ...) {
  m <- py_modules()
  pair <- tryCatch(m$guard(f, ...), error = function(e) stop(py_message(e), call. = FALSE))
  err <- reticulate::py_get_item(pair, 1L)
  if (!inherits(err, "python.builtin.NoneType")) {
    problems <- as.character(reticulate::py_to_r(err$lines()))
    stop(structure(class = c("hpcml_spec_error", "error", "condition"),
                   list(message = paste(problems, collapse = "; "), call = NULL, problems = problems)))
  }
  reticulate::py_get_item(pair, 0L)
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

# A data.frame for hpcml.run(spec, data = frame): a pandas DataFrame (exact doubles, any column name).
py_frame <- function(frame) {
  py_modules()
  if (inherits(frame, "python.builtin.object")) return(frame)  # already a pandas frame
  reticulate::r_to_py(as.data.frame(frame, optional = TRUE))
}
