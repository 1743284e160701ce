"""dask-jobqueue on the simulated cluster's two-node Slurm, with hpcml's defaults (no
``interface``): the scheduler on head listens on the interface that reaches node1 and node2,
the worker jobs there connect, and the results equal a one-host local run bit for bit.
"""
from __future__ import annotations

import pandas as pd
import pytest
import yaml

from conftest import assert_same_results, small_spec

import hpcml

pytestmark = [pytest.mark.slow, pytest.mark.cluster, pytest.mark.slurm]


@pytest.mark.timeout(420)
def test_jobqueue_workers_on_compute_nodes_reach_the_scheduler_by_default(cluster, cluster_slurm, tmp_path):
    local = hpcml.run(small_spec(tmp_path), progress=False).results
    folder = cluster.shared / "jobqueue"
    folder.mkdir()
    backend = {"name": "dask", "cluster": "slurm", "jobs": 2, "cores": 2, "mem_gb": 1, "walltime_min": 10,
               "start_timeout_s": 180}
    spec = folder / "job.yaml"
    spec.write_text(yaml.safe_dump(small_spec(folder, backend=backend)))
    proc = cluster.hpcml("head", "run", spec, timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the log names the interface it chose, and how
    assert "dask scheduler on eth0 (10.99.0.10, the address of hostname head)" in proc.stderr, proc.stderr
    assert_same_results(local, pd.read_parquet(folder / "run" / "results.parquet"))
    # the worker jobs ran on both compute nodes (2 cores each: a job takes a whole node)
    logs = " ".join(p.read_text(errors="replace") for p in (folder / "run" / "logs" / "dask").glob("*.err"))
    assert "tcp://10.99.0.11:" in logs and "tcp://10.99.0.12:" in logs, logs[-3000:]


@pytest.mark.timeout(300)
def test_workers_that_cannot_reach_the_scheduler_get_a_line_that_names_the_interface(cluster, cluster_slurm):
    """``interface: lo`` (the old default) on a real cluster: the worker jobs wait for a scheduler
    on head's loopback; the start timeout says which settings to check and where the job logs
    went (out of the run directory, which the failed start removes)."""
    folder = cluster.shared / "jobqueue-lo"
    folder.mkdir()
    backend = {"name": "dask", "cluster": "slurm", "jobs": 2, "cores": 2, "mem_gb": 1, "walltime_min": 10,
               "start_timeout_s": 30, "interface": "lo"}
    spec = folder / "job.yaml"
    spec.write_text(yaml.safe_dump(small_spec(folder, backend=backend)))
    proc = cluster.hpcml("head", "run", spec, "-q", timeout=240)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: backend.start_timeout_s: only 0 of 2 dask worker(s) on slurm came up in time; "
                           "the worker jobs must reach the scheduler at tcp://127.0.0.1:"), line
    assert "(backend.interface: lo (127.0.0.1, backend.interface))" in line and "backend.python" in line
    kept = folder / line.split(", kept in ")[1].split(" (got ")[0].rsplit("/", 1)[1]
    assert not (folder / "run").exists() and kept.is_dir(), line
    logs = " ".join(p.read_text(errors="replace") for p in kept.glob("*.err"))
    # on the compute node nothing listens on the loopback address the workers were given
    assert "ConnectionRefusedError" in logs and "Nanny at 'tcp://127.0.0.1:" in logs, logs[-3000:]
