"""Adding a backend, as docs/architecture.md says: a Backend subclass registered from outside
the package, run end to end; its results equal the local backend's bit for bit."""
from __future__ import annotations

from typing import Iterable, Iterator

from conftest import assert_same_results, small_spec

import hpcml
from hpcml.backends import backend_names
from hpcml.backends.base import Backend
from hpcml.tasks.worker import ChunkResult, WorkOrder, execute_chunk


@hpcml.register_backend
class InlineBackend(Backend):
    """Every chunk in this process, one after the other, newest first (order must not matter)."""

    name = "inline-test"

    def run(self, orders: Iterable[WorkOrder]) -> Iterator[ChunkResult]:
        for order in reversed(list(orders)):
            yield execute_chunk(order)


def test_a_registered_backend_runs_a_job_like_the_local_one(tmp_path):
    assert "inline-test" in backend_names()
    spec = small_spec(tmp_path, plan={"bootstrap": {"replicates": 30}}, backend={"name": "local", "workers": 2})
    local = hpcml.run(spec, progress=False)
    inline = hpcml.run({**spec, "backend": {"name": "inline-test", "chunk_size": 4}, "output": str(tmp_path / "b")},
                       progress=False)
    assert inline.ok and inline.summary["run"]["backend"] == "inline-test"
    assert_same_results(local.results, inline.results)
    assert inline.summary["table"] == local.summary["table"]
