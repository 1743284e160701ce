"""Statistics hpcml has no model for, used by docs/examples/python-*.yaml (run from the repository root)."""
import numpy as np
from scipy.stats import trim_mean


def trimmed_mean(data, cut=0.1):
    """The resampled rows come in as `data` (the function asks for no weights)."""
    return {"trimmed_mean": float(trim_mean(data["bmi"], cut)), "median_bp": float(np.median(data["bp"]))}


def weighted_corr(data, weights):
    """Whole data + the replicate's counts: no copy of the rows."""
    x, y = data["bmi"].to_numpy(), data["target"].to_numpy()
    w = weights / weights.sum()
    mx, my = w @ x, w @ y
    return float(w @ ((x - mx) * (y - my)) / np.sqrt((w @ (x - mx) ** 2) * (w @ (y - my) ** 2)))


def ridge_holdout(data, train, test, alpha):
    """A sweep: fit on the training rows, score on the held-out rows; `alpha` comes from the grid."""
    X = data.drop(columns="target").to_numpy()
    y = data["target"].to_numpy()
    A = X[train].T @ X[train] + alpha * np.eye(X.shape[1])
    beta = np.linalg.solve(A, X[train].T @ (y[train] - y[train].mean()))
    pred = X[test] @ beta + y[train].mean()
    return {"mse": float(np.mean((y[test] - pred) ** 2))}


def simulate(rng, task, n=1000):
    """A foreach-style loop body: one Monte Carlo replicate with the task's own generator."""
    walk = np.cumsum(rng.standard_normal(n))
    return {"max": float(walk.max()), "final": float(walk[-1]), "replicate": task["replicate"]}
