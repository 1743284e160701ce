"""The Dask backend on the REAL one-node Slurm (scripts/slurm_start.sh) through dask-jobqueue:
worker jobs submitted with sbatch give results bit for bit equal to the local backend; a
worker job cancelled with scancel mid-run loses and duplicates nothing; workers that retire
before their walltime (lifetime_min, or by default) are replaced and the run outlasts them.
"""
from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("dask_jobqueue", reason="pip install 'hpcml[dask]'")

from conftest import assert_same_results, small_spec  # noqa: E402
from slurm_util import job_states, read_logs, squeue_ids  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

SLURM = {"name": "dask", "cluster": "slurm", "cores": 1, "processes": 1, "mem_gb": 1, "walltime_min": 10,
         "partition": "debug", "start_timeout_s": 180}
SYNTH = {"source": "synthetic:regression", "options": {"n_samples": 10, "n_features": 2}}


def _job_ids(log_dir: Path) -> set[str]:
    """Slurm job ids of the dask worker jobs, from their log file names (hpcml-NAME-ID.out)."""
    return {m.group(1) for p in log_dir.glob("*.out") if (m := re.search(r"-(\d+)\.out$", p.name))}


def _sleep_job(tmp_path: Path, name: str, n: int, ms: float, backend: dict, chunk_size: int) -> dict:
    spec = small_spec(tmp_path, name=name, data=SYNTH, plan={"replicate": {"n": n}}, backend=backend,
                      model={"kind": "sleep", "ms": ms, "sigma": 0.3, "busy": False})
    spec["backend"]["chunk_size"] = chunk_size
    return spec


def _expected_ms(seed: int, n: int, ms: float, sigma: float) -> np.ndarray:
    """What the sleep kind draws for each task: its own generator, whatever ran it."""
    from hpcml.plans import task_rng

    return np.array([ms * float(np.exp(sigma * task_rng(seed, i).standard_normal())) for i in range(n)])


@pytest.mark.timeout(400)
def test_two_slurm_worker_jobs_equal_local(slurm_cluster, tmp_path):
    from hpcml import run

    local = run(small_spec(tmp_path / "local"), progress=False)
    result = run(small_spec(tmp_path / "slurm", backend={**SLURM, "jobs": 2}), progress=False)
    log_dir = result.run_dir / "logs" / "dask"
    assert result.ok, read_logs(log_dir)
    assert_same_results(local.results, result.results)
    # Two real worker jobs ran (sbatch'ed by dask-jobqueue), and both were cancelled at the end.
    ids = _job_ids(log_dir)
    assert len(ids) == 2, read_logs(log_dir)
    assert not any(squeue_ids(job=i) for i in ids)


@pytest.mark.timeout(400)
def test_scancel_one_worker_job_mid_run(slurm_cluster, tmp_path):
    from hpcml import run
    from hpcml.rundir.store import RunStore

    n, ms = 160, 40.0
    spec = _sleep_job(tmp_path, "t-scancel", n, ms, {**SLURM, "jobs": 2}, chunk_size=4)
    outcome: dict = {}
    runner = threading.Thread(target=lambda: outcome.setdefault("result", run(spec, progress=False)), daemon=True)
    runner.start()
    chunks = tmp_path / "run" / "chunks"
    deadline = time.monotonic() + 240
    while len(list(chunks.glob("chunk-*.parquet"))) < 3:  # both workers are up and busy
        assert runner.is_alive() and time.monotonic() < deadline, "run ended or stalled before the cancel"
        time.sleep(0.1)
    jobs = squeue_ids(name="hpcml-t-scancel")
    assert len(jobs) == 2, jobs
    done_at_cancel = len(list(chunks.glob("chunk-*.parquet")))
    subprocess.run(["scancel", jobs[0]], check=True, timeout=30)
    # 40 chunks in all: most of them, and the chunk the cancelled worker holds, are still to run.
    assert runner.is_alive() and done_at_cancel <= n // 4 - 10, "the cancel came too late to test anything"
    runner.join(timeout=300)
    assert not runner.is_alive(), "run did not finish after a worker job was cancelled"
    result = outcome["result"]
    log_dir = result.run_dir / "logs" / "dask"
    assert not squeue_ids(job=jobs[0]), "the cancelled job is still queued"

    # Nothing lost: every task has exactly one row, ok, with the value its own seed gives.
    res = result.results
    assert result.ok, (result.failures(), read_logs(log_dir))
    assert list(res["task_index"]) == list(range(n))
    np.testing.assert_array_equal(res["slept_ms"].to_numpy(), _expected_ms(7, n, ms, 0.3))
    # Nothing duplicated: a chunk that ran again (its worker died after writing) left identical records.
    records = RunStore(result.run_dir).read_records()
    ok = records[records["status"] == "ok"]
    assert set(ok["task_index"]) == set(range(n))
    assert ok.groupby("task_index")["slept_ms"].nunique().max() == 1


