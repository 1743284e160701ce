"""Data-parallel training of one ``cnn`` model across N ranks with torch DDP.

Unlike every other plan (many independent tasks), this trains ONE model with N processes:

    torchrun --standalone --nproc_per_node=2 -m hpcml.ddp job.yaml
    mpirun -n 2 python -m hpcml.ddp job.yaml          # Open MPI, MPICH, Intel MPI
    srun -n 2 python -m hpcml.ddp job.yaml            # Slurm
    ibrun python -m hpcml.ddp job.yaml                # TACC (PMI_RANK / PMI_SIZE)

Rank and world size come from the launcher's environment (``launchers.rank_from_env``); the
rendezvous address from ``MASTER_ADDR``/``MASTER_PORT`` when set, else rank 0's host and
a free port broadcast over MPI (mpi4py), else the first host of the Slurm step. gloo on
the CPU, nccl when the model trains on CUDA (one GPU per local rank).

The job is an ordinary spec with ``model.kind: cnn`` and ``plan: fit``; the run directory
is an ordinary one (results.parquet, summary.json, artifacts) written by rank 0, with a
``world_size`` column. How the N ranks split the work is in ``hpcml.models.cnn.train``: each
global batch of ``batch_size`` rows is shared out, so N ranks take the steps one process
would (same accuracy up to float rounding), in less time when the cores are free.
"""
from __future__ import annotations

import datetime
import logging
import os
import socket
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Mapping

from hpcml.errors import SpecError
from hpcml.launchers import RankInfo
from hpcml.models.cnn.train import resolve_device
from hpcml.models.cnn.train import DistContext
from hpcml.drivers.attempts import refuse_retries_and_timeout
from hpcml.drivers.run import check_job
from hpcml.spec import load_job
from hpcml.data import load_dataset
from hpcml.models.cnn.train import distributed
from hpcml.drivers.finish import finish
from hpcml.plans import plan_tasks
from hpcml.rundir.opening import open_run
from hpcml.rundir.store import RunStore, write_chunk_records
from hpcml.tasks.task_records import ok_record
from hpcml.tasks.worker import run_task
from hpcml.rundir.store import Chunk

log = logging.getLogger("hpcml.ddp")
DEFAULT_PORT = 29500

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _slurm_first_host(env: Mapping[str, str]) -> str | None:
    nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
    if not nodes:
        return None
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True, text=True, timeout=30)
        return out.stdout.split()[0] if out.returncode == 0 and out.stdout.split() else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def rendezvous(info: RankInfo, env: Mapping[str, str] | None = None) -> tuple[str, int]:
    """MASTER_ADDR and MASTER_PORT every rank agrees on."""
    env = os.environ if env is None else env
    if env.get("MASTER_ADDR") and env.get("MASTER_PORT"):
        return env["MASTER_ADDR"], int(env["MASTER_PORT"])
    if info.world == 1:
        return "127.0.0.1", _free_port()
    if info.launcher in ("openmpi", "mvapich", "pmi"):
        try:
            from mpi4py import MPI
        except ImportError:
            pass
        else:  # rank 0 picks a free port; everyone learns it over MPI (no fixed port to collide on)
            comm = MPI.COMM_WORLD
            hosts = comm.allgather(socket.gethostname())
            port = comm.bcast(_free_port() if info.rank == 0 else None, root=0)
            # All ranks on one node: loopback needs no name resolution nor an open interface.
            return ("127.0.0.1" if len(set(hosts)) == 1 else hosts[0]), int(port)
    host = env.get("MASTER_ADDR") or (_slurm_first_host(env) if info.launcher == "slurm" else None) or "127.0.0.1"
    # A port derived from the job id, so two Slurm jobs on one node don't collide.
    port = int(env.get("MASTER_PORT") or DEFAULT_PORT + int(env.get("SLURM_JOB_ID", "0")) % 10000)
    return host, port


def _device_for(job, info: RankInfo):
    import torch

    dev = resolve_device(getattr(job.params, "device", "cpu"))
    if dev.type == "cuda":
        torch.cuda.set_device(info.local_rank % torch.cuda.device_count())
    return dev


def init_process_group(info: RankInfo, backend: str, timeout_s: float = 300):
    """Start torch.distributed for this rank; returns the DistContext ``train`` uses."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    if info.launcher == "torchrun":
        init = "env://"  # torchrun's agent already serves the store at MASTER_ADDR:MASTER_PORT
    else:
        addr, port = rendezvous(info)
        init = f"tcp://{addr}:{port}"
    dist.init_process_group(backend, init_method=init, rank=info.rank, world_size=info.world,
                            timeout=datetime.timedelta(seconds=timeout_s))
    ops = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}

    def all_reduce(t, op: str) -> None:
        dist.all_reduce(t, op=ops[op])

    def wrap(model):
        dev = next(model.parameters()).device
        return DistributedDataParallel(model, device_ids=[dev.index or 0] if dev.type == "cuda" else None)

    return DistContext(rank=info.rank, world=info.world, wrap=wrap, all_reduce=all_reduce)


def load_ddp_job(spec: str | Path, out: str | None = None):
    """The job, checked for what a DDP run needs (SpecError names the field otherwise)."""

    job = load_job(spec, output=out)
    refuse_retries_and_timeout(job, "data-parallel training trains one model across all ranks")
    if job.spec.model.kind != "cnn":
        raise SpecError.one("model.kind", job.spec.model.kind, "data-parallel training needs the 'cnn' kind")
    if not job.plan.single_fit:
        raise SpecError.one("plan", job.plan_kind, "data-parallel training trains one model: use 'plan: {fit: {}}'")
    check_job(job)
    return job


def run_ddp(job, info: RankInfo, *, backend: str = "auto", resume: bool = False,
            overwrite: bool = False) -> dict[str, Any] | None:
    """Train the job's one model across all ranks; rank 0 writes the run dir and returns the record."""
    import torch
    import torch.distributed as dist
    from threadpoolctl import threadpool_limits

    t0 = time.perf_counter()
    device = _device_for(job, info)
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    ctx = init_process_group(info, backend)
    with ExitStack() as stack:  # on every exit rank 0 closes the run directory, then the group ends
        stack.callback(dist.destroy_process_group)
        store, run = RunStore(job.output), None
        problem: list[Any] = [None]
        if info.rank == 0:
            try:
                run = stack.enter_context(open_run(job, resume=resume, overwrite=overwrite))
            except SpecError as e:
                problem = [e.problems]
        dist.broadcast_object_list(problem, src=0)  # every rank stops, or none
        if problem[0] is not None:
            raise SpecError(problem[0])
        if run is not None:
            run.keep()  # every rank trains from here
        task = plan_tasks(job)[0]
        if resume and 0 in store.completed():
            return None
        data = load_dataset(job)
        threads = job.spec.threads_per_task
        with threadpool_limits(limits=threads), distributed(ctx):
            torch.set_num_threads(threads)
            t1 = time.perf_counter()
            outputs = run_task(job, data, task, str(store.path), {})
        record = ok_record(task.id, task.index, 0, time.perf_counter() - t1, {**outputs, "world_size": info.world})
        dist.barrier()
        if info.rank != 0:
            return None
        write_chunk_records(store.path, _one_chunk(), [record])
        finish(job, store, time.perf_counter() - t0)
        return record


def _one_chunk():
    return Chunk((0,))
