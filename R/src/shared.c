/* Large R vectors shared between processes: a file holding a vector's values, mapped by each
 * worker as an R vector of its own (an ALTREP object whose data are the mapped pages).
 *
 * The file is mapped copy-on-write (MAP_PRIVATE): every process that maps it shares the page
 * cache's one copy, and nothing a process does can change the file or another process's
 * vector. The vector is marked not mutable, so R copies it before any change (copy-on-modify),
 * as for any value bound to two names. Serialized (a task's value), it is an ordinary vector.
 * See R/shared.R.
 */
#include <R.h>
#include <Rinternals.h>
#include <R_ext/Altrep.h>
#include <R_ext/Rdynload.h>

#include <errno.h>
#include <string.h>
#ifndef _WIN32
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

static R_altrep_class_t mapped_double, mapped_integer, mapped_logical;

/* data1: an external pointer to the mapping, its tag the file's path, its protected value the
 * mapping's size in bytes (a double); data2: the vector's length (a double). */

static void unmap(SEXP ptr)
{
    void *addr = R_ExternalPtrAddr(ptr);
    if (addr != NULL) {
#ifndef _WIN32
        munmap(addr, (size_t) REAL(R_ExternalPtrProtected(ptr))[0]);
#endif
        R_ClearExternalPtr(ptr);
    }
}

static R_xlen_t mapped_length(SEXP x)
{
    return (R_xlen_t) REAL(R_altrep_data2(x))[0];
}

static void *mapped_dataptr(SEXP x, Rboolean writeable)
{
    void *addr = R_ExternalPtrAddr(R_altrep_data1(x));
    if (addr == NULL) error("hpcml: the mapped file of this vector is no longer mapped");
    return addr;
}

static const void *mapped_dataptr_or_null(SEXP x)
{
    return R_ExternalPtrAddr(R_altrep_data1(x));
}

static Rboolean mapped_inspect(SEXP x, int pre, int deep, int pvec, void (*inspect_subtree)(SEXP, int, int, int))
{
    Rprintf(" hpcml mapped file %s\n", CHAR(STRING_ELT(R_ExternalPtrTag(R_altrep_data1(x)), 0)));
    return TRUE;
}

static void set_methods(R_altrep_class_t cls)
{
    R_set_altrep_Length_method(cls, mapped_length);
    R_set_altrep_Inspect_method(cls, mapped_inspect);
    R_set_altvec_Dataptr_method(cls, mapped_dataptr);
    R_set_altvec_Dataptr_or_null_method(cls, mapped_dataptr_or_null);
}

/* The vector of `type` ("double", "integer", "logical") and `length` whose values are the file
 * `path`, with `attributes` (a named list: dim, dimnames, names, class, levels...). The file
 * must be a regular file of this user that no one else may write, of exactly the vector's size. */
SEXP hpcml_map_vector(SEXP path, SEXP type, SEXP length, SEXP attributes)
{
    const char *file = CHAR(STRING_ELT(path, 0));
    const char *kind = CHAR(STRING_ELT(type, 0));
    R_xlen_t n = (R_xlen_t) asReal(length);
    R_altrep_class_t cls;
    size_t width;
    if (strcmp(kind, "double") == 0) { cls = mapped_double; width = sizeof(double); }
    else if (strcmp(kind, "integer") == 0) { cls = mapped_integer; width = sizeof(int); }
    else if (strcmp(kind, "logical") == 0) { cls = mapped_logical; width = sizeof(int); }
    else error("hpcml: cannot map a vector of type '%s'", kind);
    size_t bytes = (size_t) n * width;
    if (n <= 0) error("hpcml: cannot map an empty vector from %s", file);
#ifdef _WIN32
    error("hpcml: mapping %s needs a POSIX system", file);
    return R_NilValue;
#else

    int fd = open(file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) error("hpcml: cannot open the shared copy %s (%s)", file, strerror(errno));
    struct stat st;
    const char *why = NULL;
    if (fstat(fd, &st) != 0) why = strerror(errno);
    else if (!S_ISREG(st.st_mode)) why = "it is not a regular file";
    else if (st.st_uid != geteuid()) why = "it is owned by another user";
    else if (st.st_mode & (S_IWGRP | S_IWOTH)) why = "other users may write it";
    else if ((size_t) st.st_size != bytes) why = "its size is not the vector's";
    if (why != NULL) {
        close(fd);
        error("hpcml: refusing the shared copy %s: %s", file, why);
    }
    void *addr = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd);
    if (addr == MAP_FAILED) error("hpcml: cannot map %s (%s)", file, strerror(err));

    SEXP size = PROTECT(ScalarReal((double) bytes));
    SEXP ptr = PROTECT(R_MakeExternalPtr(addr, path, size));
    R_RegisterCFinalizerEx(ptr, unmap, TRUE);
    SEXP len = PROTECT(ScalarReal((double) n));
    SEXP ans = PROTECT(R_new_altrep(cls, ptr, len));
    SEXP names = PROTECT(getAttrib(attributes, R_NamesSymbol));
    for (R_xlen_t i = 0; i < XLENGTH(attributes); i++) {
        setAttrib(ans, installChar(STRING_ELT(names, i)), VECTOR_ELT(attributes, i));
    }
    MARK_NOT_MUTABLE(ans);  /* any change copies it first, as for a value bound to two names */
    UNPROTECT(5);
    return ans;
#endif
}

/* The address of a vector's values (a string "0x..."), or NULL when it has none in memory (a
 * compact ALTREP sequence such as 1:1e9, whose values are computed): what Python hashes and
 * writes without a copy, while the vector is alive in this session (R/shared.R). */
SEXP hpcml_data_address(SEXP x)
{
    const void *addr = DATAPTR_OR_NULL(x);
    if (addr == NULL) return R_NilValue;
    char text[64];
    snprintf(text, sizeof text, "%p", addr);
    return mkString(text);
}

SEXP hpcml_task_seeds(SEXP seed, SEXP first, SEXP n);  /* task_seeds.c */

static const R_CallMethodDef calls[] = {
    {"hpcml_map_vector", (DL_FUNC) &hpcml_map_vector, 4},
    {"hpcml_task_seeds", (DL_FUNC) &hpcml_task_seeds, 3},
    {"hpcml_data_address", (DL_FUNC) &hpcml_data_address, 1},
    {NULL, NULL, 0}
};

void R_init_hpcml(DllInfo *dll)
{
    R_registerRoutines(dll, NULL, calls, NULL, NULL);
    R_useDynamicSymbols(dll, FALSE);
    mapped_double = R_make_altreal_class("hpcml_mapped_double", "hpcml", dll);
    mapped_integer = R_make_altinteger_class("hpcml_mapped_integer", "hpcml", dll);
    mapped_logical = R_make_altlogical_class("hpcml_mapped_logical", "hpcml", dll);
    set_methods(mapped_double);
    set_methods(mapped_integer);
    set_methods(mapped_logical);
}
