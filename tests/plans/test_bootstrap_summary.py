"""The bootstrap summary: BCa limits as scipy.stats.norm computes them, and ``bca: false``
leaving out only the BCa limits (and the jackknife they need)."""
from __future__ import annotations

import numpy as np
import pytest

import hpcml
from conftest import assert_same_results, small_spec


def _bca_with_scipy_stats(boot, theta_hat, jack, level=0.95):
    """Efron's BCa interval written with scipy.stats.norm (the reference)."""
    from scipy.stats import norm

    prop = (np.sum(boot < theta_hat) + 0.5 * np.sum(boot == theta_hat)) / boot.size
    z0 = norm.ppf(prop)
    d = jack.mean() - jack
    a = np.sum(d**3) / (6.0 * np.sum(d**2) ** 1.5)
    alpha = (1 - level) / 2
    return tuple(float(np.quantile(boot, norm.cdf(z0 + (z0 + z) / (1 - a * (z0 + z)))))
                 for z in (norm.ppf(alpha), norm.ppf(1 - alpha)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bca_limits_equal_scipy_stats_norm(seed):
    from hpcml.plans.bootstrap import bca_interval

    rng = np.random.default_rng(seed)
    boot = rng.gamma(2.0, size=500)  # skewed: the correction matters
    jack = rng.normal(size=200) ** 2
    got = bca_interval(boot, 1.7, jack)
    assert got == _bca_with_scipy_stats(boot, 1.7, jack)
    assert got != tuple(np.quantile(boot, [0.025, 0.975]))  # not the percentile interval


def test_bca_false_leaves_out_only_the_bca_limits(tmp_path):
    spec = small_spec(tmp_path)
    full = hpcml.run({**spec, "output": str(tmp_path / "bca")}, workers=1, progress=False, plots=False)
    lean = hpcml.run({**spec, "output": str(tmp_path / "lean"),
                      "plan": {"bootstrap": {"replicates": 40, "bca": False}}},
                     workers=1, progress=False, plots=False)
    assert_same_results(full.results, lean.results)
    assert all("bca_low" in row and row["bca_low"] is not None for row in full.summary["table"])
    for with_bca, without in zip(full.summary["table"], lean.summary["table"]):
        assert "bca_low" not in without and "bca_high" not in without
        assert without == {k: v for k, v in with_bca.items() if not k.startswith("bca_")}
