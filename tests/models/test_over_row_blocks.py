"""The fits over row blocks against the single-node fits (themselves checked against R and
scikit-learn) and NumPy, on data that fits: exact to 1e-10 (1e-8 for IRLS), bit-identical
for any block size. Driven here in-process, block by block, as a backend's workers would."""
from __future__ import annotations

import numpy as np
import pytest

from hpcml.models.over_row_blocks import drive
from hpcml.models import over_row_blocks as orb
from hpcml.numerics.block_stats import tree
from hpcml.numerics.block_steps import block_statistics

FEATURES = [f"x{i}" for i in range(5)]


def by_blocks(fit, X, y, block_rows, seed=0):
    def run_pass(step):
        return tree([block_statistics(step.step, X[a:a + block_rows], None if y is None else y[a:a + block_rows], a,
                                      step.state, seed) for a in range(0, X.shape[0], block_rows)])
    return drive(fit, run_pass)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    n = 9 * 1024 + 77
    X = rng.normal(size=(n, 5)) * [1, 2, 0.5, 3, 1] + [3, -1, 0, 10, 2]
    y = X @ np.arange(1.0, 6.0) + rng.normal(size=n)
    labels = np.where(X[:, 0] - 0.5 * X[:, 1] + rng.normal(size=n) > 3.5, "yes", "no")
    return X, y, labels


def coefs(record):
    return np.array([v for k, v in record.items() if k.startswith("coef_")])


def test_ols_is_the_single_node_fit_and_lstsq(data):
    from hpcml.numerics.least_squares import fit_ols, ols_summary

    X, y, _ = data
    record, summary = by_blocks(orb.ols(FEATURES, True), X, y, 2048)
    again, _ = by_blocks(orb.ols(FEATURES, True), X, y, 8192)
    assert record == again
    single = fit_ols(X, y, None, True)
    lstsq = np.linalg.lstsq(np.hstack([np.ones((len(X), 1)), X]), y, rcond=None)[0]
    assert np.allclose(coefs(record), single.coef, rtol=1e-10, atol=1e-10)
    assert np.allclose(coefs(record), lstsq, rtol=1e-10, atol=1e-10)
    reference = ols_summary(X, y, single, FEATURES)
    for ours, theirs in zip(summary["table"], reference["table"]):
        assert ours["term"] == theirs["term"]
        assert ours["std_error"] == pytest.approx(theirs["std_error"], rel=1e-10)
    for key in ("sigma", "r_squared", "adj_r_squared", "f_statistic", "df_residual"):
        assert summary["statistics"][key] == pytest.approx(reference["statistics"][key], rel=1e-10)


def test_an_aliased_column_is_na_as_in_r(data):
    X, y, _ = data
    Xa = np.hstack([X, X[:, :1] * 2.0])
    record, summary = by_blocks(orb.ols(FEATURES + ["twice_x0"], True), Xa, y, 4096)
    assert np.isnan(record["coef_twice_x0"]) and summary["aliased"] == ["twice_x0"]
    assert summary["statistics"]["rank"] == 6


def test_logistic_is_the_single_node_irls(data):
    from hpcml.numerics.irls import fit_logistic, logistic_summary

    X, _, labels = data
    record, summary = by_blocks(orb.logistic(FEATURES, True, 100, 1e-10), X, labels, 1024)
    again, _ = by_blocks(orb.logistic(FEATURES, True, 100, 1e-10), X, labels, 4096)
    assert record == again
    single = fit_logistic(X, labels)
    assert np.allclose(coefs(record), single.coef, rtol=1e-8, atol=1e-8)
    reference = logistic_summary(X, labels, single, FEATURES)
    for ours, theirs in zip(summary["table"], reference["table"]):
        assert ours["std_error"] == pytest.approx(theirs["std_error"], rel=1e-8)
    for key in ("deviance", "null_deviance", "aic"):
        assert summary["statistics"][key] == pytest.approx(reference["statistics"][key], rel=1e-10)
    assert summary["classes"] == ["no", "yes"]


