"""Tasks' generators seeded together, and many generators' draws made together, give exactly
NumPy's own: ``task_rng``'s states and ``Generator.integers``' numbers."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from hpcml.numerics import bounded_draws
from hpcml.numerics.bounded_draws import from_raw, lemire_draws
from hpcml.plans import task_rng
from hpcml.plans.task_seeds import TaskGenerators, task_state_words

SEEDS = [0, 1, 12345, 2**32 - 1, 2**32, 2**63, 2**64 + 5, 123456789012345678901234567890, 2**200 + 7]


@pytest.mark.parametrize("seed", SEEDS)
def test_generators_seeded_together_are_task_rngs(seed):
    indices = list(range(3000)) + [2**31 - 1, 2**32 - 1, 2**32, 2**40 + 3, 2**64, 10**30]
    generators = TaskGenerators(seed, indices)
    for i in indices:
        assert generators.generator(i).bit_generator.state == task_rng(seed, i).bit_generator.state, i


def test_a_generator_seeded_together_draws_and_spawns_as_task_rngs():
    generators = TaskGenerators(7, range(100, 164))
    rng, ref = generators.generator(130), task_rng(7, 130)
    assert np.array_equal(rng.standard_normal(50), ref.standard_normal(50))
    seq = rng.bit_generator.seed_seq
    assert (seq.entropy, seq.spawn_key, seq.pool_size) == (7, (130,), 4)
    assert [c.bit_generator.state for c in rng.spawn(3)] == [c.bit_generator.state for c in ref.spawn(3)]
    again = pickle.loads(pickle.dumps(rng))
    assert np.array_equal(again.random(5), rng.random(5))
    assert generators.generator(130) is not generators.generator(130)  # each call a fresh generator
    # Not one of the set, or a set too small to seed together: seeded alone, the same state.
    assert generators.generator(5).bit_generator.state == task_rng(7, 5).bit_generator.state
    assert TaskGenerators(7, [3]).generator(3).bit_generator.state == task_rng(7, 3).bit_generator.state
    assert task_state_words(7, []).shape == (0, 4)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 1000, 1001, 4097, 65537, 177147])
def test_draws_made_together_are_integers(n):
    for seed in (0, 2**63):
        got = lemire_draws([task_rng(seed, i) for i in range(40)], n)
        assert got.dtype == np.int64
        assert np.array_equal(got, np.stack([task_rng(seed, i).integers(0, n, n) for i in range(40)]))


def test_draws_a_word_could_reject_are_made_by_integers():
    """n = 3**11: 2**32 mod n is large, so most replicates hold a word Lemire's method may
    reject; those rows are stepped back and drawn by ``integers``."""
    n = 3**11
    raw = np.stack([task_rng(1, i).bit_generator.random_raw((n + 1) // 2) for i in range(30)])
    _, doubtful = from_raw(raw, n)
    assert 0 < doubtful.sum() < 30
    got = lemire_draws([task_rng(1, i) for i in range(30)], n)
    assert np.array_equal(got, np.stack([task_rng(1, i).integers(0, n, n) for i in range(30)]))


def test_draws_fall_back_to_integers(monkeypatch):
    """Beyond the exact range, for a bit generator other than PCG64, and where NumPy would draw
    otherwise, every row is drawn by ``integers``."""
    n = bounded_draws.MAX_RANGE + 1
    assert np.array_equal(lemire_draws([task_rng(0, 0)], n)[0], task_rng(0, 0).integers(0, n, n))
    philox = [np.random.Generator(np.random.Philox(3))]
    assert np.array_equal(lemire_draws(philox, 500)[0], np.random.Generator(np.random.Philox(3)).integers(0, 500, 500))
    assert bounded_draws.agrees_with_numpy()
    monkeypatch.setattr(bounded_draws, "agrees_with_numpy", lambda: False)
    monkeypatch.setattr(bounded_draws, "from_raw", None)  # would fail if used
    assert np.array_equal(lemire_draws([task_rng(0, 1)], 999)[0], task_rng(0, 1).integers(0, 999, 999))


@pytest.mark.parametrize("n", [1, 5, 1000, 2000, 2049, 3001])
def test_a_groups_counts_are_each_replicates_own(n):
    """A group's counts, drawn together (several batches at n = 2000) or one replicate at a time
    (above SMALL_DRAW), are each replicate's ``resample_counts``; a member without a
    generator is a row of zeros."""
    from hpcml.plans.bootstrap import resample_count_rows, resample_counts

    rngs = [None if i % 9 == 4 else task_rng(3, i) for i in range(64)]
    W = resample_count_rows(rngs, n)
    expect = [np.zeros(n) if i % 9 == 4 else resample_counts(task_rng(3, i), n) for i in range(64)]
    assert W.dtype == np.uint8 and np.array_equal(W, np.stack(expect))


@pytest.mark.parametrize("n", [7, 1000, 65536, 177147])
def test_draws_made_together_in_a_small_type_are_integers(n):
    """uint16 (or uint32 above 65,536) draws are made directly, the numbers of ``integers``."""
    from hpcml.plans.bootstrap import rows_dtype

    got = lemire_draws([task_rng(4, i) for i in range(20)], n, rows_dtype(n))
    assert got.dtype == (np.uint16 if n <= 65536 else np.uint32)
    assert np.array_equal(got, np.stack([task_rng(4, i).integers(0, n, n) for i in range(20)]))


@pytest.mark.parametrize("n", [1, 5, 1000, 2049, 70000, (1 << 20) + 3])
def test_a_groups_sorted_draws_are_its_counts_rows_repeated(n):
    """Each replicate's sorted draws (``resample_rows``, the vectorized bootstrap's resamples)
    are the rows of its counts (``resample_count_rows``, what the one-by-one path repeats), each
    repeated by its count: at n = 1000 drawn together, above SMALL_DRAW one at a time, and
    above WHOLE_DRAW where the counts are drawn chunk by chunk."""
    from hpcml.plans.bootstrap import resample_count_rows, resample_rows

    k = 3 if n > 100_000 else 70
    rows = resample_rows([task_rng(6, i) for i in range(k)], n)
    W = resample_count_rows([task_rng(6, i) for i in range(k)], n)
    assert rows.shape == (k, n) and rows.dtype.kind == "u"
    for r, counts in zip(rows, W):
        assert np.array_equal(r, np.repeat(np.arange(n), counts))


def test_the_compiled_draws_are_built():
    """The test install has a C compiler: the vectorized bootstrap's compiled draws must exist
    (without them the same numbers come from NumPy, slower; tested below)."""
    assert bounded_draws._seeded_draws is not None and bounded_draws.compiled_agrees_with_numpy()


@pytest.mark.parametrize("n", [1, 2, 7, 1000, 65536, 70001, 100_003])
@pytest.mark.parametrize("seed", [0, 12345, 2**64 + 5])
def test_compiled_draws_from_seeding_words_are_numpys_sorted(seed, n):
    """``seeded_sorted_draws`` from the words alone: NumPy's ``integers(0, n, n)`` of each
    task's generator, sorted, in the type asked for (n = 100,003 draws words Lemire's method
    rejects), for tasks seeded together or alone and indices above 2**32."""
    from hpcml.plans.bootstrap import rows_dtype

    indices = list(range(5)) + [2**32 + 9]  # fewer than TOGETHER: seeded alone
    for group in (indices, list(range(40, 52))):
        words = TaskGenerators(seed, group).seed_words(group)
        for dtype in {rows_dtype(n), np.dtype(np.int64)}:
            got = bounded_draws.seeded_sorted_draws(words, n, dtype)
            assert got.dtype == dtype and got.shape == (len(group), n)
            want = np.stack([np.sort(task_rng(seed, i).integers(0, n, n)) for i in group])
            assert np.array_equal(got, want), (group, dtype)
        column = np.random.default_rng(n).normal(size=n)
        values = bounded_draws.seeded_resampled_values(words, column)  # the draws straight into the values
        assert values.dtype == np.float64 and np.array_equal(values, column[want])


def test_seeding_words_are_those_each_generator_is_seeded_from():
    generators = TaskGenerators(3, range(100, 140))
    asked = [139, 100, 120, 5, 2**40]  # the last two not of the set
    words = generators.seed_words(asked)
    for row, i in zip(words, asked):
        assert np.array_equal(row, np.random.SeedSequence(3, spawn_key=(i,)).generate_state(4, np.uint64))
    assert generators.seed_words([]).shape == (0, 4)


def test_compiled_draws_refuse_a_wrong_output():
    words = TaskGenerators(0, [0]).seed_words([0])
    with pytest.raises(ValueError, match="out must hold 1 x 10 indices"):
        bounded_draws._seeded_draws.sorted_draws(words, 10, np.empty(9, dtype=np.int64))
    with pytest.raises(ValueError, match="out must hold"):
        bounded_draws._seeded_draws.sorted_draws(words, 70000, np.empty(70000, dtype=np.uint16))
    with pytest.raises(ValueError, match="uint16, uint32 or int64"):
        bounded_draws._seeded_draws.sorted_draws(words, 10, np.empty(10, dtype=np.uint8))
    with pytest.raises(ValueError, match="4 uint64 per row"):
        bounded_draws._seeded_draws.sorted_draws(words[:, :3], 10, np.empty(10, dtype=np.int64))
    assert bounded_draws.seeded_sorted_draws(words, 2**32, np.int64) is None  # beyond its range: NumPy draws
    with pytest.raises(ValueError, match="out must hold 1 x 10 float64 values"):
        bounded_draws._seeded_draws.resampled_values(words, np.ones(10), np.empty(11))
    with pytest.raises(ValueError, match="must hold float64"):
        bounded_draws._seeded_draws.resampled_values(words, np.ones(10, dtype=np.float32), np.empty(10))


def test_without_the_compiled_draws_the_vectorized_bootstrap_is_the_same(monkeypatch):
    from functools import partial

    import scipy.stats as st

    import hpcml

    x = np.random.default_rng(2).normal(size=500)
    stat = partial(st.trim_mean, proportiontocut=0.1)
    built = hpcml.bootstrap(stat, x, replicates=300, seed=4, workers=1, vectorized=True)
    monkeypatch.setattr(bounded_draws, "_seeded_draws", None)
    assert bounded_draws.seeded_sorted_draws(np.zeros((1, 4), np.uint64), 10) is None
    numpy_only = hpcml.bootstrap(stat, x, replicates=300, seed=4, workers=1, vectorized=True)
    assert np.array_equal(built.replicates.to_numpy(), numpy_only.replicates.to_numpy())
    assert (built.se, built.bca) == (numpy_only.se, numpy_only.bca)


def test_a_compiled_module_from_older_sources_is_not_used(monkeypatch):
    """A checkout updated without reinstalling may hold a module without today's functions:
    it counts as disagreeing with NumPy, which then draws."""
    import types

    bounded_draws.compiled_agrees_with_numpy.cache_clear()
    older = types.SimpleNamespace(sorted_draws=bounded_draws._seeded_draws.sorted_draws)  # no resampled_values
    monkeypatch.setattr(bounded_draws, "_seeded_draws", older)
    try:
        assert not bounded_draws.compiled_agrees_with_numpy()
        assert bounded_draws.seeded_sorted_draws(np.zeros((1, 4), np.uint64), 10) is None
    finally:
        bounded_draws.compiled_agrees_with_numpy.cache_clear()
