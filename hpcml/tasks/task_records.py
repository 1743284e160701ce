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


MESSAGE_CHARS = 4000  # of an exception's message kept in a record's ``error`` (its traceback has it all)


def failure_message(err: BaseException) -> str:
    """An exception as a failed record's ``error``: its type and whole message, every line
    (a message whose detail is on its second line is no use cut to the first)."""
    text = f"{type(err).__name__}: {err}".strip()
    if not text:
        return type(err).__name__
    return text if len(text) <= MESSAGE_CHARS else text[:MESSAGE_CHARS] + " [...]"
