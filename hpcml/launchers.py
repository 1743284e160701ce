"""Launchers: pure ``command -> command`` functions that start one command on many ranks.

Kept apart from schedulers (as in Parsl): the batch script decides *where* (nodes, time,
partition); a launcher decides *how* the ranks start inside that allocation.
"""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from hpcml.errors import SpecError

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


# (launcher, rank, world size, local rank): what each launcher puts in its ranks' environment,
# most specific first (torchrun inside a Slurm allocation is torchrun). Slurm's world size is
# the step's (srun): a batch script's own shell also has SLURM_PROCID=0 and SLURM_NTASKS=N,
# but it is one process, not rank 0 of N.
LAUNCHER_VARS: list[tuple[str, str, str, str]] = [
    ("torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK"),
    ("openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),
    ("mvapich", "MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_LOCAL_RANK"),
    ("pmi", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"),
    ("slurm", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID"),
]


@dataclass(frozen=True)
class RankInfo:
    rank: int
    world: int
    local_rank: int
    launcher: str  # torchrun | openmpi | mvapich | pmi | slurm | single


def rank_from_env(env: Mapping[str, str] | None = None) -> RankInfo:
    """This process's rank, world size and local rank, from whichever launcher started it.

    Raises SpecError naming the variable when a launcher's variables are not valid ranks.
    """
    env = os.environ if env is None else env
    for name, r, w, lr in LAUNCHER_VARS:
        if r in env and w in env:
            try:
                rank, world, local = int(env[r]), int(env[w]), int(env.get(lr, env[r]))
            except ValueError:
                raise SpecError.one(f"env.{r}", env[r], "rank variables must be integers") from None
            if not 0 <= rank < world:
                raise SpecError.one(f"env.{r}", rank, f"rank must be in [0, {world}) ({w}={world})")
            return RankInfo(rank, world, local, name)
    return RankInfo(0, 1, 0, "single")


def launcher_rank() -> int:
    """This process's rank according to the launcher's environment (0 when there is none).

    Read without starting MPI, so errors found before MPI starts are printed by one rank
    only; never raises (a malformed variable counts as rank 0).
    """
    try:
        return rank_from_env().rank
    except SpecError:
        return 0


def launcher_size() -> tuple[str, int] | None:
    """(variable, tasks) when a launcher started more than one task, else None."""
    for _, _, var, _ in LAUNCHER_VARS:
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 1:
            return var, int(value)
    return None
