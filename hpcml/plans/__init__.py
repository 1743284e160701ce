"""Plans by name: each turns a model and a data set into independent tasks and owns their
shared draws, per-task view of the data, checks, summary and plots (one file per plan).

Adding a plan: a new file with a :class:`~hpcml.plans.base.Plan` subclass and its
``Options``, listed in ``PLANS`` below; the job spec picks up ``plan: {<name>: {...}}``.
"""
from __future__ import annotations

from hpcml.plans.base import Plan, Task, task_rng
from hpcml.plans.bootstrap import BootstrapPlan
from hpcml.plans.cv import CVPlan
from hpcml.plans.fit import FitPlan
from hpcml.plans.replicate import ReplicatePlan
from hpcml.plans.shards import ShardsPlan
from hpcml.plans.sweep import SweepPlan

PLANS: dict[str, Plan] = {p.name: p for p in (BootstrapPlan(), CVPlan(), SweepPlan(), ReplicatePlan(), FitPlan(),
                                             ShardsPlan())}

__all__ = ["PLANS", "Plan", "Task", "get_plan", "plan_tasks", "task_rng"]


def get_plan(name: str) -> Plan:
    return PLANS[name]


def plan_tasks(job) -> list[Task]:
    """The job's tasks with stable ids (``bootstrap/000731``), in index order."""
    return job.plan.tasks(job)
