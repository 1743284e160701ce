"""A task's record, ok or failed: built here wherever a task ends (a worker, the driver, an MPI
rank, the ``engine: spark`` fit, a DDP training), so every record carries the same fields."""
from __future__ import annotations

from typing import Any


def ok_record(task_id: str, index: int, attempt: int, seconds: float, outputs: dict[str, Any]) -> dict[str, Any]:
    """The record of a task that finished: its outputs after the common fields."""
    return {"task_id": task_id, "task_index": index, "status": "ok", "attempt": attempt, "seconds": seconds,
            **outputs}


def failure_record(index: int, task_id: str, error: str, traceback_text: str, attempt: int,
                   seconds: float = 0.0) -> dict[str, Any]:
    """The record of a failed task, wherever the failure is seen (worker, driver, MPI rank 0)."""
    return {"task_id": task_id, "task_index": index, "status": "failed", "attempt": attempt, "seconds": seconds,
            "error": error, "traceback": traceback_text}


def failure_line(err: BaseException) -> str:
    """An exception as the one line a failed record (and ``hpcml status``) shows."""
    text = f"{type(err).__name__}: {err}".strip()
    return text.splitlines()[0] if text else type(err).__name__
