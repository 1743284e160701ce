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

from hpcml.errors import SpecError
from hpcml.plan import Chunk, auto_chunk_size, make_chunks, plan_tasks
from hpcml.worker import WorkOrder, execute_chunk

log = logging.getLogger("hpcml.mpi")


def run_static(session, job, *, resume: bool, overwrite: bool, progress: bool):
    """Static packing: rank 0 prepares, every rank runs its own share, rank 0 consolidates."""
    from hpcml.backends.mpi.run import TAG_DONE, TAG_PREP, RankLost, rank_share, wait_message
    from hpcml.progress import Progress
    from hpcml.runner import check_job, finish
    from hpcml.store import RunStore

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
            session.outbox.send(message, r, TAG_PREP)  # non-blocking: a dead rank cannot hold rank 0 here
        session.outbox.flush(live, timeout_s=opts.dead_after_s)
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
    if rank != 0:
        session.outbox.send(None, 0, TAG_DONE)  # rank 0 learns who finished; the barrier alone cannot say
    late = _wait_for_all(session, TAG_DONE, RankLost)
    if rank != 0:
        return None
    _record_missing(job, store, todo, size, opts.layout, live.dead)
    result = finish(job, store, time.perf_counter() - t0)
    if live.dead or late:
        why = (f"MPI rank(s) {', '.join(map(str, sorted(live.dead)))} lost" if live.dead else
               f"backend.deadline_s passed with rank(s) {', '.join(map(str, sorted(late)))} still working")
        session.abort_at_exit(1, complete=result.n_failed == 0, why=why)
    return result


def _wait_for_all(session, TAG_DONE: int, RankLost) -> set[int]:
    """A barrier that polls; on rank 0, the ranks it stopped waiting for.

    The other ranks wait for rank 0 as long as it is alive (it ends the job if need be).
    Rank 0 waits for every rank that is alive: once all have finished, a lost rank only
    means aborting at the end; past ``deadline_s`` it waits ``dead_after_s`` more for ranks
    finishing their current chunk, then gives up on them.
    """
    from hpcml.backends.mpi.liveness import backoff, mpi

    MPI, live = mpi(), session.live
    request = session.comm.Ibarrier()
    arrived: set[int] = set()
    status, pause = MPI.Status(), 0.0002
    while not request.Test():
        live.poll()
        if session.rank != 0:
            if 0 in live.dead:
                raise RankLost(live.lost_message(0))
        else:
            while (message := session.comm.improbe(MPI.ANY_SOURCE, TAG_DONE, status)) is not None:
                message.recv()
                arrived.add(status.Get_source())
            waiting = set(live.peers) - arrived - live.dead
            if not waiting:
                return set()  # everyone left has finished; the lost are in live.dead
            if session.deadline is not None and time.monotonic() > session.deadline + live.dead_after_s:
                return waiting
        time.sleep(pause)
        pause = backoff(pause)
    return set()


def _record_missing(job, store, todo: list[int], size: int, layout: str, lost: set[int]) -> None:
    """Failed records for tasks that ended with no record at all (a lost rank's, or cut off by
    ``deadline_s``), so the summary names them and ``--resume`` reruns them."""
    from hpcml.backends.mpi import rank_share
    from hpcml.store import write_chunk_records

    tasks = plan_tasks(job)
    recorded = set(store.read_records(["task_index"])["task_index"].astype(int))
    for r in range(size):
        missing = [i for i in rank_share(todo, r, size, layout) if i not in recorded]
        if not missing:
            continue
        reason = (f"MPI rank {r} was lost before finishing this task" if r in lost
                  else "backend.deadline_s passed before this task ran")
        write_chunk_records(store.path, Chunk(tuple(missing)), [
            {"task_id": tasks[i].id, "task_index": i, "status": "failed", "attempt": 0, "seconds": 0.0,
             "error": reason, "traceback": ""} for i in missing])


def _load(path: str, args: argparse.Namespace):
    from hpcml.spec import load_job, read_spec_file

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
    from hpcml.backends.mpi import run_under_mpi

    try:
        job = _load(args.spec, args)
        result = run_under_mpi(job, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet)
    except SpecError as err:
        from hpcml.launchers import launcher_rank

        if launcher_rank() == 0:  # every rank read the same bad spec: say it once
            for line in err.lines():
                print(f"error: {line}", file=sys.stderr)
        return 2
    if result is None:  # not rank 0: rank 0 reports
        return 0
    from hpcml.cli import print_table

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
