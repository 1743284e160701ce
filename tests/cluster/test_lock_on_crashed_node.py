"""A run whose driver (the holder of the run directory's lock) was on a node that crashed: a
``--resume`` from another node is refused in one line while the holder's lease runs (it
names the holder and when its lock was last renewed), and takes the lock over once the lease
has run out unrenewed; the resumed run completes, bit-identical to a local run, every task
once. Nothing waits forever, and two drivers never run at once.
"""
from __future__ import annotations

import json
import os
import subprocess
import time

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import assert_same_results

from hpcml.rundir.lock import LOCK_NAME
from hpcml.rundir.store import RunStore

from .conftest import PYTHON
from .test_node_crash import CHUNK, TASKS, local_sleep, sleep_spec  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.slow, pytest.mark.cluster]
LEASE_S = 30  # the holder's (HPCML_LOCK_LEASE_S); the default is 60 s


@pytest.mark.timeout(480)
def test_a_lock_held_on_a_crashed_node_is_taken_over_after_its_lease(cluster, local_sleep):
    folder = cluster.shared / "lock-crash"
    folder.mkdir()
    spec = folder / "job.yaml"
    spec.write_text(yaml.safe_dump(sleep_spec(folder / "run", name="local", workers=2)))
    run, lock = folder / "run", folder / "run" / LOCK_NAME
    driver = subprocess.Popen(cluster.command("node1", [PYTHON, "-m", "hpcml.cli", "run", spec, "-q"]),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=cluster.env(HPCML_LOCK_LEASE_S=str(LEASE_S)))
    try:
        deadline = time.monotonic() + 240
        while driver.poll() is None and time.monotonic() < deadline:
            if (run / "chunks").is_dir() and len(list((run / "chunks").glob("chunk-*.parquet"))) >= 4:
                break
            time.sleep(0.1)
        assert driver.poll() is None and len(list((run / "chunks").glob("chunk-*.parquet"))) < TASKS // CHUNK
        assert cluster.crash("node1"), "node1 had no processes to kill"
        driver.wait(60)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(10)
        cluster.revive("node1")
    holder = json.loads(lock.read_text())
    assert holder["host"] == "node1" and holder["lease_s"] == LEASE_S
    # As if the holder renewed its lock the instant before the crash (so that a slow start of the
    # next command here cannot outlast the lease): from head, the holder may still be alive.
    os.utime(lock)
    renewed = lock.stat().st_mtime
    refused = cluster.hpcml("head", "run", spec, "--resume", "-q")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"(host node1, pid {holder['pid']}, its lock renewed" in lines[0] and \
        f"taken over when not renewed for {LEASE_S}s" in lines[0], refused.stderr
    while time.time() - renewed <= LEASE_S:  # the same clock here: the nodes share this machine's
        time.sleep(0.5)
    assert lock.stat().st_mtime == renewed  # nobody renewed it: its holder is gone
    resumed = cluster.hpcml("head", "run", spec, "--resume", "-q")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"{TASKS}/{TASKS} tasks ok" in resumed.stdout
    assert f"took over the lock of host node1, pid {holder['pid']} (not renewed for more than its lease of " \
        f"{LEASE_S}s)" in resumed.stderr, resumed.stderr
    assert not lock.exists() and not list(run.glob(LOCK_NAME + ".*"))
    results = pd.read_parquet(run / "results.parquet")
    assert_same_results(local_sleep, results)
    records = pd.concat([pq.read_table(f).to_pandas() for f in RunStore(run).chunk_files()])
    assert sorted(records["task_index"]) == list(range(TASKS))  # every task once
