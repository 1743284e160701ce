"""Runs of many tasks: what the driver, the store and ``hpcml status`` build per task (nothing
per task where it can be avoided), and a no-op resume that leaves the run as it was."""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

import hpcml
from hpcml.rundir import records
from hpcml.rundir.store import Chunk
from hpcml.tasks.chunks import make_chunks
from hpcml.report.status import run_status
from hpcml.rundir.store import RunStore, write_chunk_records

from conftest import hpcml_cli


def noop_spec(tmp_path, n=40, **over):
    spec = {"name": "noop", "data": {"source": "none"}, "model": {"kind": "sleep", "ms": 0},
            "plan": {"replicate": {"n": n}}, "backend": {"name": "local", "workers": 2, "chunk_size": 7},
            "output": str(tmp_path / "run")}
    spec.update(over)
    return spec


def test_a_fresh_run_hands_out_ranges_of_tasks_not_lists(tmp_path, monkeypatch):
    import hpcml.drivers.run as run_driver

    seen = []
    real = run_driver.run_attempts
    monkeypatch.setattr(run_driver, "run_attempts", lambda job, store, todo, *a, **k: (seen.append(todo),
                                                                                         real(job, store, todo, *a, **k))[1])
    res = hpcml.run(noop_spec(tmp_path), progress=False, plots=False)
    assert res.ok and seen == [range(40)]
    chunks = make_chunks(range(40), 7)
    assert all(isinstance(c.indices, range) for c in chunks) and [len(c) for c in chunks] == [7] * 5 + [5]
    assert chunks[-1].id == "0000035-0000039" and make_chunks([3, 5, 8], 2)[0].indices == (3, 5)


def test_a_no_op_resume_keeps_the_recorded_run_and_runs_nothing(tmp_path, monkeypatch):
    import hpcml.drivers.run as run_driver

    spec = noop_spec(tmp_path)
    first = hpcml.run(spec, progress=False, plots=False)
    run_dir = tmp_path / "run"
    summary = (run_dir / "summary.json").read_bytes()
    results = (run_dir / "results.parquet").stat().st_mtime_ns

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished run was checked, run or consolidated again")

    monkeypatch.setattr(run_driver, "check_job", must_not_run)
    monkeypatch.setattr(run_driver, "make_backend", must_not_run)
    monkeypatch.setattr(RunStore, "consolidate_table", must_not_run)
    again = hpcml.run(spec, progress=False, plots=False, resume=True)
    assert (run_dir / "summary.json").read_bytes() == summary  # the recorded time included
    assert (run_dir / "results.parquet").stat().st_mtime_ns == results
    assert again.seconds == json.loads(summary)["run"]["seconds"] and again.ok and again.n_tasks == 40
    pd.testing.assert_frame_equal(again.results, first.results)


def test_a_resume_after_a_new_chunk_file_consolidates_again(tmp_path):
    spec = noop_spec(tmp_path, n=10)
    hpcml.run(spec, progress=False, plots=False)
    store = RunStore(tmp_path / "run")
    assert store.consolidated(["status"]) is not None
    # a late record of task 3 (a straggler's chunk written after consolidation)
    write_chunk_records(store.path, Chunk((3,)), [{"task_id": "replicate/000003", "task_index": 3, "status": "ok",
                                                  "attempt": 1, "seconds": 0.0, "replicate": 3, "slept_ms": 0.0}])
    assert store.consolidated(["status"]) is None
    res = hpcml.run(spec, progress=False, plots=False, resume=True)
    assert res.ok and len(res.results) == 10 and store.consolidated(["status"]) is not None


def test_status_of_a_finished_run_reads_only_its_results_file(tmp_path, monkeypatch):
    from hpcml.plans.replicate import ReplicatePlan

    hpcml.run(noop_spec(tmp_path, model={"kind": "sleep", "ms": 0, "fail_every": 9}), progress=False, plots=False)
    read = []
    real = records.read_chunk_table
    monkeypatch.setattr(records, "read_chunk_table", lambda path, columns=None: (read.append(path.name),
                                                                                  real(path, columns))[1])

    def per_task(*args, **kwargs):
        raise AssertionError("status built a task")

    monkeypatch.setattr(ReplicatePlan, "params_at", per_task)
    monkeypatch.setattr(pd.DataFrame, "itertuples", per_task)
    st = run_status(tmp_path / "run")
    assert read and set(read) == {"results.parquet"}  # no chunk file
    assert (st["done"], st["failed"], st["missing"]) == (35, 5, 0)
    assert [f["task_id"] for f in st["failures"]] == [f"replicate/{i:06d}" for i in (0, 9, 18, 27, 36)]
    assert "failed on purpose" in st["failures"][0]["error"]


def test_status_mid_run_reads_the_chunk_files(tmp_path):
    hpcml.run(noop_spec(tmp_path, n=20), progress=False, plots=False)
    (tmp_path / "run" / "results.parquet").unlink()
    for f in RunStore(tmp_path / "run").chunk_files()[:2]:
        f.unlink()  # chunks 0-6 and 7-13 not written yet
    out = hpcml_cli("status", tmp_path / "run")
    assert out.returncode == 1, out.stderr  # not finished
    assert "6 done, 0 failed, 14 missing" in out.stdout


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_latest_record_per_task_matches_a_pandas_reference(tmp_path, seed):
    """Retried tasks: the ok record wins, else the latest failure; checked against pandas."""
    rng = np.random.default_rng(seed)
    store = RunStore(tmp_path)
    (tmp_path / "chunks").mkdir()
    rows = []
    for attempt in range(4):
        tasks = rng.choice(30, size=12, replace=False)
        recs = [{"task_id": f"replicate/{i:06d}", "task_index": int(i),
                 "status": "ok" if rng.random() < 0.4 else "failed", "attempt": attempt,
                 "value": float(rng.standard_normal())} for i in sorted(tasks)]
        path = write_chunk_records(tmp_path, Chunk(tuple(sorted(int(i) for i in tasks))), recs)
        os.utime(path, ns=(10**18 + attempt * 10**9,) * 2)  # later attempts, later files
        rows += recs
    ref = pd.DataFrame(rows)
    ref["_ok"] = ref["status"].eq("ok")
    ref = (ref.sort_values(["task_index", "_ok", "attempt"], kind="stable").drop_duplicates("task_index", keep="last")
           .set_index("task_index").sort_index())
    got = store.latest_records().set_index("task_index")
    assert list(got.index) == list(ref.index)
    pd.testing.assert_series_equal(got["attempt"], ref["attempt"], check_dtype=False)
    pd.testing.assert_series_equal(got["status"], ref["status"])
    np.testing.assert_array_equal(store.done_indices(), np.flatnonzero(
        np.isin(np.arange(30), ref.index[ref["status"] == "ok"])))
    assert records.missing(30, store.done_indices()) == sorted(set(range(30)) - set(store.completed()))
