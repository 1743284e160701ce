"""Plans build any one task on its own exactly as in the full list, so workers never build
every task of a large job."""
from __future__ import annotations

import pytest

from hpcml.spec import load_job

PLANS = {
    "sweep": {"sweep": {"grid": {"k": [2, 3, 4], "n_init": [1, 2]}, "repeats": 3}},
    "cv": {"cv": {"folds": 4, "repeats": 3}},
    "bootstrap": {"bootstrap": {"replicates": 5}},
    "shards": {"shards": {"n": 4}},
    "replicate": {"replicate": {"n": 3}},
    "fit": {"fit": {}},
}


@pytest.mark.parametrize("name", list(PLANS))
def test_one_task_equals_the_same_task_of_the_list(name):
    job = load_job({"name": "x", "data": {"source": "sklearn:iris"}, "model": {"kind": "kmeans", "k": 2},
                    "plan": PLANS[name]})
    every = job.plan.tasks(job)
    assert job.n_tasks == len(every) > 0
    assert [job.plan.task(job, i) for i in range(len(every))] == every
    assert len({t.id for t in every}) == len(every) and every[0].id == f"{name}/000000"


def test_task_order_is_the_documented_one():
    """Independent of the plans' code: a sweep walks the grid in itertools.product order with
    each point's repeats in a row; CV walks folds within each repeat."""
    import itertools

    grid = {"k": [2, 3, 4], "n_init": [1, 2]}
    job = load_job({"name": "x", "data": {"source": "sklearn:iris"}, "model": {"kind": "kmeans", "k": 2},
                    "plan": {"sweep": {"grid": grid, "repeats": 2}}})
    expected = [{"repeat": r, "params": dict(zip(grid, values))}
                for values in itertools.product(*grid.values()) for r in range(2)]
    assert [t.params for t in job.plan.tasks(job)] == expected
    job = load_job({"name": "x", "data": {"source": "sklearn:iris"}, "model": {"kind": "kmeans", "k": 2},
                    "plan": {"cv": {"folds": 3, "repeats": 2}}})
    assert [t.params for t in job.plan.tasks(job)] == [{"repeat": r, "fold": f} for r in range(2) for f in range(3)]


def test_what_tasks_share_is_not_built_per_repeat_or_task(monkeypatch):
    """A CV of 100,000 repeats draws a repeat's fold labels when a task needs them (not
    repeats x rows labels up front), and a sweep's check visits each grid point once, never
    building its tasks."""
    import tracemalloc
    import types

    from hpcml.plans.cv import cv_folds

    job = load_job({"name": "x", "data": {"source": "sklearn:iris"}, "model": {"kind": "kmeans", "k": 2},
                    "plan": {"cv": {"folds": 5, "repeats": 100_000}}, "seed": 3})
    tracemalloc.start()
    shared = job.plan.shared(job, 100)
    labels = shared["folds"](99_999)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert (labels == cv_folds(3, 100, 5, 99_999)).all()
    assert peak < 1 << 20, peak  # 100,000 x 100 labels would be 80 MB

    job = load_job({"name": "x", "data": {"source": "sklearn:iris"}, "model": {"kind": "kmeans", "k": 2},
                    "plan": {"sweep": {"grid": {"k": [2, 3]}, "repeats": 10**6}}})
    built = []
    real = job.plan.params_at
    monkeypatch.setattr(job.plan, "params_at", lambda options, index: built.append(index) or real(options, index))
    assert job.plan.check(job, types.SimpleNamespace(n=150)) == []
    assert built == [0, 10**6]  # the two grid points, not two million tasks
