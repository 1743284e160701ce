/* The seed each iteration of an R loop gets, computed in this session without Python.
 *
 * hpcml's contract (hpcml/plans/base.py, task_rng): task i's generator is NumPy's
 * default_rng(SeedSequence(seed, spawn_key=(i,))), and an R task seeds R's generator with that
 * generator's first draw, integers(1, 2**31 - 1) (hpcml/models/r/common.py, r_seed). An R loop
 * run by R worker processes (R/local_pool.R) needs those integers and nothing else from NumPy,
 * so they are made here by the same arithmetic: SeedSequence's hash (numpy/random/
 * _bit_generator.pyx: hashmix, mix_entropy, generate_state), PCG64's seeding and step
 * (numpy/random/src/pcg64: pcg64_set_seed, XSL-RR output, next_uint32's halves) and NumPy's
 * Lemire draw of a bounded 32-bit integer (distributions.c, buffered_bounded_lemire_uint32).
 * The Python test suite compares these with NumPy's own for thousands of seeds and tasks.
 */
#include <R.h>
#include <Rinternals.h>

#include <stdint.h>

#include "numpy_pcg64.h"

#define POOL_SIZE 4
#define INIT_A 0x43b0d7e5U
#define MULT_A 0x931e8875U
#define INIT_B 0x8b51f9ddU
#define MULT_B 0x58f38dedU
#define MIX_MULT_L 0xca01f9ddU
#define MIX_MULT_R 0x4973f715U
#define XSHIFT 16


static uint32_t hashmix(uint32_t value, uint32_t *hash_const)
{
    value ^= *hash_const;
    *hash_const *= MULT_A;
    value *= *hash_const;
    value ^= value >> XSHIFT;
    return value;
}

static uint32_t mix(uint32_t x, uint32_t y)
{
    uint32_t result = MIX_MULT_L * x - MIX_MULT_R * y;
    return result ^ (result >> XSHIFT);
}

/* A non-negative integer as SeedSequence reads it: 32-bit words, least significant first. */
static int int_words(uint64_t n, uint32_t *words)
{
    int k = 0;
    do {
        words[k++] = (uint32_t)n;
        n >>= 32;
    } while (n);
    return k;
}

/* SeedSequence(entropy, spawn_key=(index,)).generate_state(4, uint64) */
static void seed_sequence_state(uint64_t entropy, uint64_t index, uint64_t out[4])
{
    uint32_t run[POOL_SIZE + 4] = {0};
    int n_entropy = int_words(entropy, run);
    /* a spawned sequence pads its entropy with zeros to the pool's size */
    if (n_entropy < POOL_SIZE) n_entropy = POOL_SIZE;
    int n_run = n_entropy + int_words(index, run + n_entropy);

    uint32_t pool[POOL_SIZE];
    uint32_t hash_const = INIT_A;
    for (int i = 0; i < POOL_SIZE; i++) pool[i] = hashmix(run[i], &hash_const);
    for (int src = 0; src < POOL_SIZE; src++)
        for (int dst = 0; dst < POOL_SIZE; dst++)
            if (src != dst) pool[dst] = mix(pool[dst], hashmix(pool[src], &hash_const));
    for (int src = POOL_SIZE; src < n_run; src++)
        for (int dst = 0; dst < POOL_SIZE; dst++)
            pool[dst] = mix(pool[dst], hashmix(run[src], &hash_const));

    uint32_t words[8];
    hash_const = INIT_B;
    for (int i = 0; i < 8; i++) {
        uint32_t value = pool[i % POOL_SIZE];
        value ^= hash_const;
        hash_const *= MULT_B;
        value *= hash_const;
        value ^= value >> XSHIFT;
        words[i] = value;
    }
    for (int i = 0; i < 4; i++) out[i] = (uint64_t)words[2 * i] | ((uint64_t)words[2 * i + 1] << 32);
}

/* R's set.seed integer of tasks first, first + 1, ..., first + n - 1 of a job seeded `seed`. */
SEXP hpcml_task_seeds(SEXP seed, SEXP first, SEXP n)
{
    double s = asReal(seed), f = asReal(first);
    int count = asInteger(n);
    /* exact integers only: the caller (R/local_pool.R) checks them first */
    if (!R_FINITE(s) || s < 0 || s > 9007199254740992.0 || s != (double)(uint64_t)s)
        error("seed must be a non-negative integer");
    if (!R_FINITE(f) || f < 0 || f > 9007199254740992.0 || f != (double)(uint64_t)f || count == NA_INTEGER || count < 0)
        error("task indices must be non-negative integers");
    SEXP out = PROTECT(allocVector(INTSXP, count));
    int *values = INTEGER(out);
    for (int i = 0; i < count; i++) {
        uint64_t words[4];
        pcg64 rng;
        seed_sequence_state((uint64_t)s, (uint64_t)f + (uint64_t)i, words);
        pcg64_seed(&rng, words);
        /* integers(1, 2**31 - 1): 1 + a draw in [0, 2**31 - 3] */
        values[i] = 1 + (int)bounded(&rng, 2147483645U);
    }
    UNPROTECT(1);
    return out;
}