def test_logistic_refuses_a_target_of_three_classes(data):
    X, _, labels = data
    three = labels.copy()
    three[:10] = "maybe"
    with pytest.raises(ValueError, match="two classes; it has 3"):
        by_blocks(orb.logistic(FEATURES, True, 100, 1e-10), X, three, 4096)


@pytest.mark.parametrize("scale", [False, True])
def test_pca_is_the_svd_of_the_centred_data(data, scale):
    X, _, _ = data
    record, summary = by_blocks(orb.pca(FEATURES, None, None, scale), X, None, 1024)
    again, _ = by_blocks(orb.pca(FEATURES, None, None, scale), X, None, 4096)
    assert record == again
    A = X - X.mean(axis=0)
    if scale:
        A = A / A.std(axis=0, ddof=1)
    _, s, Vt = np.linalg.svd(A, full_matrices=False)
    ours = np.array([record[f"sv_{j}"] for j in range(1, 6)])
    assert np.allclose(ours, s, rtol=1e-10)
    loadings = np.array([[row[f"PC{j}"] for row in summary["loadings"]] for j in range(1, 6)])
    assert np.allclose(np.abs(loadings), np.abs(Vt), atol=1e-10)
    assert np.allclose(summary["sdev"], s / np.sqrt(len(X) - 1), rtol=1e-10)


def test_kmeans_is_lloyd_from_the_same_start(data):
    from hpcml.models.kmeans import kmeans

    rng = np.random.default_rng(2)
    X = np.vstack([rng.normal(size=(3000, 2)) + c for c in ([0, 0], [6, 0], [0, 6])])
    record, summary = by_blocks(orb.kmeans(["a", "b"], 3, 300, 0.0, 5, len(X)), X, None, 1024)
    again, _ = by_blocks(orb.kmeans(["a", "b"], 3, 300, 0.0, 5, len(X)), X, None, 2048)
    assert record == again
    single = kmeans(X, 3, np.random.default_rng(0), None, 1, 300, 0.0, init=np.array(summary["start_centres"]))
    centres = np.array([[record[f"center_{j}_{f}"] for f in "ab"] for j in (1, 2, 3)])
    assert np.allclose(np.sort(centres, axis=0), np.sort(single.centers, axis=0), rtol=1e-10, atol=1e-10)
    assert record["inertia"] == pytest.approx(single.inertia, rel=1e-10)
    assert sorted(summary["sizes"]) == sorted(np.bincount(single.labels).tolist())


def test_the_poisson_bootstrap_se_is_the_multinomial_bootstraps(data):
    X, y, _ = data
    X, y = X[:4000], y[:4000]
    replicates = 1000
    records = []
    for first in range(0, replicates, 64):
        group, _ = by_blocks(orb.ols_poisson_bootstrap(FEATURES, True, first, min(replicates, first + 64)), X, y, 1024)
        records += group
    again, _ = by_blocks(orb.ols_poisson_bootstrap(FEATURES, True, 0, 64), X, y, 4096)
    assert records[:64] == again
    poisson = np.array([coefs(r) for r in records])
    rng = np.random.default_rng(0)
    design = np.hstack([np.ones((len(X), 1)), X])
    multinomial = []
    for _ in range(replicates):
        rows = rng.integers(0, len(X), len(X))
        multinomial.append(np.linalg.lstsq(design[rows], y[rows], rcond=None)[0])
    ratio = poisson.std(axis=0, ddof=1) / np.array(multinomial).std(axis=0, ddof=1)
    # each SE from 1,000 replicates is within about 2.2 % (one standard error) of its own truth
    assert np.all(np.abs(ratio - 1) < 0.12), ratio


