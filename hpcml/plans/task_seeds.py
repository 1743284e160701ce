"""Many tasks' generators at once, each exactly :func:`hpcml.plans.base.task_rng`'s.

Task i's generator is ``default_rng(SeedSequence(seed, spawn_key=(i,)))``: PCG64 seeded with
the four 64-bit words ``SeedSequence.generate_state(4, uint64)`` gives. NumPy computes those
words one sequence at a time in Python-level code (about 20 microseconds a task, as much as a
small task's whole bookkeeping). Here they are computed for every task of a chunk at once: the
same hash (NumPy's ``_bit_generator.pyx``: ``hashmix``, ``mix_entropy``, ``generate_state``)
in uint32 array arithmetic, which wraps modulo 2**32 as the C code does. PCG64 then seeds
itself from the words, in C, as it does for a real SeedSequence: the generators' states are
NumPy's own, bit for bit (the tests compare them with ``task_rng``'s over thousands of tasks).

A generator made here carries a :class:`TaskSeedSequence`, which answers like the task's
SeedSequence (``entropy``, ``spawn_key``, ``spawn``, ...) by building that sequence when
first asked: ``rng.spawn(n)`` in a task gives the children ``task_rng``'s would.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import numpy as np
from numpy.random import PCG64, Generator, SeedSequence
from numpy.random.bit_generator import ISpawnableSeedSequence

# SeedSequence's constants (numpy/random/_bit_generator.pyx).
POOL_SIZE = 4
INIT_A, MULT_A = 0x43B0D7E5, 0x931E8875
INIT_B, MULT_B = 0x8B51F9DD, 0x58F38DED
MIX_MULT_L, MIX_MULT_R = 0xCA01F9DD, 0x4973F715
MASK32 = 0xFFFFFFFF
# Fewer tasks than this are seeded one by one (NumPy's SeedSequence): the arrays' fixed cost
# is about that of seeding this many alone.
TOGETHER = 8


def int_words(n: int) -> list[int]:
    """A non-negative integer as SeedSequence reads it: 32-bit words, least significant first."""
    words = [n & MASK32]
    n >>= 32
    while n:
        words.append(n & MASK32)
        n >>= 32
    return words


class HashConstant:
    """SeedSequence's running hash constant: each use multiplies it, modulo 2**32."""

    def __init__(self, start: int, mult: int):
        self.value, self.mult = start, mult

    def next(self) -> np.uint32:
        self.value = (self.value * self.mult) & MASK32
        return np.uint32(self.value)


def hashmix(value: np.ndarray, const: HashConstant, start: int) -> np.ndarray:
    """``hashmix`` of a column of words (``start``: the constant before this use)."""
    value = value ^ np.uint32(start)
    value = value * const.next()
    return value ^ (value >> np.uint32(16))


def mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    result = np.uint32(MIX_MULT_L) * x - np.uint32(MIX_MULT_R) * y
    return result ^ (result >> np.uint32(16))


def mix_in(mixer: list[np.ndarray], words: list[np.ndarray], const: HashConstant) -> list[np.ndarray]:
    """``mix_entropy``'s last loop: each further word of entropy mixed into every pool word."""
    for column in words:
        for dst in range(POOL_SIZE):
            mixer[dst] = mix(mixer[dst], hashmix(column, const, const.value))
    return mixer


@functools.lru_cache(maxsize=16)
def seed_pool(seed: int) -> tuple[tuple[int, ...], int]:
    """A spawned sequence's pool once the job seed's words are mixed in (the same for every
    task), and the hash constant then: ``mix_entropy`` up to the spawn key's words."""
    run = int_words(seed)
    run += [0] * (POOL_SIZE - len(run))  # a spawned sequence pads its entropy to the pool size
    column = [np.array([w], dtype=np.uint32) for w in run]
    const = HashConstant(INIT_A, MULT_A)
    mixer = [hashmix(column[i], const, const.value) for i in range(POOL_SIZE)]
    for src in range(POOL_SIZE):
        for dst in range(POOL_SIZE):
            if src != dst:
                mixer[dst] = mix(mixer[dst], hashmix(mixer[src], const, const.value))
    mixer = mix_in(mixer, column[POOL_SIZE:], const)
    return tuple(int(m[0]) for m in mixer), const.value


