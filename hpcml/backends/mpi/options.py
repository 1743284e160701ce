"""The ``mpi`` backend's options (``backend: {name: mpi, ...}`` in the spec)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from hpcml.errors import SpecError


class MPIOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["static", "dynamic"] = Field("dynamic", description="static split or rank 0 hands out chunks")
    layout: Literal["cyclic", "block"] = Field("cyclic", description="static: which rank takes which task")
    threads_per_rank: int | None = Field(None, gt=0, description="threads per rank (hybrid runs); sets threads_per_task")
    rank0_works: bool = Field(True, description="dynamic: rank 0 runs chunks too, besides handing them out")
    heartbeat_s: float = Field(2.0, gt=0, description="seconds between heartbeats")
    dead_after_s: float = Field(30.0, gt=0, description="a rank silent this long is declared lost")
    deadline_s: float | None = Field(None, gt=0, description="wall-clock limit of the whole run (unfinished work is lost)")

    @field_validator("dead_after_s")
    @classmethod
    def _longer_than_beat(cls, value: float, info):
        beat = info.data.get("heartbeat_s")
        if beat is not None and value < 2 * beat:
            raise ValueError(f"must be at least twice heartbeat_s ({beat:g})")
        return value


def check_fork_safety(job, mode: str, field: str = "backend.mode") -> None:
    """Refuse, before any MPI start or submission, a job whose tasks fork R (doParallel with
    ``threads_per_task`` > 1) in dynamic mode: a forked child of a rank that runs the dynamic
    scheduler's threads can wait forever on a lock one of those threads held."""
    if mode != "static" and job.model.forks_in_task and job.spec.threads_per_task > 1:
        raise SpecError.one(field, mode,
                            f"model kind {job.model.name!r} forks R processes inside a task (doParallel with "
                            f"threads_per_task {job.spec.threads_per_task}), and forking a rank that runs the "
                            "dynamic scheduler's threads hangs; use static mode (hpcml.pack --mode static, hpcml submit "
                            "--pack-mode static, or backend mode: static), or threads_per_task: 1")
