"""Automatic chunk sizes: whole task groups (an R loop's 256 iterations to a call, a batched
bootstrap's 64 replicates), but never so few chunks that a worker gets none."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from hpcml.tasks.chunks import chunk_size_for, make_chunks


def job_with_group(group: int, chunk_size: int | None = None):
    plan = SimpleNamespace(group_size=lambda job: group)
    return SimpleNamespace(spec=SimpleNamespace(backend=SimpleNamespace(chunk_size=chunk_size)), plan=plan)


@pytest.mark.parametrize("n, workers, group, sizes", [
    (24, 2, 256, [12, 12]),            # the notes' 24-iteration loop: both workers, not one
    (300, 2, 256, [150, 150]),
    (2000, 2, 256, [256] * 7 + [208]),  # many: whole groups, 4 chunks a worker
    (1000, 2, 64, [64] * 15 + [40]),   # a batched bootstrap
    (100, 2, 64, [50, 50]),
    (40, 4, 1, [2] * 20),              # no groups: about 8 chunks a worker
    (1, 2, 256, [1]),
])
def test_chunks_keep_whole_groups_but_give_every_worker_one(n, workers, group, sizes):
    chunks = make_chunks(range(n), chunk_size_for(job_with_group(group), n, workers))
    assert [len(c) for c in chunks] == sizes


def test_a_chunk_size_in_the_spec_is_kept():
    assert chunk_size_for(job_with_group(256, chunk_size=5), 24, 2) == 5
