#!/usr/bin/env python
"""Single fits, hpcml vs scikit-learn side by side in one run (results: docs/benchmarks.md).

Each case times hpcml's fit function and scikit-learn's estimator on the same array in
memory, interleaved (hpcml, sklearn, hpcml, sklearn, ...), and reports the median of
``--repeats`` and the ratio hpcml / sklearn. The same run checks the answers agree.

1. PCA of a tall matrix (default 1,000,000 x 50, condition number 10): hpcml's three
   methods (all components; randomized keeps 10) vs scikit-learn's ``covariance_eigh``,
   ``full`` and ``randomized`` solvers. Reference: NumPy's SVD of the centred matrix. Then
   an ill-conditioned matrix (n / 5 rows, condition number 1e6), where hpcml must fall
   back to the SVD and scikit-learn's covariance solver loses accuracy.
2. k-means (default 1,000,000 x 10, k = 8, blobs): the same initial centres, one run,
   Lloyd to a fixed point (tol 0) for both; same centres and inertia.
3. Unpenalised logistic regression (default 500,000 x 20), and the same with two aliased
   columns (a copy and a sum of others): hpcml's IRLS vs ``LogisticRegression(penalty=None)``
   with lbfgs and newton-cholesky.

    python scripts/bench_fits.py [--only pca kmeans logistic] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np


def interleaved(cases: dict, repeats: int) -> dict[str, float]:
    """Median wall seconds of each callable, run in turn ``repeats`` times."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(ts)) for name, ts in times.items()}


def table(rows: list[tuple[str, str, float, float, str]]) -> None:
    print("| case | hpcml (s) | scikit-learn (s) | hpcml / sklearn | agreement |")
    print("| --- | ---: | ---: | ---: | --- |")
    for case, _, ours, theirs, note in rows:
        print(f"| {case} | {ours:.3f} | {theirs:.3f} | {ours / theirs:.2f}x | {note} |")


