"""Data-parallel training of one ``cnn`` model across N ranks with torch DDP.

Unlike every other plan (many independent tasks), this trains ONE model with N processes:

    torchrun --standalone --nproc_per_node=2 -m hpcml.ddp job.yaml
    mpirun -n 2 python -m hpcml.ddp job.yaml          # Open MPI, MPICH, Intel MPI
    srun -n 2 python -m hpcml.ddp job.yaml            # Slurm
    ibrun python -m hpcml.ddp job.yaml                # TACC (PMI_RANK / PMI_SIZE)

Rank and world size come from the launcher's environment (:func:`rank_from_env`); the
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

import argparse
import logging
import sys

from hpcml.errors import SpecError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hpcml.ddp", description=__doc__.split("\n\n")[0],
                                 epilog="Start one process per rank with torchrun, mpirun, srun or ibrun.")
    ap.add_argument("spec", help="job spec (YAML) with model.kind cnn and plan fit")
    ap.add_argument("--out", default=None, help="run directory (default: the spec's output)")
    ap.add_argument("--backend", default="auto", choices=["auto", "gloo", "nccl"],
                    help="torch.distributed backend (auto: nccl on CUDA, else gloo)")
    ap.add_argument("--resume", action="store_true", help="continue a run dir; training resumes from checkpoints")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from hpcml.console import print_spec_error, say
    from hpcml.drivers.ddp import load_ddp_job, run_ddp
    from hpcml.launchers import rank_from_env

    try:
        info = rank_from_env()
        job = load_ddp_job(args.spec, args.out)
        record = run_ddp(job, info, backend=args.backend, resume=args.resume, overwrite=args.overwrite)
    except SpecError as e:
        return print_spec_error(e)
    if record is not None:
        keys = ("world_size", "test_accuracy", "val_accuracy", "epochs_run", "seconds_per_epoch", "seconds")
        say(" ".join(f"{k}={record[k]:.6g}" if isinstance(record[k], float) else f"{k}={record[k]}"
                     for k in keys if k in record))
        say(f"run directory: {job.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
