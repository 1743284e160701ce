"""Launchers: pure ``command -> command`` functions that start one command on many ranks.

Kept apart from schedulers (as in Parsl): the batch script decides *where* (nodes, time,
partition); a launcher decides *how* the ranks start inside that allocation.
"""
from __future__ import annotations

import os
import shlex
from typing import Callable, Sequence

Launcher = Callable[..., str]


def _join(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def srun(command: str, *, ntasks: int, cpus_per_task: int = 1, extra: Sequence[str] = ()) -> str:
    """Slurm's own launcher: inherits the allocation; one rank per task."""
    return f"{_join(['srun', f'--ntasks={ntasks}', f'--cpus-per-task={cpus_per_task}', *extra])} {command}"


def mpirun(command: str, *, ntasks: int, cpus_per_task: int = 1, extra: Sequence[str] = ()) -> str:
    """Open MPI / MPICH ``mpirun``; ``--bind-to none`` leaves threading to threads_per_task."""
    binding = ["--bind-to", "none"] if cpus_per_task > 1 else []
    return f"{_join(['mpirun', '-n', str(ntasks), *binding, *extra])} {command}"


def ibrun(command: str, *, ntasks: int, cpus_per_task: int = 1, extra: Sequence[str] = ()) -> str:
    """TACC's ``ibrun``: takes the rank count from the allocation itself."""
    return f"{_join(['ibrun', *extra])} {command}"


def single(command: str, *, ntasks: int = 1, cpus_per_task: int = 1, extra: Sequence[str] = ()) -> str:
    """No launcher: one process (a job array element, a laptop)."""
    return command


LAUNCHERS: dict[str, Launcher] = {"srun": srun, "mpirun": mpirun, "ibrun": ibrun, "none": single}


def launch(name: str, command: str, *, ntasks: int, cpus_per_task: int = 1, extra: Sequence[str] = ()) -> str:
    return LAUNCHERS[name](command, ntasks=ntasks, cpus_per_task=cpus_per_task, extra=extra)


# What launchers put in each rank's environment (Open MPI, MPICH/Intel MPI/PMI, PMIx, Slurm's srun).
_RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID")
_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS", "MPI_LOCALNRANKS")


def launcher_rank() -> int:
    """This process's rank according to the launcher's environment (0 when there is none).

    Read without starting MPI, so errors found before MPI starts are printed by one rank only.
    """
    for var in _RANK_VARS:
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def launcher_size() -> tuple[str, int] | None:
    """(variable, tasks) when a launcher started more than one task, else None."""
    for var in _SIZE_VARS:
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 1:
            return var, int(value)
    return None
