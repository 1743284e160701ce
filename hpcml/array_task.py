"""One element of a batch job array: run its share of the tasks, write chunk files, exit.

    python -m hpcml.array_task RUN_DIR/spec.json --index $SLURM_ARRAY_TASK_ID --of N

The work is done by :mod:`hpcml.drivers.array`; this module is only the command line.
Exit status: 0 all tasks of the share ok, 1 some failed, 2 bad input.
"""
from __future__ import annotations

import argparse
import sys
import time

from hpcml.errors import SpecError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpcml.array_task", description=__doc__.splitlines()[0])
    parser.add_argument("spec", help="the run's spec (RUN_DIR/spec.json)")
    parser.add_argument("--index", type=int, required=True, help="this element ($SLURM_ARRAY_TASK_ID)")
    parser.add_argument("--of", type=int, required=True, help="number of array elements")
    parser.add_argument("--deadline-s", type=float, default=None,
                        help="seconds from the start after which no new chunk starts (the walltime less a margin)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    from hpcml.report.console import print_spec_error, say  # loaded after argument parsing: --help starts fast
    from hpcml.drivers.array import run_element  # loaded after argument parsing: --help starts fast

    try:
        ok, failed, left = run_element(args.spec, args.index, args.of, args.deadline_s)
    except SpecError as err:
        return print_spec_error(err)
    later = f", {left} left for a resubmission with --resume (deadline reached)" if left else ""
    say(f"element {args.index}/{args.of}: {ok} task(s) ok, {failed} failed{later} in {time.perf_counter() - t0:.1f}s")
    return 1 if failed or left else 0


if __name__ == "__main__":
    sys.exit(main())
