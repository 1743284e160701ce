/* Many replicates' bootstrap draws at once, each exactly its own NumPy generator's.
 *
 * Replicate k of a job is drawn by default_rng(SeedSequence(seed, spawn_key=(k,))), the seed
 * contract that makes replicates the same on every backend and chunking. Making 2,000 such
 * generators and calling each one from Python costs about as much as the statistic of a small
 * vectorized bootstrap. Here the generators are PCG64 states seeded from the four words
 * SeedSequence hands PCG64 (hpcml/plans/task_seeds.py computes them for a whole group), drawn
 * by NumPy's own arithmetic (R/src/numpy_pcg64.h, shared with the R package's seeds).
 * Each replicate's n draws are counted and written back as row indices in increasing order:
 * what the vectorized path takes its resamples from (equal indices are alike, so this is the
 * draws sorted). hpcml/numerics/bounded_draws.py checks the result against NumPy's own
 * generators once a process before using it, and falls back to NumPy where this module was
 * not built.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdlib.h>
#include <string.h>

#include "numpy_pcg64.h" /* in R/src: the R package draws with the same code */

/* One replicate's n draws, counted: counts[v] is how often row v was drawn. */
static void count_draws(const uint64_t words[4], uint32_t n, uint32_t *counts)
{
    pcg64 rng;
    pcg64_seed(&rng, words);
    memset(counts, 0, (size_t)n * sizeof(uint32_t));
    for (uint32_t j = 0; j < n; j++) counts[bounded(&rng, n - 1)]++;
}

/* Row k of out: the n draws of the generator seeded by words[4k..4k+3], in increasing order,
 * each written as VALUE(v) (the index itself, or a column's value at it). A row is written
 * through `scratch` (n + 4 items): each value is written four times without a test and the
 * pointer moved by its count (counts are mostly 0 to 2; a branch on each count mispredicts
 * about once a value and took half the time). */
#define FILL_ROWS(NAME, TYPE, VALUE)                                                 \
    static void NAME(const uint64_t *words, Py_ssize_t rows, uint32_t n,             \
                     const double *column, uint32_t *counts, TYPE *scratch, TYPE *out) \
    {                                                                                \
        (void)column;                                                                \
        for (Py_ssize_t k = 0; k < rows; k++) {                                      \
            count_draws(words + 4 * k, n, counts);                                   \
            TYPE *row = scratch;                                                     \
            for (uint32_t v = 0; v < n; v++) {                                       \
                uint32_t c = counts[v];                                              \
                TYPE value = VALUE(v);                                               \
                row[0] = row[1] = row[2] = row[3] = value;                           \
                if (c > 4)                                                           \
                    for (uint32_t i = 4; i < c; i++) row[i] = value;                 \
                row += c;                                                            \
            }                                                                        \
            memcpy(out + (size_t)k * n, scratch, (size_t)n * sizeof(TYPE));          \
        }                                                                            \
    }

#define AS_INDEX(v) (v)
#define AT_COLUMN(v) column[v]
FILL_ROWS(fill_uint16, uint16_t, AS_INDEX)
FILL_ROWS(fill_uint32, uint32_t, AS_INDEX)
FILL_ROWS(fill_int64, int64_t, AS_INDEX)
FILL_ROWS(fill_values, double, AT_COLUMN)

typedef enum { UINT16, UINT32, INT64, VALUES } kind;

/* Checks the buffers, then fills out (GIL released); NULL with an exception set if refused. */
static PyObject *fill(Py_buffer *words, unsigned long long n, Py_buffer *column, Py_buffer *out, kind what)
{
    Py_ssize_t rows = words->len / (Py_ssize_t)(4 * sizeof(uint64_t));
    size_t item = what == UINT16 ? 2 : what == UINT32 ? 4 : 8;
    if (n < 1 || n > UINT32_MAX) {
        PyErr_Format(PyExc_ValueError, "n must be in [1, 2**32 - 1], not %llu", n);
        return NULL;
    }
    if (words->len % (Py_ssize_t)(4 * sizeof(uint64_t))) {
        PyErr_SetString(PyExc_ValueError, "words must hold 4 uint64 per row");
        return NULL;
    }
    if ((what == UINT16 && n > 65536) || out->len != (Py_ssize_t)((size_t)rows * n * item)) {
        PyErr_Format(PyExc_ValueError, "out must hold %zd x %llu %s", rows, n,
                     what == VALUES ? "float64 values" : "indices of its type below n");
        return NULL;
    }
    uint32_t *counts = malloc((size_t)n * sizeof(uint32_t));
    void *scratch = malloc(((size_t)n + 4) * item);
    if (!counts || !scratch) {
        free(counts);
        free(scratch);
        return PyErr_NoMemory();
    }
    const double *values = column ? column->buf : NULL;
    Py_BEGIN_ALLOW_THREADS
    switch (what) {
    case UINT16: fill_uint16(words->buf, rows, (uint32_t)n, values, counts, scratch, out->buf); break;
    case UINT32: fill_uint32(words->buf, rows, (uint32_t)n, values, counts, scratch, out->buf); break;
    case INT64: fill_int64(words->buf, rows, (uint32_t)n, values, counts, scratch, out->buf); break;
    case VALUES: fill_values(words->buf, rows, (uint32_t)n, values, counts, scratch, out->buf); break;
    }
    Py_END_ALLOW_THREADS
    free(counts);
    free(scratch);
    return Py_NewRef(Py_None);
}

static PyObject *sorted_draws(PyObject *self, PyObject *args)
{
    Py_buffer words, out;
    unsigned long long n;
    if (!PyArg_ParseTuple(args, "y*Kw*", &words, &n, &out)) return NULL;
    PyObject *result = NULL;
    if (out.itemsize == 2)
        result = fill(&words, n, NULL, &out, UINT16);
    else if (out.itemsize == 4)
        result = fill(&words, n, NULL, &out, UINT32);
    else if (out.itemsize == 8)
        result = fill(&words, n, NULL, &out, INT64);
    else
        PyErr_Format(PyExc_ValueError, "out must hold uint16, uint32 or int64, not items of %zd bytes", out.itemsize);
    PyBuffer_Release(&words);
    PyBuffer_Release(&out);
    return result;
}

static PyObject *resampled_values(PyObject *self, PyObject *args)
{
    Py_buffer words, column, out;
    if (!PyArg_ParseTuple(args, "y*y*w*", &words, &column, &out)) return NULL;
    PyObject *result = NULL;
    if (column.itemsize != 8 || out.itemsize != 8 || column.len % 8)
        PyErr_SetString(PyExc_ValueError, "column and out must hold float64");
    else
        result = fill(&words, (unsigned long long)(column.len / 8), &column, &out, VALUES);
    PyBuffer_Release(&words);
    PyBuffer_Release(&column);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"sorted_draws", sorted_draws, METH_VARARGS,
     "sorted_draws(words, n, out): row k of out (rows x n, uint16, uint32 or int64) gets the n draws "
     "integers(0, n, n) of PCG64 seeded by words[k] (4 uint64: SeedSequence's generate_state(4, uint64)), "
     "in increasing order."},
    {"resampled_values", resampled_values, METH_VARARGS,
     "resampled_values(words, column, out): row k of out (rows x n float64) gets column (n float64) at "
     "sorted_draws' row k: the resampled copy of the column, its rows in order."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_seeded_draws", NULL, -1, methods};

PyMODINIT_FUNC PyInit__seeded_draws(void) { return PyModule_Create(&module); }
