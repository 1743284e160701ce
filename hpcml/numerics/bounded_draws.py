"""``rng.integers(0, n, n)`` of many generators at once, the same numbers exactly.

For a range below 2**32 NumPy's ``Generator.integers`` draws each number by Lemire's method
(``buffered_bounded_lemire_uint32`` in ``numpy/random/src/distributions/distributions.c``):
a 32-bit word ``w`` of the generator gives ``(w * n) >> 32`` unless the low 32 bits of the
product fall below ``2**32 mod n`` -- then the word is rejected and the next one tried. PCG64's
32-bit words are the low then the high half of each 64-bit output. So the draws of a group of
generators are their raw outputs (``random_raw``, one call each) put through that arithmetic
as whole arrays, a few microseconds a generator instead of one ``integers`` call's overhead.

A generator whose words include one that could be rejected (about one in 15,000 of n = 1,000
draws) is stepped back (``advance``) and drawn by ``integers`` itself. The first use in a
process checks the arithmetic against ``integers``; if NumPy ever draws otherwise, every
generator is drawn by ``integers``.

Where hpcml was built with a C compiler, :func:`seeded_sorted_draws` does the same from the
generators' seeding words alone (``_seeded_draws.c``: no generator objects, no raw arrays),
checked against NumPy once a process as well.
"""
from __future__ import annotations

import functools

import numpy as np

try:
    from hpcml.numerics import _seeded_draws  # built from _seeded_draws.c where a compiler was found
except ImportError:  # installed without one: NumPy draws the same numbers
    _seeded_draws = None

# Ranges up to this are drawn from raw outputs (word * n stays exact in float64); larger
# ones by ``integers`` itself.
MAX_RANGE = 2**21


def lemire_draws(generators: list[np.random.Generator], n: int, dtype=np.int64) -> np.ndarray:
    """Row k: ``generators[k].integers(0, n, n)`` (len(generators) x n, of type ``dtype``:
    int64, or an unsigned type that holds n - 1, made directly, without an int64 array). Each
    generator must be fresh (no 32-bit half of an output held back, as after seeding); one
    whose bit generator is not PCG64 is drawn by ``integers``."""
    if n <= 1 or n > MAX_RANGE or not agrees_with_numpy() or \
            not all(type(g.bit_generator) is np.random.PCG64 for g in generators):
        return drawn_one_by_one(generators, n).astype(dtype, copy=False)
    half = (n + 1) // 2
    if not generators:
        return np.empty((0, n), dtype=dtype)
    raw = np.stack([g.bit_generator.random_raw(half) for g in generators])  # (a row assigned per generator costs more)
    out, doubtful = from_raw(raw, n, dtype)
    for k in np.flatnonzero(doubtful):
        generators[k].bit_generator.advance(-half)  # back to where it started
        out[k] = generators[k].integers(0, n, n)
    return out


def drawn_one_by_one(generators: list[np.random.Generator], n: int) -> np.ndarray:
    out = np.empty((len(generators), n), dtype=np.int64)
    for k, g in enumerate(generators):
        out[k] = g.integers(0, n, n)
    return out


def from_raw(raw: np.ndarray, n: int, dtype=np.int64) -> tuple[np.ndarray, np.ndarray]:
    """(the n draws below n of each row of raw 64-bit outputs, as ``dtype``, whether a row's
    words include one Lemire's method could reject: that row's draws are not final). ``n`` <=
    MAX_RANGE; ``dtype`` int64 or an unsigned type that holds n - 1 (a conversion to uint16
    costs a sixth of one to int64)."""
    words = raw.astype("<u8", copy=False).view("<u4")[:, :n]  # each output's low half, then its high half
    threshold = (2**32 - n) % n  # the C code's (UINT32_MAX - rng) % rng_excl
    # The low 32 bits of word * n, in wrapping uint32 arithmetic.
    doubtful = ((words * np.uint32(n)) < np.uint32(threshold)).any(axis=1) if threshold \
        else np.zeros(raw.shape[0], dtype=bool)
    # Its high 32 bits: word * n is below 2**53, so the float64 product is exact, and so is its
    # scaling by 2**-32; the conversion to an integer type truncates, as the shift would.
    scaled = words.astype(np.float64)
    scaled *= n * 2.0**-32
    return scaled.astype(dtype), doubtful


