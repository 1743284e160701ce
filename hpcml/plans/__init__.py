"""Plans by name: each turns a model and a data set into independent tasks and owns their
shared draws, per-task view of the data, checks, summary and plots (one file per plan).

Adding a plan: a new file with a :class:`~hpcml.plans.base.Plan` subclass and its ``Options``,
decorated with ``@register_plan``, imported below (or ``hpcml.register_plan`` from outside the
package); the job spec picks up ``plan: {<name>: {...}}``.
"""
from __future__ import annotations

from hpcml.plans.base import PLANS, Plan, PlanOptions, Task, register_plan, task_rng

# Each module registers its plan; imported in the order the job spec lists them.
from hpcml.plans import bootstrap, cv, sweep, replicate, fit, shards, row_blocks  # noqa: E402,F401  isort: skip

__all__ = ["PLANS", "Plan", "PlanOptions", "Task", "plan_tasks", "register_plan", "task_rng"]


def plan_tasks(job) -> list[Task]:
    """The job's tasks with stable ids (``bootstrap/000731``), in index order."""
    return job.plan.tasks(job)
