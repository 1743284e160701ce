"""The same bootstrap across the simulated cluster's nodes gives the numbers of a one-host local
run, bit for bit: Dask with workers on node1 and node2 (scheduler and driver on head), and MPI
packing with ranks on node1 and node2 started by ``mpirun`` on head, static and dynamic.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import assert_same_results, small_spec

import hpcml
from hpcml.backends.mpi import MPIOptions
from hpcml.drivers.mpi_static import rank_share
from hpcml.rundir.store import RunStore

from .conftest import PYTHON

pytestmark = [pytest.mark.slow, pytest.mark.cluster]


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory):
    """The one-host run everything else must equal (this machine, outside the cluster)."""
    return hpcml.run(small_spec(tmp_path_factory.mktemp("local")), progress=False).results


def write_spec(folder: Path, **over) -> Path:
    folder.mkdir(parents=True)
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(small_spec(folder, **over)))
    return path


def chunk_tasks(run: Path) -> list[list[int]]:
    return [pq.read_table(f).column("task_index").to_pylist() for f in RunStore(run).chunk_files()]


@pytest.mark.timeout(300)
def test_dask_workers_on_two_nodes_equal_local(cluster, dask_nodes, local_reference):
    spec = write_spec(cluster.shared / "dask", backend={"name": "dask", "address": dask_nodes, "chunk_size": 4})
    proc = cluster.hpcml("head", "run", spec, "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "40/40 tasks ok" in proc.stdout
    run = spec.parent / "run"
    assert_same_results(local_reference, pd.read_parquet(run / "results.parquet"))
    assert sorted(i for c in chunk_tasks(run) for i in c) == list(range(40))  # every task once
    # Both compute nodes ran chunks (the driver on head ran none: it has no worker).
    ran = cluster.run("head", [PYTHON, "-c", (
        "import json; from distributed import Client; c = Client(%r, timeout=60); "
        "print(json.dumps(dict(c.run(lambda dask_worker: (dask_worker.name, dask_worker.state.transition_counter))"
        ".values())))") % dask_nodes], timeout=120)
    assert ran.returncode == 0, ran.stderr
    counts = json.loads(ran.stdout.strip().splitlines()[-1])
    assert set(counts) == {"node1", "node2"} and all(counts.values()), counts


needs_mpi = pytest.mark.skipif(shutil.which("mpirun") is None or importlib.util.find_spec("mpi4py") is None,
                               reason="Open MPI or mpi4py not installed (make test installs both)")


@needs_mpi
@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode, n, hosts", [("static", 2, "node1,node2"), ("dynamic", 3, "node1:2,node2:1")])
def test_mpi_ranks_on_two_nodes_equal_local(cluster, local_reference, mode, n, hosts):
    spec = write_spec(cluster.shared / f"mpi-{mode}", backend={"name": "mpi", "mode": mode, "chunk_size": 4})
    proc = cluster.mpirun(n, hosts, ["-m", "hpcml.pack", spec, "-q"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("40/40 tasks ok") == 1, proc.stdout
    run = spec.parent / "run"
    assert_same_results(local_reference, pd.read_parquet(run / "results.parquet"))
    chunks = chunk_tasks(run)
    assert sorted(i for c in chunks for i in c) == list(range(40))  # every task once, none twice
    if mode == "static":  # rank 0 on node1 and rank 1 on node2 each wrote the chunks of its share
        owner = {i: r for r in range(n) for i in rank_share(list(range(40)), r, n, MPIOptions().layout)}
        assert {owner[c[0]] for c in chunks} == {0, 1}


def listening(cluster, node: str) -> list[str]:
    """The local addresses of every TCP socket listening in ``node``'s network namespace."""
    out = cluster.run(node, ["ss", "-ltnH"]).stdout
    return [line.split()[3] for line in out.splitlines() if line.strip()]


