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
