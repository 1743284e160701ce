/* NumPy's PCG64 and its bounded draw, copied from NumPy's C sources so that C code here draws
 * exactly the numbers a NumPy Generator would:
 *   - PCG64's seeding from SeedSequence's four words, its step and XSL-RR output
 *     (numpy/random/src/pcg64/pcg64.h), and next_uint32's use of an output's low half, then its
 *     high half;
 *   - Generator.integers(low, high) for a range below 2**32 - 1: Lemire's method,
 *     buffered_bounded_lemire_uint32 (numpy/random/src/distributions/distributions.c).
 * Shared by the R package (task_seeds.c: an R loop's seeds) and the Python package
 * (hpcml/numerics/_seeded_draws.c: a bootstrap's resamples), whose tests compare both with
 * NumPy's own generators.
 */
#ifndef HPCML_NUMPY_PCG64_H
#define HPCML_NUMPY_PCG64_H

#include <stdint.h>

typedef unsigned __int128 u128;

typedef struct {
    u128 state, inc;
    int has_uint32;
    uint32_t uinteger;
} pcg64;

static const u128 PCG_MULT = ((u128)2549297995355413924ULL << 64) | 4865540595714422341ULL;

static inline void pcg64_step(pcg64 *rng) { rng->state = rng->state * PCG_MULT + rng->inc; }

/* PCG64(seed_seq): the words of generate_state(4, uint64) as initstate (0, 1) and initseq (2, 3). */
static inline void pcg64_seed(pcg64 *rng, const uint64_t words[4])
{
    u128 initstate = ((u128)words[0] << 64) | words[1];
    u128 initseq = ((u128)words[2] << 64) | words[3];
    rng->state = 0;
    rng->inc = (initseq << 1) | 1;
    pcg64_step(rng);
    rng->state += initstate;
    pcg64_step(rng);
    rng->has_uint32 = 0;
    rng->uinteger = 0;
}

static inline uint64_t pcg64_next64(pcg64 *rng)
{
    pcg64_step(rng);
    uint64_t value = (uint64_t)(rng->state >> 64) ^ (uint64_t)rng->state;
    unsigned rot = (unsigned)(rng->state >> 122);
    return (value >> rot) | (value << ((-rot) & 63));
}

static inline uint32_t pcg64_next32(pcg64 *rng)
{
    if (rng->has_uint32) {
        rng->has_uint32 = 0;
        return rng->uinteger;
    }
    uint64_t next = pcg64_next64(rng);
    rng->has_uint32 = 1;
    rng->uinteger = (uint32_t)(next >> 32);
    return (uint32_t)next;
}

/* A draw in [0, range]: NumPy's buffered_bounded_lemire_uint32 (range < 2**32 - 1). */
static inline uint32_t bounded(pcg64 *rng, uint32_t range)
{
    const uint32_t excl = range + 1;
    uint64_t m = (uint64_t)pcg64_next32(rng) * excl;
    uint32_t leftover = (uint32_t)m;
    if (leftover < excl) {
        const uint32_t threshold = (UINT32_MAX - range) % excl;
        while (leftover < threshold) {
            m = (uint64_t)pcg64_next32(rng) * excl;
            leftover = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

#endif