@pytest.mark.timeout(400)
def test_spark_workers_on_two_nodes_equal_local(cluster, spark_nodes, local_reference):
    """A standalone master on head and a worker on node1 and node2: the driver on head runs the
    job there; both workers ran an executor; every daemon listens on its node's cluster address
    only (no wildcard, no loopback)."""
    for node in ("head", "node1", "node2"):
        addresses = listening(cluster, node)
        assert addresses and all(a.rpartition(":")[0].strip("[]").removeprefix("::ffff:") == cluster.ip[node]
                                 for a in addresses), (node, addresses)
    spec = write_spec(cluster.shared / "spark", backend={"name": "spark", "spark_master": spark_nodes,
                                                         "workers": 2, "chunk_size": 10})
    proc = cluster.hpcml("head", "run", spec, "-q", timeout=380)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "40/40 tasks ok" in proc.stdout
    run = spec.parent / "run"
    assert_same_results(local_reference, pd.read_parquet(run / "results.parquet"))
    assert sorted(i for c in chunk_tasks(run) for i in c) == list(range(40))  # every task once
    for node in ("node1", "node2"):
        logs = "".join(p.read_text(errors="replace") for p in cluster.logs.glob(f"spark-*-{node}.log"))
        assert "Asked to launch executor" in logs, (node, logs[-2000:])


@pytest.mark.timeout(300)
def test_a_run_directory_the_workers_cannot_see_stops_the_run_in_one_line(cluster, dask_nodes):
    """``--out`` on the head node's own /tmp, Dask workers on node1 and node2: the first chunk
    a worker gets finds no run directory there, so the run stops at once with one line naming
    the path and the node, exit 2, and leaves no run directory (before: "40/40 tasks done", then
    40 failed). Nothing was created on the nodes either."""
    spec = write_spec(cluster.shared / "unseen", backend={"name": "dask", "address": dask_nodes, "chunk_size": 4})
    out = f"/tmp/hpcml-unseen-{spec.parent.name}"
    proc = cluster.hpcml("head", "run", spec, "-q", "--out", out)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"output: the run directory {out} is not visible on node node" in errors[0], \
        proc.stderr
    assert "file system every worker shares" in errors[0]
    for node in ("head", "node1", "node2"):
        assert cluster.run(node, ["test", "-e", out]).returncode == 1, node


IN_MEMORY = """
import sys
import hpcml
from sklearn.datasets import load_diabetes

spec = {"name": "frame", "seed": 7, "data": {"target": "target"}, "model": {"kind": "ols"},
        "plan": {"bootstrap": {"replicates": 8}}, "backend": {"name": "dask", "address": sys.argv[1]}}
try:
    hpcml.run(spec, data=load_diabetes(as_frame=True).frame, out=sys.argv[2], progress=False)
except hpcml.SpecError as err:
    print("SpecError:", err)
"""


@pytest.mark.timeout(300)
def test_in_memory_data_under_a_node_local_cache_stops_the_run_in_one_line(cluster, dask_nodes):
    """``hpcml.run(spec, data=frame)`` on head with ``HPCML_CACHE_DIR`` on head's own /tmp:
    the frame's Parquet file is there only, so the first chunk a worker gets stops the run with
    one SpecError naming the file, the node and HPCML_CACHE_DIR (before: every task failed with
    "data.source: file not found"); no run directory is left."""
    script = cluster.shared / "in_memory.py"
    script.write_text(IN_MEMORY)
    out = cluster.shared / "in-memory-run"
    proc = cluster.run("head", [PYTHON, script, dask_nodes, out], env={"HPCML_CACHE_DIR": "/tmp/hpcml-node-cache"})
    assert proc.returncode == 0, proc.stderr
    said = [line for line in proc.stdout.splitlines() if line.startswith("SpecError:")]
    assert len(said) == 1, proc.stdout + proc.stderr
    assert "data.source: the data file /tmp/hpcml-node-cache/" in said[0] and " is not visible on node node" in said[0]
    assert "(HPCML_CACHE_DIR), which every worker's node must share" in said[0], said[0]
    assert not out.exists()
