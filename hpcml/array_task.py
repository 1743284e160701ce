"""One element of a batch job array: run its share of the tasks, write chunk files, exit.

    python -m hpcml.array_task RUN_DIR/spec.json --index $SLURM_ARRAY_TASK_ID --of N

Element ``i`` of ``N`` takes a contiguous block of task indices (sizes differ by at most one),
skips tasks that already have an ``ok`` record (a resubmitted array only redoes what is
missing), and writes its chunks into the run directory like any worker. ``hpcml collect``
(the dependent job) consolidates the run when every element has ended.
Exit status: 0 all tasks of the share ok, 1 some failed, 2 bad input.
"""
from __future__ import annotations

import argparse
import sys
import time

from hpcml.errors import SpecError
from hpcml.plan import auto_chunk_size, make_chunks, plan_tasks, shard_bounds
from hpcml.worker import WorkOrder, execute_chunk


def share(n_tasks: int, index: int, of: int) -> range:
    start, stop = shard_bounds(n_tasks, index, of)
    return range(start, stop)


def run_share(spec_path: str, index: int, of: int) -> tuple[int, int]:
    """Run element ``index`` of ``of``; returns (tasks ok, tasks failed)."""
    from hpcml.spec import load_job
    from hpcml.store import RunStore

    job = load_job(spec_path)
    store = RunStore(job.output)
    if not store.exists():
        raise SpecError.one("output", str(job.output), "no prepared run directory here (hpcml submit creates it)")
    if not 0 <= index < of:
        raise SpecError.one("index", index, f"must be in 0..{of - 1}")
    done = store.completed()
    todo = [i for i in share(len(plan_tasks(job)), index, of) if i not in done]
    job_json = job.to_json()
    ok = 0
    for attempt in range(job.spec.retries + 1):
        if not todo:
            break
        size = job.spec.backend.chunk_size or auto_chunk_size(len(todo), 1)
        failed: list[int] = []
        for chunk in make_chunks(todo, size):
            result = execute_chunk(WorkOrder(job_json, str(store.path.resolve()), chunk, attempt))
            ok += len(result.ok)
            failed += sorted(result.failed)
        todo = failed
    return ok, len(todo)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpcml.array_task", description=__doc__.splitlines()[0])
    parser.add_argument("spec", help="the run's spec (RUN_DIR/spec.json)")
    parser.add_argument("--index", type=int, required=True, help="this element ($SLURM_ARRAY_TASK_ID)")
    parser.add_argument("--of", type=int, required=True, help="number of array elements")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        if args.of < 1:
            raise SpecError.one("of", args.of, "must be at least 1")
        ok, failed = run_share(args.spec, args.index, args.of)
    except SpecError as err:
        for line in err.lines():
            print(f"error: {line}", file=sys.stderr)
        return 2
    print(f"element {args.index}/{args.of}: {ok} task(s) ok, {failed} failed in {time.perf_counter() - t0:.1f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
