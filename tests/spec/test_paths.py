"""Relative paths in a spec mean the driver's files, wherever a worker runs.

They are made absolute where the job is loaded, relative to the working directory hpcml was
started from (as documented): a Dask worker or Spark executor started in another directory
that holds another file of the same name must never read that one.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import hpcml
from hpcml.spec import load_job
from hpcml.rundir.store import Chunk
from hpcml.tasks.worker import WorkOrder, execute_chunk

from conftest import linear_frame

FEATURES = ["x0", "x1"]


def _two_dirs(tmp_path):
    """A driver's and a worker's directory, each with its own d.csv."""
    driver, worker = tmp_path / "driver", tmp_path / "worker"
    for d, seed in ((driver, 0), (worker, 1)):
        d.mkdir()
        linear_frame(100, FEATURES, seed).to_csv(d / "d.csv", index=False)
    return driver, worker


def _spec(tmp_path, **over) -> dict:
    return {"name": "rel", "data": {"source": "d.csv", "target": "y"}, "model": {"kind": "ols"},
            "plan": {"fit": {}}, "backend": {"name": "local", "workers": 1}, "output": str(tmp_path / "run"), **over}


def _coef(frame: pd.DataFrame) -> np.ndarray:
    return np.linalg.lstsq(np.column_stack([np.ones(len(frame)), frame[FEATURES]]), frame["y"], rcond=None)[0]


def test_a_worker_in_another_directory_reads_the_drivers_file(tmp_path, monkeypatch):
    driver, worker = _two_dirs(tmp_path)
    monkeypatch.chdir(driver)
    job = load_job(_spec(tmp_path, model={"kind": "python", "function": "f", "file": "f.py"}))
    assert job.spec.data.source == str(driver / "d.csv") and job.params.file == str(driver / "f.py")
    job = load_job(_spec(tmp_path))
    monkeypatch.chdir(worker)  # the worker's own directory holds another d.csv
    result = execute_chunk(WorkOrder(job.to_json(), str(tmp_path / "run"), Chunk((0,)), write=False))
    record = result.records[0]
    assert record["status"] == "ok", record
    got = [record["coef_(Intercept)"], *[record[f"coef_{f}"] for f in FEATURES]]
    np.testing.assert_allclose(got, _coef(pd.read_csv(driver / "d.csv")), rtol=1e-10)


@pytest.mark.timeout(240)
def test_dask_workers_started_elsewhere_read_the_drivers_file(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    import os

    from distributed import Client, LocalCluster

    driver, worker = _two_dirs(tmp_path)
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None)
    client = Client(cluster)
    try:
        client.run(os.chdir, str(worker))  # a worker started in another directory
        monkeypatch.chdir(driver)
        res = hpcml.run(_spec(tmp_path, backend={"name": "dask", "address": cluster.scheduler_address}),
                        progress=False)
    finally:
        client.close()
        cluster.close()
    assert res.ok
    row = res.results.iloc[0]
    got = [row["coef_(Intercept)"], *[row[f"coef_{f}"] for f in FEATURES]]
    np.testing.assert_allclose(got, _coef(pd.read_csv(driver / "d.csv")), rtol=1e-10)
    assert list(json.loads((tmp_path / "run" / "data.json").read_text())["files"]) == [str(driver / "d.csv")]


def test_a_run_recorded_with_relative_paths_still_resumes(tmp_path, monkeypatch):
    driver, _ = _two_dirs(tmp_path)
    monkeypatch.chdir(driver)
    spec = _spec(tmp_path, plan={"bootstrap": {"replicates": 4}})
    assert hpcml.run(spec, progress=False, plots=False).ok
    run = tmp_path / "run"
    for name, edit in (("spec.json", lambda s: {**s, "data": {**s["data"], "source": "d.csv"}}),
                       ("data.json", lambda s: {**s, "files": {"d.csv": next(iter(s["files"].values()))}})):
        (run / name).write_text(json.dumps(edit(json.loads((run / name).read_text()))))
    (run / "summary.json").unlink()
    assert hpcml.run(spec, progress=False, plots=False, resume=True).ok