def state_words(pool: list[np.ndarray]) -> np.ndarray:
    """``generate_state(4, np.uint64)`` of each row's pool: (rows, 4) uint64."""
    const = HashConstant(INIT_B, MULT_B)
    words = []
    for i in range(2 * POOL_SIZE):
        words.append(hashmix(pool[i % POOL_SIZE], const, const.value))
    low, high = np.stack(words[0::2], axis=1), np.stack(words[1::2], axis=1)
    return np.ascontiguousarray(low.astype(np.uint64) | (high.astype(np.uint64) << np.uint64(32)))


def task_state_words(seed: int, indices: Sequence[int]) -> np.ndarray:
    """The PCG64 seeding words of task ``indices[k]``'s generator, row k: (len(indices), 4) uint64."""
    pool, after_seed = seed_pool(int(seed))

    def words_of(keys: np.ndarray) -> np.ndarray:  # keys: rows x words of one width
        mixer = [np.full(keys.shape[0], p, dtype=np.uint32) for p in pool]
        return state_words(mix_in(mixer, list(keys.T), HashConstant(after_seed, MULT_A)))

    if not len(indices) or (0 <= min(indices) and max(indices) <= MASK32):  # one word each (every task, in practice)
        return words_of(np.asarray(indices, dtype=np.uint32).reshape(-1, 1))
    out = np.empty((len(indices), 4), dtype=np.uint64)
    keys = [int_words(int(i)) for i in indices]
    for width in sorted({len(k) for k in keys}):  # indices of one width hash together
        rows = [r for r, k in enumerate(keys) if len(k) == width]
        out[rows] = words_of(np.array([keys[r] for r in rows], dtype=np.uint32))
    return out


class TaskSeedSequence(ISpawnableSeedSequence):
    """Task ``index``'s SeedSequence as PCG64 sees it: its seeding words already computed; any
    other use (its attributes, ``spawn``) goes to the real sequence, built when first asked."""

    __slots__ = ("seed", "index", "words", "_real")

    def __init__(self, seed: int, index: int, words: np.ndarray):
        self.seed, self.index, self.words, self._real = seed, index, words, None

    def real(self) -> SeedSequence:
        if self._real is None:
            self._real = SeedSequence(self.seed, spawn_key=(self.index,))
        return self._real

    def generate_state(self, n_words: int, dtype=np.uint32) -> np.ndarray:
        if n_words == 4 and (dtype is np.uint64 or np.dtype(dtype) == np.uint64):
            return self.words  # read-only
        return self.real().generate_state(n_words, dtype)

    def spawn(self, n_children: int) -> list[SeedSequence]:
        return self.real().spawn(n_children)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real(), name)

    def __reduce__(self):  # pickled as the sequence it stands for
        return self.real().__reduce__()

    def __repr__(self) -> str:
        return repr(self.real())


class TaskGenerators:
    """The generators of a set of tasks, their seeding words computed together the first time
    one is asked for (many tasks never draw). ``generator(index)`` is a new generator each call,
    in the state ``task_rng(seed, index)`` starts in."""

    def __init__(self, seed: int, indices: Sequence[int]):
        self.seed, self.indices = seed, list(indices)
        self.rows: dict[int, int] | None = None
        self.words: np.ndarray | None = None

    def seeded(self) -> dict[int, int]:
        """Each task's row of ``words``, computed the first time (empty for too few tasks)."""
        if self.rows is None:
            few = len(self.indices) < TOGETHER
            self.rows = {} if few else {i: r for r, i in enumerate(self.indices)}
            self.words = None if few else task_state_words(self.seed, self.indices)
            if self.words is not None:
                self.words.flags.writeable = False
        return self.rows

    def generator(self, index: int) -> Generator:
        row = self.seeded().get(index)
        if row is None:  # not one of the set's tasks, or too few of them to pay: seeded alone
            return np.random.default_rng(SeedSequence(self.seed, spawn_key=(index,)))
        return Generator(PCG64(TaskSeedSequence(self.seed, index, self.words[row])))

    def seed_words(self, indices: Sequence[int]) -> np.ndarray:
        """The words ``generator(indices[k])`` seeds PCG64 from, row k ((len(indices), 4) uint64)."""
        rows = self.seeded()
        if indices and all(i in rows for i in indices):
            return self.words[[rows[i] for i in indices]]
        return task_state_words(self.seed, indices) if len(indices) >= TOGETHER else \
            np.array([SeedSequence(self.seed, spawn_key=(i,)).generate_state(4, np.uint64) for i in indices],
                     dtype=np.uint64).reshape(-1, 4)
