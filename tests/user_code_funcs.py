"""Functions of "the user's own", for tests/test_user_code.py (used by file path and by module)."""
import time

import numpy as np
import pandas as pd


def median(data):
    return float(np.median(data["x0"]))


def trimmed_mean(data, cut=0.1):
    from scipy.stats import trim_mean

    return {"trimmed_mean": float(trim_mean(data["x0"], cut)), "n": len(data)}


def weighted_correlation(data, weights):
    x, y = data["x0"].to_numpy(), data["x1"].to_numpy()
    return {"corr": float(np.corrcoef(np.repeat(x, weights.astype(int)), np.repeat(y, weights.astype(int)))[0, 1])}


def everything(data, weights, rng, params, task, scratch, train, test):
    (scratch / "note.txt").write_text(task["id"])
    return {"draw": float(rng.random()), "n_train": int(train.sum()), "n_test": int(test.sum()),
            "sum_w": float(weights.sum()), "index": task["index"], "array": np.arange(4.0),
            "frame": pd.DataFrame({"a": [1, 2]})}


def vector(data):
    return np.array([data["x0"].mean(), data["x0"].std()])


def series(data):
    return data.mean()


def ridge_mse(data, train, test, alpha):
    X, y = data[["x0"]].to_numpy(), data["x1"].to_numpy()
    beta = np.linalg.solve(X[train].T @ X[train] + alpha * np.eye(1), X[train].T @ y[train])
    return {"mse": float(np.mean((y[test] - X[test] @ beta) ** 2)), "alpha": alpha}


def ridge_mse_extra(data, train, test, alpha, extra=None):
    return ridge_mse(data, train, test, alpha)


def fails(task):
    if task["index"] % 3 == 1:
        raise ValueError(f"bad replicate {task['index']}")
    return 1.0


def returns_text(data):
    return "not a number"


def slow(rng, task):
    time.sleep(0.03)
    return {"u": float(rng.random()), "i": task["index"]}


def needs_unknown(data, colour):
    return 0.0


def square(x):
    return x * x


def stuck_until(task, marker, stuck=(1, 4)):
    """Tasks ``stuck`` sit in C code (a sleep) for a minute until the file ``marker`` exists."""
    import os

    if task["index"] in stuck and not os.path.exists(marker):
        time.sleep(60)
    return {"i": float(task["index"])}


def wait_for(path):
    """Holds its task until the file ``path`` exists (five minutes at most)."""
    import os

    end = time.monotonic() + 300
    while not os.path.exists(path) and time.monotonic() < end:
        time.sleep(0.05)
    return {"waited": 1.0}