@functools.lru_cache(maxsize=1)
def agrees_with_numpy() -> bool:
    """Whether :func:`from_raw` gives ``integers``' numbers with this NumPy (checked once a process)."""
    for n in (1000, 999, 7, 100_003):
        raw = np.stack([np.random.default_rng(seed).bit_generator.random_raw((n + 1) // 2) for seed in (1, 2)])
        out, doubtful = from_raw(raw, n)
        for seed, row, doubt in zip((1, 2), out, doubtful):
            if not doubt and not np.array_equal(row, np.random.default_rng(seed).integers(0, n, n)):
                return False
    return True


def seeded_sorted_draws(words: np.ndarray, n: int, dtype=np.int64) -> np.ndarray | None:
    """Row k: ``np.sort(Generator(PCG64(seq)).integers(0, n, n))`` for the sequence ``seq``
    whose ``generate_state(4, uint64)`` is ``words[k]`` ((rows, 4) uint64), of type ``dtype``
    (uint16, uint32 or int64, holding n - 1); None where the compiled module is not built, n
    is out of its range, or it does not draw NumPy's numbers (then the caller draws by NumPy)."""
    if not compiled_draws(n):
        return None
    out = np.empty((len(words), n), dtype=dtype)
    _seeded_draws.sorted_draws(np.ascontiguousarray(words, dtype=np.uint64), n, out)
    return out


def seeded_resampled_values(words: np.ndarray, column: np.ndarray, out: np.ndarray | None = None) -> np.ndarray | None:
    """Row k: ``column[seeded_sorted_draws(words, len(column))[k]]`` (float64), the draws
    going straight into the values (into ``out`` if given: C-contiguous float64 of shape
    (len(words), len(column))); None where :func:`seeded_sorted_draws` would be."""
    n = len(column)
    if not compiled_draws(n):
        return None
    if out is None:
        out = np.empty((len(words), n), dtype=np.float64)
    _seeded_draws.resampled_values(np.ascontiguousarray(words, dtype=np.uint64),
                                   np.ascontiguousarray(column, dtype=np.float64), out)
    return out


def compiled_draws(n: int) -> bool:
    """Whether the compiled module draws ranges of ``n``: built, n within its range, and
    drawing NumPy's numbers."""
    return _seeded_draws is not None and 1 <= n < 2**32 and compiled_agrees_with_numpy()


@functools.lru_cache(maxsize=1)
def compiled_agrees_with_numpy() -> bool:
    """Whether the compiled draws are NumPy's with this NumPy (checked once a process; n =
    100,003 includes words Lemire's method rejects). A module built from older sources (a
    checkout updated without reinstalling) that lacks a function or refuses a call counts
    as disagreeing: NumPy draws instead."""
    try:
        for n, dtype in ((1000, np.uint16), (7, np.int64), (100_003, np.uint32)):
            seqs = [np.random.SeedSequence(seed, spawn_key=(i,)) for seed, i in ((0, 0), (12345, 2**33 + 1))]
            words = np.stack([seq.generate_state(4, np.uint64) for seq in seqs])
            out = np.empty((len(seqs), n), dtype=dtype)
            _seeded_draws.sorted_draws(words, n, out)
            column = np.arange(n, dtype=np.float64) * 0.5
            values = np.empty((len(seqs), n), dtype=np.float64)
            _seeded_draws.resampled_values(words, column, values)
            for seq, row, at in zip(seqs, out, values):
                want = np.sort(np.random.default_rng(seq).integers(0, n, n))
                if not (np.array_equal(row, want) and np.array_equal(at, column[want])):
                    return False
    except (AttributeError, TypeError, ValueError):
        return False
    return True
