"""Pack a job's tasks onto the ranks of an MPI launch: ``python -m hpcml.pack job.yaml``.

    mpirun -n 48 python -m hpcml.pack job.yaml [--mode static|dynamic] [--layout cyclic|block]
           [--resume] [--overwrite] [--out DIR] [--threads-per-rank N] [--quiet]

The replacement for the per-rank "bundler" script under ``ibrun``/``srun``/``mpirun``: every
rank runs this same command; rank 0 prints the summary. Exit 0 all done, 1 some tasks
failed or a rank was lost, 2 bad input (printed once, by rank 0).

Both modes are driven by :mod:`hpcml.drivers.mpi`; this module is only the command line.
"""
from __future__ import annotations

import argparse
import sys

from hpcml.errors import SpecError


def _load(path: str, args: argparse.Namespace):
    from hpcml.spec import load_job, read_spec_file  # loaded after argument parsing: --help starts fast

    raw = read_spec_file(path)
    if isinstance(raw, dict) and isinstance(raw.get("backend"), dict) and raw["backend"].get("name", "local") != "mpi":
        # Another backend's options mean nothing here; keep only what every backend shares.
        raw["backend"] = {k: v for k, v in raw["backend"].items() if k == "chunk_size"}
    overrides = {"backend.name": "mpi", "backend.mode": args.mode, "backend.layout": args.layout,
                 "backend.threads_per_rank": args.threads_per_rank, "backend.deadline_s": args.deadline_s,
                 "output": args.out}
    return load_job(raw, **overrides)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpcml.pack", description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", help="job spec (YAML)")
    parser.add_argument("--mode", choices=["static", "dynamic"], default=None, help="default: the spec's, else dynamic")
    parser.add_argument("--layout", choices=["cyclic", "block"], default=None, help="static mode: task -> rank")
    parser.add_argument("--resume", action="store_true", help="run only tasks with no result in the run directory")
    parser.add_argument("--overwrite", action="store_true", help="delete an existing run directory first")
    parser.add_argument("--out", default=None, help="run directory")
    parser.add_argument("--threads-per-rank", type=int, default=None, help="threads per rank (hybrid runs)")
    parser.add_argument("--deadline-s", type=float, default=None,
                        help="seconds from the start after which no new chunk starts (hpcml submit: the walltime "
                             "less a margin); what is left is rerun by --resume")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress, no table")
    args = parser.parse_args(argv)
    from hpcml.report.console import print_spec_error, quiet_workers, report, set_up_logging  # loaded after argument parsing: --help starts fast

    set_up_logging(args.quiet)
    from hpcml.drivers.dispatch import run_job  # loaded after argument parsing: --help starts fast

    try:
        job = _load(args.spec, args)  # backend mpi: every rank runs its part (engine: spark is refused)
        with quiet_workers(args.quiet):
            result = run_job(job, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet)
    except SpecError as err:
        return print_spec_error(err)
    if result is None:  # not rank 0: rank 0 reports
        return 0
    return report(result, f"{job.spec.name}: {job.plan_kind} / {job.model.name}", args.quiet)


if __name__ == "__main__":
    sys.exit(main())
