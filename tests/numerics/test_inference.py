"""Whole runs of the R-like behaviour of ols/logistic: coefficient tables of a fit, failed tasks
for fits with too few rows, separation warnings, categorical features, bad targets."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_diabetes

from conftest import hpcml_cli, small_spec
from hpcml.errors import SpecError
from hpcml import run


def _run(spec, **kw):
    return run(spec, progress=False, plots=False, **kw)


def test_fit_summary_is_the_coefficient_table(tmp_path):
    res = _run(small_spec(tmp_path, plan={"fit": {}}), workers=1)
    X, y = load_diabetes(return_X_y=True)
    A = np.column_stack([np.ones(len(y)), X])
    coef = np.linalg.lstsq(A, y, rcond=None)[0]
    resid = y - A @ coef
    sigma2 = resid @ resid / (len(y) - A.shape[1])
    se = np.sqrt(sigma2 * np.diag(np.linalg.inv(A.T @ A)))
    table = res.summary["table"]
    assert [r["term"] for r in table][:3] == ["(Intercept)", "age", "sex"]
    np.testing.assert_allclose([r["estimate"] for r in table], coef, rtol=1e-9)
    np.testing.assert_allclose([r["std_error"] for r in table], se, rtol=1e-9)
    np.testing.assert_allclose([r["t_value"] for r in table], coef / se, rtol=1e-9)
    st = res.summary["statistics"]
    assert st["r_squared"] == pytest.approx(1 - resid @ resid / np.sum((y - y.mean()) ** 2), rel=1e-12)
    assert st["df_residual"] == len(y) - 11 and st["rank"] == 11
    # The task's own record still has the flat outputs and scores.
    assert res.results.iloc[0]["coef_bmi"] == pytest.approx(table[3]["estimate"], rel=1e-12)


def test_cli_prints_the_coefficient_table(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(small_spec(tmp_path, plan={"fit": {}})))
    proc = hpcml_cli("run", path, "--workers", "1", "--no-plots")
    assert proc.returncode == 0, proc.stderr
    assert "(Intercept)" in proc.stdout and "std_error" in proc.stdout and "p_value" in proc.stdout


def test_one_row_shards_fail_never_report_numbers(tmp_path):
    frame = pd.DataFrame({"x": np.arange(6.0), "y": np.arange(6.0) ** 2})
    res = _run(small_spec(tmp_path, model={"kind": "ols", "features": ["x"]}, data={"source": "x", "target": "y"},
                          plan={"shards": {"n": 6}}), data=frame, workers=1)
    assert not res.ok and (res.results["status"] == "failed").all()
    assert res.results["error"].str.contains("1 row with positive weight cannot determine 2 coefficients").all()


def test_constant_column_in_a_shard_is_na_not_zero(tmp_path):
    frame = pd.DataFrame({"x": [1.0, 2, 3, 4, 5, 6, 7, 8], "z": [0.0, 0, 0, 0, 1, 2, 3, 5]})
    frame["y"] = 2 * frame["x"] + frame["z"] + np.array([0.1, -0.1, 0.2, 0, 0.1, -0.2, 0, 0.1])
    res = _run(small_spec(tmp_path, model={"kind": "ols", "features": ["x", "z"]}, data={"source": "x", "target": "y"},
                          plan={"shards": {"n": 2}}), data=frame, workers=1)
    assert res.ok
    first = res.results.sort_values("shard").iloc[0]
    assert np.isnan(first["coef_z"]) and np.isfinite(first["coef_x"])  # z is constant in rows 0-3


def test_inf_target_in_a_dataframe_is_bad_input(tmp_path):
    frame = pd.DataFrame({"x": [1.0, 2, 3, 4], "y": [1.0, np.inf, 2, 3]})
    with pytest.raises(SpecError, match="data.target"):
        _run(small_spec(tmp_path, model={"kind": "ols", "features": ["x"]}, data={"source": "x", "target": "y"}),
             data=frame)
    assert not (tmp_path / "run").exists()


def test_separated_bootstrap_replicates_are_ok_with_a_warning(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=60)
    frame = pd.DataFrame({"x": x, "y": (x > 0).astype(int)})  # complete separation
    res = _run(small_spec(tmp_path, model={"kind": "logistic", "features": ["x"]}, data={"source": "x", "target": "y"},
                          plan={"bootstrap": {"replicates": 6}}), data=frame, workers=1)
    assert res.ok
    assert res.results["warning"].str.contains("separation").all()
    assert sum(res.summary["warnings"].values()) == 6


def test_categorical_features_have_the_same_columns_in_every_shard(tmp_path):
    n = 90
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": rng.normal(size=n),
                          # level "c" appears only in the last shard, "a" only in the first
                          "g": ["a"] * 20 + ["b"] * 40 + ["c"] * 30,
                          "flag": rng.normal(size=n) > 0})
    frame["y"] = frame["x"] + (frame["g"] == "c") + rng.normal(size=n)
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    spec = small_spec(tmp_path, model={"kind": "ols", "features": ["x", "g", "flag"]},
                      data={"source": str(path), "target": "y"}, plan={"shards": {"n": 3}})
    res = _run(spec, workers=1)
    assert res.ok, res.failures()[["error"]]
    coefs = [c for c in res.results.columns if c.startswith("coef_")]
    assert coefs == ["coef_(Intercept)", "coef_x", "coef_gb", "coef_gc", "coef_flagTRUE"]
    by_shard = res.results.sort_values("shard")
    # Shard 0 holds levels a and b only: the dummy of c is all zeros there, aliased (NA) as R's lm.
    assert np.isnan(by_shard.iloc[0]["coef_gc"]) and np.isfinite(by_shard.iloc[0]["coef_gb"])
    # A fit of the whole data gets every dummy; a pandas category keeps its declared level order.
    frame["g"] = pd.Categorical(frame["g"], categories=["c", "b", "a"])
    fit = _run(small_spec(tmp_path, model={"kind": "ols", "features": ["g"]}, data={"source": "x", "target": "y"},
                          plan={"fit": {}}, output=str(tmp_path / "fit")), data=frame, workers=1)
    assert [r["term"] for r in fit.summary["table"]] == ["(Intercept)", "gb", "ga"]
