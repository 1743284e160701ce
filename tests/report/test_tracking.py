"""MLflow tracking (``tracking: {mlflow: {...}}``): every run logged from the driver's finish,
read back with MLflow's own ``search_runs``."""
from __future__ import annotations

from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow")

import hpcml  # noqa: E402
from hpcml.report.tracking import DB_NAME, store_uris, summary_metrics  # noqa: E402


def _runs(store: Path, experiment: str):
    mlflow.set_tracking_uri(f"sqlite:///{store / DB_NAME}")
    return mlflow.search_runs(experiment_names=[experiment]), mlflow.MlflowClient()


def test_store_uris():
    assert store_uris("http://host:5000") == ("http://host:5000", None)
    assert store_uris("sqlite:///x.db") == ("sqlite:///x.db", None)
    assert summary_metrics({"run": {"tasks": 3}, "table": [{"output": "coef_(age)", "se": 0.5}], "plan": "x"}) == {
        "run.tasks": 3, "coef__age_.se": 0.5}


@pytest.mark.timeout(300)
def test_bootstrap_run_logged_with_spec_summary_and_artifacts(tmp_path):
    spec = {"name": "ols-tracked", "seed": 1, "data": {"source": "sklearn:diabetes", "target": "target"},
            "model": {"kind": "ols", "features": ["age", "bmi"]}, "plan": {"bootstrap": {"replicates": 20}},
            "backend": {"name": "local", "workers": 1}, "output": str(tmp_path / "run"),
            "tracking": {"mlflow": {"uri": str(tmp_path / "mlruns")}}}
    res = hpcml.run(spec, progress=False)
    runs, client = _runs(tmp_path / "mlruns", "ols-tracked")
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["status"] == "FINISHED" and run["tags.hpcml.run_dir"] == str(res.run_dir.resolve())
    assert run["params.model.kind"] == "ols" and run["params.plan.bootstrap.replicates"] == "20"
    assert run["metrics.run.tasks"] == 20
    bmi = next(r for r in res.summary["table"] if r["output"] == "coef_bmi")
    assert run["metrics.coef_bmi.se"] == pytest.approx(bmi["se"])
    names = {a.path for a in client.list_artifacts(run["run_id"])}
    assert {"results.parquet", "summary.json", "spec.json", "plots"} <= names


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.timeout(300)
def test_cnn_sweep_tasks_are_child_runs_with_epochs_as_steps(tmp_path):
    pytest.importorskip("torch")
    spec = {"name": "cnn-tracked", "seed": 2, "data": {"source": "sklearn:digits", "target": "target"},
            "model": {"kind": "cnn", "arch": "fc", "epochs": 2, "device": "cpu"},
            "plan": {"sweep": {"grid": {"lr": [0.003, 0.01]}}}, "backend": {"name": "local", "workers": 1},
            "output": str(tmp_path / "run"), "tracking": {"mlflow": {"uri": str(tmp_path / "mlruns")}}}
    res = hpcml.run(spec, progress=False)
    assert res.ok
    runs, client = _runs(tmp_path / "mlruns", "cnn-tracked")
    parent = runs.loc[runs["tags.mlflow.parentRunId"].isna()]
    children = runs.loc[runs["tags.mlflow.parentRunId"].notna()]
    assert len(parent) == 1 and len(children) == 2
    assert (children["tags.mlflow.parentRunId"] == parent["run_id"].iloc[0]).all()
    assert sorted(children["tags.mlflow.runName"]) == ["lr=0.003", "lr=0.01"]
    assert parent["metrics.best.val_accuracy"].iloc[0] == pytest.approx(res.summary["best"]["val_accuracy"])
    child = children.iloc[0]
    assert child["metrics.val_accuracy"] > 0.5 and "params.lr" in children
    history = client.get_metric_history(child["run_id"], "val_loss")
    assert sorted(m.step for m in history) == [1, 2]
    assert {"curves.png", "history.csv"} <= {a.path for a in client.list_artifacts(child["run_id"])}


def test_a_file_uri_is_refused_when_the_spec_is_checked(tmp_path):
    """MLflow 3 writes no new runs to a file: store: said before anything runs, in one line
    naming the field and what works (before: a warning after the run, nothing tracked)."""
    from conftest import hpcml_cli, small_spec

    spec = small_spec(tmp_path, tracking={"mlflow": {"uri": f"file://{tmp_path}/mlruns"}})
    (tmp_path / "job.yaml").write_text(__import__("yaml").safe_dump(spec))
    proc = hpcml_cli("run", tmp_path / "job.yaml")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: tracking.mlflow.uri: MLflow 3 refuses a file: tracking URI for new runs; give the directory itself "
        f"(hpcml keeps a SQLite store there), sqlite:///path/mlflow.db, or http(s)://server (got 'file://{tmp_path}/mlruns')"]
    assert not (tmp_path / "run").exists()


def test_a_nested_grid_value_names_mlflow_child_runs_key_by_key():
    """A sweep over a mapping (``arch_params``) names its MLflow child runs and parameters as
    progress lines and TensorBoard do: ``arch_params.c1=8``, not the column's JSON text."""
    from hpcml.report.tracking import _mapping, flatten

    grid = {"arch_params": _mapping('{"c1": 8, "c2": 16}'), "lr": 0.01}  # results.parquet of before
    assert flatten(grid) == {"arch_params.c1": 8, "arch_params.c2": 16, "lr": 0.01}
    assert _mapping("{not json") == "{not json" and _mapping(3.0) == 3.0


@pytest.mark.timeout(300)
def test_a_sweep_over_mappings_names_child_runs_by_the_keys_each_point_sets(tmp_path):
    """results.parquet holds a column per key of a swept mapping (``param_args.alpha``): each
    child run is named and parametrized by the keys its grid point sets, none by a key that
    only another point's mapping has."""
    import numpy as np
    import pandas as pd

    from conftest import ROOT

    rng = np.random.default_rng(5)
    x0 = rng.lognormal(size=80)
    pd.DataFrame({"x0": x0, "x1": 0.5 * x0 + rng.normal(size=80)}).to_csv(tmp_path / "xy.csv", index=False)
    spec = {"name": "mapping-tracked", "seed": 3, "data": {"source": str(tmp_path / "xy.csv")},
            "model": {"kind": "python", "file": str(ROOT / "tests" / "user_code_funcs.py"),
                      "function": "ridge_mse_extra", "metric": "mse", "greater_is_better": False},
            "plan": {"sweep": {"grid": {"args": [{"alpha": 1}, {"alpha": 2, "extra": {"n": 3}}]}}},
            "backend": {"name": "local", "workers": 1}, "output": str(tmp_path / "run"),
            "tracking": {"mlflow": {"uri": str(tmp_path / "mlruns")}}}
    assert hpcml.run(spec, progress=False, plots=False).ok
    runs, _ = _runs(tmp_path / "mlruns", "mapping-tracked")
    children = runs.loc[runs["tags.mlflow.parentRunId"].notna()].set_index("tags.mlflow.runName")
    assert sorted(children.index) == ["args.alpha=1", "args.alpha=2, args.extra.n=3"]
    assert children.loc["args.alpha=2, args.extra.n=3", "params.args.extra.n"] == "3"
    assert pd.isna(children.loc["args.alpha=1", "params.args.extra.n"])
