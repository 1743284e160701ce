"""Launchers: pure ``command -> command`` functions that start one command on many ranks.

Kept apart from schedulers (as in Parsl): the batch script decides *where* (nodes, time,
partition); a launcher decides *how* the ranks start inside that allocation.
"""
from __future__ import annotations

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
