"""Counter-based draws and the fixed combining tree: the same numbers whatever the blocks."""
from __future__ import annotations

import numpy as np
import pytest

from hpcml.numerics.block_stats import UNIT_ROWS, block_units, combine, from_bytes, to_bytes, tree
from hpcml.numerics.block_steps import block_statistics
from hpcml.numerics.counter_draws import poisson_weights, sampled_rows, uniforms


@pytest.mark.parametrize("cut", [1, 3, 4, 5, 1023, 4097])
def test_a_rows_draw_does_not_depend_on_where_its_block_starts(cut):
    whole = uniforms(7, 12, 0, 6000)
    parts = np.concatenate([uniforms(7, 12, 0, cut), uniforms(7, 12, cut, 6000)])
    assert np.array_equal(whole, parts)
    assert np.array_equal(poisson_weights(7, 3, 0, 6000)[cut:], poisson_weights(7, 3, cut, 6000))


def test_streams_and_seeds_differ_and_weights_are_poisson_one():
    assert not np.array_equal(uniforms(7, 1, 0, 100), uniforms(7, 2, 0, 100))
    assert not np.array_equal(uniforms(7, 1, 0, 100), uniforms(8, 1, 0, 100))
    w = poisson_weights(1, 0, 0, 400_000).astype(float)
    # Poisson(1): mean 1, variance 1, P(0) = e^-1 (400,000 draws: each to ~4 standard errors)
    assert abs(w.mean() - 1) < 0.007 and abs(w.var() - 1) < 0.015 and abs((w == 0).mean() - np.exp(-1)) < 0.004
    rows = sampled_rows(1, 5, 1000, 3000, 0.25)
    assert rows.min() >= 1000 and rows.max() < 3000 and 400 < rows.size < 600


def test_the_tree_gives_the_same_bits_for_any_block_size():
    rng = np.random.default_rng(0)
    n = 11 * UNIT_ROWS + 300
    X = rng.normal(size=(n, 4)) * [1, 10, 1e3, 1e-3] + 5
    y = X @ [1.0, -2.0, 0.5, 3.0] + rng.normal(size=n)
    state = {"fit_intercept": True}
    results = []
    for units in (1, 2, 4, 16):
        rows = units * UNIT_ROWS
        nodes = [block_statistics("ols_qr", X[a:a + rows], y[a:a + rows], a, state, 0) for a in range(0, n, rows)]
        results.append(tree(nodes))
    for other in results[1:]:
        assert np.array_equal(results[0]["qr_r"], other["qr_r"]) and np.array_equal(results[0]["sum_n"], other["sum_n"])
    # the R factor is the whole data's, up to signs of its rows
    whole = np.linalg.qr(np.hstack([np.ones((n, 1)), X, y[:, None]]), mode="r")
    assert np.allclose(np.abs(results[0]["qr_r"]), np.abs(whole), rtol=1e-10, atol=1e-8)


def test_statistics_travel_as_arrays_only():
    stats = {"sum_x": np.arange(3.0), "set_y": np.array(["a", "b"]), "qr_r": np.eye(2)}
    back = from_bytes(to_bytes(stats))
    assert back.keys() == stats.keys() and all(np.array_equal(back[k], stats[k]) for k in stats)
    assert combine({"set_y": np.array(["b"])}, {"set_y": np.array(["a", "b"])})["set_y"].tolist() == ["a", "b"]
    with pytest.raises(KeyError, match="no combining rule"):
        combine({"x": np.zeros(1)}, {"x": np.zeros(1)})


def test_block_sizes_are_units_times_a_power_of_two():
    assert [block_units(r) for r in (1, 1024, 3000, 4096, 5000, 70_000)] == [1, 1, 2, 4, 4, 64]


def _levelwise(nodes):
    while len(nodes) > 1:
        nodes = [f"({nodes[i]}{nodes[i + 1]})" if i + 1 < len(nodes) else nodes[i] for i in range(0, len(nodes), 2)]
    return nodes[0]


@pytest.mark.parametrize("count", range(1, 40))
def test_the_streamed_tree_pairs_as_level_by_level(count):
    names = [chr(65 + i % 26) + str(i) for i in range(count)]
    assert tree(iter(names), lambda a, b: f"({a}{b})") == _levelwise(names)


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 13, 31])
def test_blocks_arriving_in_any_order_make_the_same_tree(count):
    from hpcml.numerics.block_stats import ArrivingTree

    rng = np.random.default_rng(count)
    nodes = [{"qr_r": rng.normal(size=(6, 4)), "sum_n": np.array([float(i)])} for i in range(count)]
    expected = tree(iter(nodes))
    for _ in range(3):
        arriving = ArrivingTree(count)
        for i in rng.permutation(count):
            arriving.add(int(i), nodes[i])
        assert np.array_equal(arriving.root["qr_r"], expected["qr_r"]) and not arriving.held