def bench_pca(n: int, p: int, repeats: int) -> list:
    from sklearn.decomposition import PCA

    from hpcml.models.pca_svd import pca

    rng = np.random.default_rng(0)
    mix = np.linalg.qr(rng.standard_normal((p, p)))[0] * np.logspace(1, 0, p)
    X = rng.standard_normal((n, p)) @ mix.T + 5.0
    Xc = X - X.mean(axis=0)
    s_ref, Vt_ref = np.linalg.svd(Xc, full_matrices=False)[1:]
    del Xc
    ours = {"full": lambda: pca(X, method="full"), "tsqr": lambda: pca(X, method="tsqr"),
            "randomized": lambda: pca(X, 10, method="randomized", rng=np.random.default_rng(1))}
    theirs = {"covariance_eigh": lambda: PCA(svd_solver="covariance_eigh").fit(X),
              "full": lambda: PCA(svd_solver="full").fit(X),
              "randomized": lambda: PCA(10, svd_solver="randomized", random_state=1).fit(X)}
    runs = {**{f"hpcml {m}": f for m, f in ours.items()}, **{f"sklearn {m}": f for m, f in theirs.items()}}
    med = interleaved(runs, repeats)
    fastest = min(theirs, key=lambda m: med[f"sklearn {m}"])
    others = ", ".join(f"`{m}` {med[f'sklearn {m}']:.3f} s" for m in theirs if m != fastest)
    rows = []
    for method, run in ours.items():
        fit = run()
        k = fit.singular_values.size
        ds = np.max(np.abs(fit.singular_values / s_ref[:k] - 1))
        dv = np.max(np.abs(np.abs(np.sum(fit.components * Vt_ref[:k], axis=1)) - 1))
        rows.append((f"PCA {n:,} x {p}, hpcml `{method}` ({fit.route} route) vs sklearn `{fastest}`", method,
                     med[f"hpcml {method}"], med[f"sklearn {fastest}"],
                     f"vs NumPy SVD: s {ds:.0e}, components {dv:.0e}"))
    sk = theirs[fastest]()
    dsk = np.max(np.abs(sk.singular_values_ / s_ref[: sk.singular_values_.size] - 1))
    print(f"sklearn PCA: fastest `{fastest}` (s vs NumPy SVD {dsk:.0e}); {others}")
    return rows + _pca_ill(n // 5, p, repeats)


def _pca_ill(n: int, p: int, repeats: int) -> list:
    """An ill-conditioned matrix (condition number 1e6): the Gram route must not be taken."""
    from sklearn.decomposition import PCA

    from hpcml.models.pca_svd import pca

    rng = np.random.default_rng(2)
    U = np.linalg.qr(rng.standard_normal((n, p)))[0]
    X = (U * np.logspace(3, -3, p)) @ np.linalg.qr(rng.standard_normal((p, p)))[0] + 5.0
    s_ref = np.linalg.svd(X - X.mean(axis=0), compute_uv=False)
    ours, theirs = (lambda: pca(X, method="full")), (lambda: PCA(svd_solver="covariance_eigh").fit(X))
    med = interleaved({"hpcml": ours, "sklearn": theirs}, repeats)
    fit, sk = ours(), theirs()
    err = lambda s: np.max(np.abs(s / s_ref - 1))  # noqa: E731
    return [(f"PCA {n:,} x {p}, condition number 1e6, hpcml `full` ({fit.route} route) vs sklearn "
             "`covariance_eigh`", "ill", med["hpcml"], med["sklearn"],
             f"vs NumPy SVD: s {err(fit.singular_values):.0e} (sklearn {err(sk.singular_values_):.0e})")]


def bench_kmeans(n: int, p: int, k: int, repeats: int) -> list:
    from sklearn.cluster import KMeans
    from sklearn.datasets import make_blobs

    from hpcml.models.kmeans import kmeans

    X, _ = make_blobs(n, p, centers=k, cluster_std=4.0, random_state=0)
    init = X[np.random.default_rng(0).choice(n, k, replace=False)]
    ours = lambda: kmeans(X, k, None, init=init, tol=0.0, max_iter=300)  # noqa: E731
    theirs = lambda: KMeans(k, init=init, n_init=1, tol=0.0, max_iter=300, algorithm="lloyd").fit(X)  # noqa: E731
    med = interleaved({"hpcml": ours, "sklearn": theirs}, repeats)
    fit, sk = ours(), theirs()
    c = sk.cluster_centers_[np.lexsort(sk.cluster_centers_.T[::-1])]
    note = (f"iterations {fit.n_iter} / {sk.n_iter_}; centres max diff {np.max(np.abs(fit.centers - c)):.1e}; "
            f"inertia rel diff {abs(fit.inertia / sk.inertia_ - 1):.1e}")
    return [(f"k-means {n:,} x {p}, k = {k}, same init, tol 0", "", med["hpcml"], med["sklearn"], note)]


def bench_logistic(n: int, p: int, repeats: int) -> list:
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    from hpcml.numerics.irls import fit_logistic

    X, y = make_classification(n, p, n_informative=p // 2, n_redundant=0, flip_y=0.1, random_state=0)
    deficient = np.column_stack([X, X[:, 0], X[:, 1] + X[:, 2]])  # two aliased columns
    rows = []
    for label, A in (("full rank", X), ("2 aliased columns", deficient)):
        fits = {
            "hpcml": lambda A=A: fit_logistic(A, y),
            "lbfgs": lambda A=A: LogisticRegression(penalty=None, max_iter=1000).fit(A, y),
            "newton-cholesky": lambda A=A: LogisticRegression(penalty=None, solver="newton-cholesky",
                                                              max_iter=1000).fit(A, y),
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            med = interleaved(fits, repeats)
            fit, sk = fits["hpcml"](), fits["newton-cholesky"]()
        pred = (A @ np.nan_to_num(fit.slopes) + fit.intercept) - (sk.decision_function(A))
        note = f"linear predictor max diff vs newton-cholesky {np.max(np.abs(pred)):.1e}; NA {int(fit.aliased.sum())}"
        best = min(med["lbfgs"], med["newton-cholesky"])
        who = "lbfgs" if med["lbfgs"] <= med["newton-cholesky"] else "newton-cholesky"
        rows.append((f"logistic {n:,} x {A.shape[1]}, {label} (sklearn: {who}; lbfgs {med['lbfgs']:.3f} s, "
                     f"newton-cholesky {med['newton-cholesky']:.3f} s)", "", med["hpcml"], best, note))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", default=["pca", "kmeans", "logistic"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pca", type=int, nargs=2, default=[1_000_000, 50], metavar=("N", "P"))
    ap.add_argument("--kmeans", type=int, nargs=3, default=[1_000_000, 10, 8], metavar=("N", "P", "K"))
    ap.add_argument("--logistic", type=int, nargs=2, default=[500_000, 20], metavar=("N", "P"))
    args = ap.parse_args()
    from threadpoolctl import threadpool_info

    print(f"load average before: {os.getloadavg()}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}")
    rows = []
    if "pca" in args.only:
        rows += bench_pca(*args.pca, args.repeats)
    if "kmeans" in args.only:
        rows += bench_kmeans(*args.kmeans, args.repeats)
    if "logistic" in args.only:
        rows += bench_logistic(*args.logistic, args.repeats)
    table(rows)
    print(f"load average after: {os.getloadavg()}")
    for pool in threadpool_info():  # which kernel each BLAS ran (NumPy's and SciPy's differ)
        print(f"  {pool['internal_api']} {pool.get('version')} {pool.get('architecture', '')} "
              f"threads={pool['num_threads']} ({os.path.basename(pool['filepath'])})")


if __name__ == "__main__":
    main()