def test_a_wide_pca_takes_the_checked_gram_route(monkeypatch):
    """Wide data (here made wide by lowering the bar): pbdR's crossprod then eigen, the same
    components as the SVD to 1e-10 where the conditioning allows it, else TSQR."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(3000, 6)) @ np.diag([5, 4, 3, 2, 1.5, 1]) + 2
    features = [f"f{i}" for i in range(6)]
    monkeypatch.setattr(orb, "WIDE_COLUMNS", 3)
    record, summary = by_blocks(orb.pca(features, None, None, False), X, None, 1024)
    assert summary["route"] == "gram"
    _, s, Vt = np.linalg.svd(X - X.mean(axis=0), full_matrices=False)
    assert np.allclose([record[f"sv_{j}"] for j in range(1, 7)], s, rtol=1e-10)
    loadings = np.array([[row[f"PC{j}"] for row in summary["loadings"]] for j in range(1, 7)])
    assert np.allclose(np.abs(loadings), np.abs(Vt), atol=1e-9)
    # a nearly singular column set: the Gram route would lose the last component, TSQR does not
    Xs = np.hstack([X, X[:, :1] + 1e-9 * rng.normal(size=(3000, 1))])
    _, summary = by_blocks(orb.pca(features + ["f0_again"], None, None, False), Xs, None, 1024)
    assert summary["route"] == "tsqr"


def test_a_poisson_replicate_is_the_weighted_fit_of_its_weights(data):
    """Replicate r of the Poisson bootstrap is exactly the fit with weights Poisson(seed, r, row):
    OLS against weighted lstsq, logistic against the single-node IRLS with those weights."""
    from hpcml.numerics.counter_draws import poisson_weights
    from hpcml.numerics.irls import fit_logistic

    X, y, labels = data
    X, y, labels = X[:5000], y[:5000], labels[:5000]
    w = poisson_weights(0, 70, 0, len(X)).astype(float)
    ols_reps, _ = by_blocks(orb.ols_poisson_bootstrap(FEATURES, True, 64, 72), X, y, 2048)
    design = np.hstack([np.ones((len(X), 1)), X])
    expected = np.linalg.lstsq(design * np.sqrt(w)[:, None], y * np.sqrt(w), rcond=None)[0]
    assert np.allclose(coefs(ols_reps[6]), expected, rtol=1e-9, atol=1e-10)
    full, report = by_blocks(orb.logistic(FEATURES, True, 100, 1e-10), X, labels, 2048)
    reps, _ = by_blocks(orb.poisson_bootstrap("logistic", SimpleParams(), FEATURES, 64, 72, full, report), X, labels,
                        2048)
    again, _ = by_blocks(orb.poisson_bootstrap("logistic", SimpleParams(), FEATURES, 64, 72, full, report), X,
                         labels, 1024)
    assert reps == again
    assert np.allclose(coefs(reps[6]), fit_logistic(X, labels, w).coef, rtol=1e-7, atol=1e-8)


class SimpleParams:
    fit_intercept, max_iter, tol = True, 100, 1e-10


def test_the_logistic_poisson_bootstrap_se_is_the_multinomial_bootstraps(data):
    from hpcml.numerics.irls import fit_logistic

    X, _, labels = data
    X, labels = X[:3000], labels[:3000]
    full, report = by_blocks(orb.logistic(FEATURES, True, 100, 1e-10), X, labels, 1024)
    replicates = 384
    poisson = []
    for first in range(0, replicates, 64):
        group, _ = by_blocks(orb.poisson_bootstrap("logistic", SimpleParams(), FEATURES, first, first + 64, full,
                                                   report), X, labels, 1024)
        poisson += [coefs(r) for r in group]
    rng = np.random.default_rng(1)
    multinomial = [fit_logistic(X, labels, np.bincount(rng.integers(0, len(X), len(X)), minlength=len(X))
                                .astype(float)).coef for _ in range(replicates)]
    ratio = np.std(poisson, axis=0, ddof=1) / np.std(multinomial, axis=0, ddof=1)
    # 384 replicates a side: each SE within about 3.6 % of its truth, their ratio about 5 %
    assert np.all(np.abs(ratio - 1) < 0.16), ratio
