"""Data-parallel training of one ``cnn`` model across N ranks with torch DDP.

    torchrun --standalone --nproc_per_node=2 -m hpcml.ddp job.yaml
    mpirun -n 2 python -m hpcml.ddp job.yaml          # also srun, ibrun, or one process

The command line only; the run is :mod:`hpcml.drivers.data_parallel`'s (docs/cnn.md).
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
    from hpcml.report.console import print_spec_error, say  # torch loads only when training starts
    from hpcml.drivers.data_parallel import load_ddp_job, run_ddp  # torch loads only when training starts
    from hpcml.launchers import rank_from_env  # torch loads only when training starts

    try:
        info = rank_from_env()
        job = load_ddp_job(args.spec, args.out)
        record = run_ddp(job, info, backend=args.backend, resume=args.resume, overwrite=args.overwrite)
    except SpecError as e:
        return print_spec_error(e)
    if record is not None:
        keys = ("world_size", "test_split_accuracy", "val_accuracy", "epochs_run", "seconds_per_epoch", "seconds")
        say(" ".join(f"{k}={record[k]:.6g}" if isinstance(record[k], float) else f"{k}={record[k]}"
                     for k in keys if k in record))
        say(f"run directory: {job.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
