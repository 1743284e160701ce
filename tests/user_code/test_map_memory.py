"""``hpcml.map`` and ``hpcml.bootstrap`` without ``out``: records kept in memory, no run directory.

The same results, numbers and errors as a run directory's run (``out=``), on 1 and 2 workers
and on a Dask LocalCluster; retries, ``timeout_s`` and a worker that dies; nothing left in
the temporary directory, whether the call succeeds or fails.
"""
from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import hpcml
from hpcml.errors import RunFailed
from hpcml.user_code import REMOVER


@pytest.fixture
def temp(tmp_path, monkeypatch) -> Path:
    """The temporary directory a call without ``out`` uses (checked empty afterwards)."""
    path = tmp_path / "tmp"
    path.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    return path


def leftovers(temp: Path) -> list[Path]:
    """What hpcml left in the temporary directory: multiprocessing's forkserver keeps its pymp-*
    there while it runs, and Dask's LocalCluster its shared dask-scratch-space, as they always do.
    A call's own directory is removed by a thread of its own: waited for first."""
    for thread in threading.enumerate():
        if thread.name == REMOVER:
            thread.join()
    return [p for p in temp.iterdir() if not p.name.startswith("pymp-") and p.name != "dask-scratch-space"]


def draw(item, rng):
    return (item, float(rng.random()), int(rng.integers(0, 1 << 30)))


def expected_draws(n: int, seed: int) -> list:
    # NumPy's own generators, seeded as the docs say: SeedSequence(seed, spawn_key=(task index,))
    out = []
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i,)))
        out.append((i, float(rng.random()), int(rng.integers(0, 1 << 30))))
    return out


def test_map_without_out_same_draws_as_with_out_and_on_1_and_2_workers(tmp_path, temp):
    want = expected_draws(40, seed=9)
    one = hpcml.map(draw, range(40), workers=1, seed=9)
    two = hpcml.map(draw, range(40), workers=2, seed=9, chunk_size=3)
    kept = hpcml.map(draw, range(40), workers=2, seed=9, out=tmp_path / "kept")
    assert one == want and two == want and kept == want
    assert leftovers(temp) == []


def list_temp(item):
    base = Path(item)
    return sorted(str(p.relative_to(base)) for p in base.rglob("*"))


def test_map_without_out_writes_no_run_directory(temp):
    # Each call sees the temporary directory of the map it runs in: only the inputs are there.
    offset = 0  # a closure: the function travels by value, as a file among the inputs
    seen = hpcml.map(lambda item: list_temp(item + offset * ""), [str(temp)] * 4, workers=2)
    names = {Path(name).parts for listing in seen for name in listing}
    assert {parts[1] for parts in names if len(parts) > 1} == {"inputs"}, names
    assert {parts[2] for parts in names if len(parts) > 2} == {"functions", "items"}, names
    assert leftovers(temp) == []


def fail_once(item):
    """Fails the first time it sees an item (a marker file remembers), succeeds after."""
    x, marker_dir, how = item
    marker = Path(marker_dir, f"seen-{x}")
    if x == 2 and not marker.exists():
        marker.touch()
        if how == "die":
            os._exit(3)
        raise ValueError(f"first try of {x}")
    return x * 10


@pytest.mark.parametrize("how", ["raise", "die"])
def test_retries_rerun_failed_and_lost_calls(tmp_path, temp, how):
    items = [(x, str(tmp_path), how) for x in range(12)]
    assert hpcml.map(fail_once, items, workers=2, retries=1, chunk_size=2) == [x * 10 for x in range(12)]
    for p in tmp_path.glob("seen-*"):
        p.unlink()
    # A dead worker loses only the chunk it held (items 2 and 3), whatever the timing.
    error = "1 of 12 calls failed; first: replicate/000002: ValueError: first try of 2" if how == "raise" \
        else r"2 of 12 calls failed; first: replicate/000002: worker process died \(exit code 3\)"
    with pytest.raises(RunFailed, match=f"^{error}$"):
        hpcml.map(fail_once, items, workers=2, chunk_size=2)
    assert leftovers(temp) == []


def nap(x):
    if x == 3:
        time.sleep(120)
    return x


# A worker loads the function (imports this module) inside its first task, under that task's
# deadline: a limit a busy machine cannot miss.
LIMIT = 5


def test_timeout_fails_the_call_that_overran(temp):
    with pytest.raises(RunFailed, match=rf"^1 of 6 calls failed; first: replicate/000003: .*timeout_s={LIMIT}$"):
        hpcml.map(nap, range(6), workers=2, timeout_s=LIMIT)
    assert leftovers(temp) == []


def test_failure_message_is_the_same_with_and_without_out(tmp_path, temp):
    def bad(x):
        if x in (4, 9):
            raise KeyError(x)
        return x

    messages = []
    for out in (None, tmp_path / "kept"):
        with pytest.raises(RunFailed) as err:
            hpcml.map(bad, range(12), workers=2, out=out, chunk_size=5)
        messages.append(str(err.value).split(" (records in")[0])
    assert messages[0] == messages[1] == "2 of 12 calls failed; first: replicate/000004: KeyError: 4"
    assert leftovers(temp) == []


def test_bootstrap_without_out_equals_bootstrap_with_out(tmp_path, temp):
    x = np.random.default_rng(2).gamma(2.0, size=90)
    a = hpcml.bootstrap(np.mean, x, replicates=60, workers=2, seed=5)
    b = hpcml.bootstrap(np.mean, x, replicates=60, workers=1, seed=5, out=tmp_path / "boot")
    assert a.replicates.equals(b.replicates)
    assert (a.estimate, a.se, a.percentile, a.bca) == (b.estimate, b.se, b.percentile, b.bca)
    assert a.run_dir is None and b.run_dir == tmp_path / "boot"
    c = hpcml.bootstrap(np.mean, x, replicates=60, workers=2, seed=5, level=0.8)
    assert c.level == 0.8 and c.percentile[0] > a.percentile[0]
    assert leftovers(temp) == []


@pytest.mark.slow
def test_map_without_out_on_a_dask_local_cluster(tmp_path, temp):
    pytest.importorskip("distributed")
    want = expected_draws(30, seed=4)
    assert hpcml.map(draw, range(30), backend="dask", workers=2, seed=4, chunk_size=4) == want
    items = [(x, str(tmp_path), "raise") for x in range(8)]
    assert hpcml.map(fail_once, items, backend="dask", workers=2, retries=1) == [x * 10 for x in range(8)]
    with pytest.raises(RunFailed, match=f"1 of 5 calls failed; first: replicate/000003: .*timeout_s={LIMIT}"):
        hpcml.map(nap, range(5), backend="dask", workers=2, timeout_s=LIMIT)
    assert leftovers(temp) == []
