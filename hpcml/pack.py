"""Pack a job's tasks onto the ranks of an MPI launch: ``python -m hpcml.pack job.yaml``.

    mpirun -n 48 python -m hpcml.pack job.yaml [--mode static|dynamic] [--layout cyclic|block]
           [--resume] [--overwrite] [--out DIR] [--threads-per-rank N] [--quiet]

The replacement for the per-rank "bundler" script under ``ibrun``/``srun``/``mpirun``: every
rank runs this same command; rank 0 prints the summary. Exit 0 all done, 1 some tasks
failed or a rank was lost, 2 bad input (printed once, by rank 0).

This module also holds the static mode (no coordinator); the dynamic mode and the shared
machinery (heartbeats, bounded waits) live in ``hpcml.backends.mpi``.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

from .errors import SpecError
from .plan import Chunk, auto_chunk_size, make_chunks, plan_tasks
from .tasks import WorkOrder, execute_chunk

log = logging.getLogger("hpcml.mpi")


def run_static(session, job, *, resume: bool, overwrite: bool, progress: bool):
    """Static packing: rank 0 prepares, every rank runs its own share, rank 0 consolidates."""
    from .backends.mpi import TAG_PREP, RankLost, rank_share, wait_message
    from .progress import Progress
    from .runner import check_job, finish
    from .store import RunStore

    t0 = time.perf_counter()
    comm, rank, size, live, opts = session.comm, session.rank, session.size, session.live, session.options
    store = RunStore(job.output)
    if rank == 0:
        # Prepare before anyone writes: the other ranks wait for this message (a barrier).
        error, message = None, ("error", None)
        try:
            check_job(job)
            store.prepare(job, resume=resume, overwrite=overwrite)
            done = store.completed() if resume else set()
            message = ("ok", [t.index for t in plan_tasks(job) if t.index not in done])
        except SpecError as err:
            error, message = err, ("spec", None)
        except BaseException as err:
            error = err
        for r in range(1, size):
            comm.send(message, r, TAG_PREP)
        if error is not None:
            raise error
    else:
        _, message = wait_message(comm, live, 0, None)
        if message[0] == "spec":
            raise SpecError([])  # rank 0 prints the problems
        if message[0] != "ok":
            raise SystemExit(1)
    todo = message[1]
    share = rank_share(todo, rank, size, opts.layout)
    chunk_size = job.spec.backend.chunk_size or auto_chunk_size(len(todo), size)
    job_json = job.to_json()
    bar = Progress(len(share), f"{job.spec.name} [mpi static, rank 0 of {size}]", enabled=progress and rank == 0)
    try:
        for attempt in range(job.spec.retries + 1):
            failed: list[int] = []
            for chunk in make_chunks(share, chunk_size):
                if session.deadline is not None and time.monotonic() > session.deadline:
                    log.error("rank %d: backend.deadline_s passed; leaving the rest of its share undone", rank)
                    break
                result = execute_chunk(WorkOrder(job_json, str(store.path), chunk, attempt))
                failed += sorted(result.failed)
                bar.advance(len(result.ok), len(result.failed) if attempt == job.spec.retries else 0)
            share = failed
            if not share:
                break
    finally:
        bar.close()
    _wait_for_all(session, RankLost)
    if rank != 0:
        return None
    if live.dead:
        _record_lost(job, store, todo, size, opts.layout, sorted(live.dead))
    result = finish(job, store, time.perf_counter() - t0)
    if live.dead:
        session.abort_at_exit(1)
    return result


def _wait_for_all(session, RankLost) -> None:
    """A barrier that polls: rank 0 stops waiting for lost ranks; the others for a lost rank 0."""
    request = session.comm.Ibarrier()
    pause = 0.0002
    while not request.Test():
        session.live.poll()
        if session.live.dead:
            if session.rank != 0:
                raise RankLost(f"MPI rank 0 stopped responding (no heartbeat for {session.live.dead_after_s:g}s)")
            return
        if session.deadline is not None and time.monotonic() > session.deadline:
            if session.rank != 0:
                raise RankLost("backend.deadline_s passed at the final barrier")
            session.live.dead.update(session.live.peers)  # rank 0 reports what is missing, then aborts
            return
        time.sleep(pause)
        pause = min(pause * 2, 0.01)


def _record_lost(job, store, todo: list[int], size: int, layout: str, lost: list[int]) -> None:
    """Failed records for lost ranks' unfinished tasks, so the summary names them and resume reruns them."""
    from .backends.mpi import rank_share
    from .store import write_chunk_records

    tasks = plan_tasks(job)
    ok = store.completed()
    for r in lost:
        missing = [i for i in rank_share(todo, r, size, layout) if i not in ok]
        if missing:
            write_chunk_records(store.path, Chunk(tuple(missing)), [
                {"task_id": tasks[i].id, "task_index": i, "status": "failed", "attempt": 0, "seconds": 0.0,
                 "error": f"MPI rank {r} was lost before finishing this task", "traceback": ""} for i in missing])


def _load(path: str, args: argparse.Namespace):
    from .spec import load_job, read_spec_file

    raw = read_spec_file(path)
    if isinstance(raw, dict) and isinstance(raw.get("backend"), dict) and raw["backend"].get("name", "local") != "mpi":
        # Another backend's options mean nothing here; keep only what every backend shares.
        raw["backend"] = {k: v for k, v in raw["backend"].items() if k == "chunk_size"}
    overrides = {"backend.name": "mpi", "backend.mode": args.mode, "backend.layout": args.layout,
                 "backend.threads_per_rank": args.threads_per_rank, "output": args.out}
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
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress, no table")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S")
    from .backends.mpi import run_under_mpi

    try:
        job = _load(args.spec, args)
        result = run_under_mpi(job, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet)
    except SpecError as err:
        for line in err.lines():
            print(f"error: {line}", file=sys.stderr)
        return 2
    if result is None:  # not rank 0: rank 0 reports
        return 0
    from .cli import print_table

    if not args.quiet:
        print_table(result.summary.get("table", []), title=f"{job.spec.name}: {job.plan_kind} / {job.model.name}")
    print(f"{result.n_tasks - result.n_failed}/{result.n_tasks} tasks ok in {result.seconds:.1f}s -> {result.run_dir}")
    if result.n_failed:
        failures = result.failures()
        first = f"; first: {failures.iloc[0]['task_id']}: {failures.iloc[0].get('error')}" if len(failures) else ""
        print(f"{result.n_failed} task(s) failed{first}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