@pytest.mark.timeout(400)
def test_retiring_workers_are_replaced(slurm_cluster, tmp_path):
    """lifetime_min below the walltime: the one worker retires mid-run, a new job replaces it.
    The lifetime counts from the worker's start, which takes up to about 17 s on a busy machine:
    a lifetime of 9 s left some workers no time to finish their first chunk, and a chunk on 4
    workers that retired under it failed (KilledWorker). 30 s leaves each worker time to work."""
    from hpcml import run

    n, ms = 60, 600.0
    backend = {**SLURM, "jobs": 1, "walltime_min": 2, "lifetime_min": 0.5}  # retire after 30 s
    result = run(_sleep_job(tmp_path, "t-life", n, ms, backend, chunk_size=2), progress=False)
    log_dir = result.run_dir / "logs" / "dask"
    assert result.ok, (result.failures(), read_logs(log_dir))
    assert list(result.results["task_index"]) == list(range(n))
    np.testing.assert_array_equal(result.results["slept_ms"].to_numpy(), _expected_ms(7, n, ms, 0.3))
    # n * ms = 36 s of work for one worker living 30 s: at least two worker jobs took part.
    assert len(_job_ids(log_dir)) >= 2, read_logs(log_dir)
    assert (pd.Series(result.results["attempt"]) == 0).all()  # Dask moved the work; no runner retry needed


@pytest.mark.timeout(400)
def test_a_run_longer_than_the_walltime_costs_no_retry(slurm_cluster, tmp_path):
    """A one-minute walltime and no lifetime_min: each worker retires before its walltime (40 s,
    give or take 5), without starting a chunk it has no time left for, and a new job replaces it.
    With ``retries: 0`` every task is ok at its first attempt, no failure is recorded, and no
    worker job was killed at its time limit."""
    from hpcml import run
    from hpcml.rundir.store import RunStore

    n, ms = 30, 2000.0
    spec = _sleep_job(tmp_path, "t-wall", n, ms, {**SLURM, "jobs": 1, "walltime_min": 1}, chunk_size=1)
    spec["retries"] = 0
    result = run(spec, progress=False)
    log_dir = result.run_dir / "logs" / "dask"
    assert result.ok, (result.failures(), read_logs(log_dir))
    assert list(result.results["task_index"]) == list(range(n))
    np.testing.assert_array_equal(result.results["slept_ms"].to_numpy(), _expected_ms(7, n, ms, 0.3))
    assert (result.results["attempt"] == 0).all()
    records = RunStore(result.run_dir).read_records()
    assert set(records["status"]) == {"ok"}, records[records["status"] != "ok"]
    # 60 s of work for workers living 40 s: several jobs took part, none ended at its walltime
    ids = _job_ids(log_dir)
    assert len(ids) >= 2, read_logs(log_dir)
    states = {i: job_states(i) for i in ids}
    assert not any("TIMEOUT" in s for s in states.values()), (states, read_logs(log_dir))
