"""Which columns of a task's record are not the model's outputs: hpcml's bookkeeping, and the
columns and task parameters of the registered plans.

Each plan declares its own (``Plan.records``: cv's ``repeat`` and ``fold``, a shard's ``rows``;
``Plan.parameters``: the values a task is given, a command's ``{fold}``), and
``hpcml.plans.register_plan`` adds them here. Summaries, R kinds and the command kind read
them from here, so none of them knows any plan by name.
"""
from __future__ import annotations

import json
from typing import Any

REQUIRED = ("task_id", "task_index", "status", "attempt")
BOOKKEEPING = ("task_id", "task_index", "status", "attempt", "seconds")
FAILURE_ONLY = ("error", "traceback")

_PLAN_COLUMNS: set[str] = set()
_TASK_PARAMETERS: set[str] = set()


def reserve_plan_columns(records: tuple[str, ...], parameters: tuple[str, ...]) -> None:
    """A registered plan's record columns and task parameters (see ``Plan.records``)."""
    _PLAN_COLUMNS.update(records)
    _TASK_PARAMETERS.update(parameters)


def not_outputs() -> frozenset[str]:
    """Columns hpcml writes into a record itself (bookkeeping and every plan's own): never
    summarized as outputs, and an R function's output of such a name is renamed."""
    return frozenset(BOOKKEEPING + FAILURE_ONLY) | _PLAN_COLUMNS


def task_parameters() -> frozenset[str]:
    """The task parameters any registered plan gives its tasks (a command's placeholders)."""
    return frozenset(_TASK_PARAMETERS)


def param_columns(point: dict[str, Any]) -> dict[str, Any]:
    """A sweep's grid point as record columns: ``param_<name>`` for each parameter, a mapping
    one column per key (``param_arch_params.c1``; nested mappings dotted further, an empty one
    no column), numbers and strings as they are, so each column keeps its type; a list as JSON
    text (one value the leaderboard can group by)."""
    out: dict[str, Any] = {}
    for name, value in point.items():
        if isinstance(value, dict):
            out.update(param_columns({f"{name}.{k}": v for k, v in value.items()}))
        elif isinstance(value, (list, tuple)):
            out[f"param_{name}"] = json.dumps(value, sort_keys=True, default=str)
        else:
            out[f"param_{name}"] = value
    return out
