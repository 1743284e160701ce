"""A compute node fails mid-run, under Dask with a scheduler of the site's and under
dask-jobqueue on the two-node Slurm: it crashes (every process of node2 killed at once), or it
is cut off the network (its switch port down, its processes still running). The run finishes
on node1, or stops with hpcml's one line and ``--resume`` completes; either way the results
equal a one-host local run bit for bit, with every task once.
"""
from __future__ import annotations

import subprocess
import time

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import assert_same_results

import hpcml
from hpcml.rundir.store import RunStore

from .conftest import PYTHON

pytestmark = [pytest.mark.slow, pytest.mark.cluster]
TASKS, CHUNK = 48, 2


def sleep_spec(out, **backend) -> dict:
    """Tasks of 250 ms (sleeping, so two nodes on a busy machine still overlap) in chunks of 2."""
    return {"name": "t-crash", "seed": 11, "data": {"source": "sklearn:iris"},
            "model": {"kind": "sleep", "ms": 250, "sigma": 0.3, "busy": False},
            "plan": {"replicate": {"n": TASKS}}, "backend": {"chunk_size": CHUNK, **backend}, "output": str(out)}


@pytest.fixture(scope="module")
def local_sleep(tmp_path_factory):
    return hpcml.run(sleep_spec(tmp_path_factory.mktemp("local") / "run", name="local", workers=2),
                     progress=False).results


def crash_mid_run(cluster, local, name: str, backend: dict, fault: str = "crash") -> None:
    """Run the sleep job from head; crash node2 once 4 chunks are done, then boot it again
    (with its Slurm daemons if Slurm is up), or cut it off the network (``fault="partition"``)
    and join it again after the run; check the results."""
    folder = cluster.shared / name
    folder.mkdir()
    spec = folder / "job.yaml"
    spec.write_text(yaml.safe_dump(sleep_spec(folder / "run", **backend)))
    run = folder / "run"
    driver = subprocess.Popen(cluster.command("head", [PYTHON, "-m", "hpcml.cli", "run", spec, "-q"]),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cluster.env())
    try:
        deadline = time.monotonic() + 240
        while driver.poll() is None and time.monotonic() < deadline:
            if (run / "chunks").is_dir() and len(list((run / "chunks").glob("chunk-*.parquet"))) >= 4:
                break
            time.sleep(0.1)
        done_before = len(list((run / "chunks").glob("chunk-*.parquet")))
        if driver.poll() is not None or done_before >= TASKS // CHUNK:
            driver.wait(60)
            raise AssertionError(f"the run ended before the crash (exit {driver.returncode}): {driver.stderr.read()}")
        if fault == "crash":
            assert cluster.crash("node2"), "node2 had no processes to kill"
        else:
            cluster.partition("node2")
        out, err = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(10)
        if fault == "crash":
            cluster.revive("node2")
        else:
            cluster.heal("node2")
    if driver.returncode != 0:  # stopped: hpcml's one line, then --resume
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, err
        resumed = cluster.hpcml("head", "run", spec, "--resume", "-q", timeout=300)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    else:
        assert f"{TASKS}/{TASKS} tasks ok" in out, out + err
    results = pd.read_parquet(run / "results.parquet")
    assert sorted(results["task_index"]) == list(range(TASKS))  # none lost, none twice
    assert (results["status"] == "ok").all()
    assert_same_results(local, results)
    # A chunk the crash cut short wrote nothing; one that Dask ran again wrote the same records.
    records = pd.concat([pq.read_table(f).to_pandas() for f in RunStore(run).chunk_files()])
    ok = records[records["status"] == "ok"].drop(columns=["seconds", "attempt"], errors="ignore")
    assert set(ok["task_index"]) == set(range(TASKS))
    assert len(ok.drop_duplicates()) == TASKS, "a task ran twice with different results"


@pytest.mark.timeout(480)
def test_dask_node_crash_mid_run_loses_and_repeats_nothing(cluster, dask_nodes, local_sleep):
    crash_mid_run(cluster, local_sleep, "crash-dask", {"name": "dask", "address": dask_nodes})


@pytest.mark.timeout(480)
def test_dask_network_partition_mid_run_loses_and_repeats_nothing(cluster, dask_nodes, local_sleep):
    """node2 cut off: the scheduler loses its worker when the connection times out (about 30 s
    here) and the chunks it held run on node1."""
    crash_mid_run(cluster, local_sleep, "partition-dask", {"name": "dask", "address": dask_nodes}, fault="partition")


@pytest.mark.slurm
@pytest.mark.timeout(480)
def test_jobqueue_node_crash_mid_run_loses_and_repeats_nothing(cluster, cluster_slurm, local_sleep):
    """One worker job per node (2 cores each); node2's slurmd dies with it and is started again."""
    crash_mid_run(cluster, local_sleep, "crash-jobqueue",
                  {"name": "dask", "cluster": "slurm", "jobs": 2, "cores": 2, "mem_gb": 1, "walltime_min": 10,
                   "start_timeout_s": 180})
