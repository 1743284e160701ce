"""The local backend's worker processes, each on a pipe of its own: the driver always knows
which chunk (and, under ``timeout_s``, which task) each worker is running.

concurrent.futures' pool (and loky's) breaks as a whole when one worker dies: every unfinished
chunk fails with it, nothing says which one the dead worker held, and concurrent.futures joins
a broken pool's workers at interpreter exit, so a worker that never ends hangs the process.
Here:

- a worker that dies (``os._exit``, a segfault, the out-of-memory killer) loses only the chunk
  it held; a fresh worker takes its place and the others go on;
- under ``timeout_s`` a worker tells the driver each task's deadline; a task still running
  ``GRACE_S`` past it is stuck where the worker's alarm cannot stop it (one long call into C):
  the driver kills that worker, the task fails as timed out, the rest of its chunk runs again;
- nothing waits on a worker without bound: closing asks idle workers to leave, kills busy
  ones, and kills any still there after ``STOP_S``.

Starting a pool imports none of the chunk machinery (pandas, the model kinds): the workers get
it from the forkserver's preload, the driver with its first chunk. An R session's pool starts
before its driver has imported any of it (``local_pools.prestart``).
"""
from __future__ import annotations

import atexit
import dataclasses
import multiprocessing as mp
import multiprocessing.util  # noqa: F401  (its exit hook is registered before ours, so ours runs first)
import os
import signal
import time
from collections import deque
from contextlib import contextmanager
from multiprocessing.connection import wait
from multiprocessing.reduction import ForkingPickler
from typing import TYPE_CHECKING, Iterable, Iterator

from hpcml.backends.fork_server import PRELOAD
from hpcml.backends.without_main import starting_without_main
from hpcml.backends.lifeline import become_subreaper, die_with, end_descendants, helpers, ignore_interrupts
from hpcml.tasks.deadlines import TaskTimeout

if TYPE_CHECKING:
    from hpcml.tasks.worker import ChunkResult, WorkOrder

GRACE_S = 2.0  # past a task's deadline before its worker is killed (its own alarm goes first)
STOP_S = 5.0  # for workers asked to leave before they are killed
PIPE_ROOM = 32 * 1024  # an order this small fits in a busy worker's pipe without waiting (64 KiB)


class _PipeWatch:
    """``run_chunk``'s watch in a worker: each timed task's deadline goes to the driver."""

    def __init__(self, conn):
        self.records: list[dict] = []
        self._conn = conn

    @contextmanager
    def task(self, indices: list[int], seconds: float | None):
        if not seconds:
            yield
            return
        self._conn.send(("task", list(indices), time.monotonic() + seconds, seconds))
        try:
            yield
        finally:
            self._conn.send(("idle",))


def serve(conn, job_json: str | None, driver_pid: int, driver_dir: str, warm: str | None = None) -> None:
    """A worker process: die with the driver, leave Ctrl-C to it, work in its directory
    (relative paths mean what they mean to the driver), load the data once, then run chunks
    until told to stop. Whatever a chunk's tasks started ends with the chunk. A pool started
    before its job is known (``job_json`` None) starts only what ``warm`` names."""
    from hpcml.tasks.worker import ChunkResult, deliver, run_chunk, warm_cache, warm_r  # preloaded by the forkserver

    die_with(driver_pid)
    ignore_interrupts()
    become_subreaper()
    os.chdir(driver_dir)
    if job_json is not None:
        warm_cache(job_json)
    if warm == "r":
        warm_r()
    conn.send("ready")
    while True:
        try:
            order = conn.recv()
        except (EOFError, OSError):
            return
        if order is None:
            return
        start = time.perf_counter()
        try:
            result = deliver(order, *run_chunk(order, _PipeWatch(conn)), start)
        finally:
            end_descendants(helpers())
        try:
            conn.send(result)
        except Exception as err:  # records that cannot be pickled and the like
            conn.send(ChunkResult(order.chunk, failed={i: f"{type(err).__name__}: {err}" for i in order.chunk.indices}))


def _how(code: int | None) -> str:
    if code is None:
        return "worker process died"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"worker process died (killed by {name})"
    return f"worker process died (exit code {code})"


class _Worker:
    def __init__(self, ctx, args: tuple):
        self.conn, theirs = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=serve, args=(theirs, *args), name="hpcml-worker")
        with starting_without_main():  # a plain script without a __main__ guard is not run again
            self.proc.start()
        theirs.close()  # the worker's end lives in the worker only: its death is EOF here
        self.ready = False
        # Chunks sent, in order: the first is running, the next (if any) waits in its pipe.
        self.orders: deque[WorkOrder] = deque()
        self.task: tuple[list[int], float, float] | None = None  # indices, deadline, seconds

    def end(self, kill: bool = True) -> None:
        if kill:
            self.proc.kill()
        self.proc.join(STOP_S)
        if self.proc.exitcode is None:  # stuck in the kernel: never wait for it again
            self.proc.kill()
            # multiprocessing joins its children at exit, without a bound: not this one
            getattr(mp.process, "_children", set()).discard(self.proc)
        self.conn.close()


class WorkerPool:
    """``workers`` processes; ``submit`` chunks, ``results`` as they finish."""

    def __init__(self, workers: int, method: str, job_json: str | None, driver_dir: str, warm: str | None = None):
        self._ctx = mp.get_context(method)
        if method == "forkserver":
            self._ctx.set_forkserver_preload(PRELOAD)
        self._args = (job_json, os.getpid(), driver_dir, warm)
        self._workers = [_Worker(self._ctx, self._args) for _ in range(workers)]
        self._queue: deque[WorkOrder] = deque()
        self._done: deque[ChunkResult] = deque()
        self._failed_starts = 0  # workers in a row that died before they were ready
        _OPEN.add(self)

    @property
    def pending(self) -> int:
        """Chunks submitted and not yet handed back by ``results``."""
        return len(self._queue) + len(self._done) + sum(len(w.orders) for w in self._workers)

    def started(self) -> bool:
        """Whether any worker is up (a fresh pool's take a second or more)."""
        return any(w.ready for w in self._workers)

    def healthy(self) -> bool:
        """Replace workers that died since the last job (killed while idle); False if closed."""
        if not self._workers:
            return False
        for w in list(self._workers):
            if not w.proc.is_alive():
                self._replace(w)
        return True

    def submit(self, orders: Iterable[WorkOrder]) -> None:
        self._queue.extend(orders)
        self._dispatch()

    def results(self, timeout: float | None = None) -> list[ChunkResult]:
        """Chunks finished (or lost) so far, waiting up to ``timeout`` (None: until one is)."""
        end = None if timeout is None else time.monotonic() + timeout
        while not self._done and self.pending:
            left = None if end is None else max(0.0, end - time.monotonic())
            self._step(left)
            if end is not None and time.monotonic() >= end:
                break
        out = list(self._done)
        self._done.clear()
        return out

    def run(self, orders: Iterable[WorkOrder]) -> Iterator[ChunkResult]:
        self.submit(orders)
        while self.pending:
            yield from self.results()

    def _step(self, timeout: float | None) -> None:
        now = time.monotonic()
        due = [w.task[1] + GRACE_S - now for w in self._workers if w.task is not None]
        if due:
            timeout = max(0.0, min(due)) if timeout is None else min(timeout, max(0.0, min(due)))
        watched = [w.conn for w in self._workers] + [w.proc.sentinel for w in self._workers]
        ready = set(wait(watched, timeout))
        for w in list(self._workers):
            if w.conn in ready or w.proc.sentinel in ready:
                self._read(w)
        self._overdue()
        self._dispatch()

    def _read(self, w: _Worker) -> None:
        from hpcml.tasks.worker import ChunkResult  # imported with the first chunk (module note)

        try:
            while w.conn.poll():
                message = w.conn.recv()
                if isinstance(message, ChunkResult):
                    self._done.append(message)
                    w.orders.popleft()
                    w.task = None
                elif message == "ready":
                    w.ready, self._failed_starts = True, 0
                elif message[0] == "task":
                    w.task = (message[1], message[2], message[3])
                else:
                    w.task = None
        except (EOFError, OSError):
            pass
        if not w.proc.is_alive():
            self._died(w)

    def _died(self, w: _Worker) -> None:
        from hpcml.tasks.worker import ChunkResult  # imported with the first chunk (module note)

        w.proc.join(1)
        why = _how(w.proc.exitcode)
        if w.orders:  # the running chunk is lost; the one waiting behind it never started
            self._done.append(ChunkResult.lost(w.orders.popleft().chunk, why))
            self._queue.extendleft(reversed(w.orders))
            w.orders.clear()
        if not w.ready:
            self._failed_starts += 1
            if self._failed_starts >= 2 * len(self._workers) and self._queue:
                # Workers die as they start (a driver script that starts a run when imported):
                # no worker will ever take these chunks.
                self._done.extend(ChunkResult.lost(o.chunk, why + " while starting") for o in self._queue)
                self._queue.clear()
        self._replace(w)

    def _replace(self, w: _Worker) -> None:
        w.end()
        self._workers[self._workers.index(w)] = _Worker(self._ctx, self._args)

    def _overdue(self) -> None:
        from hpcml.rundir.store import Chunk  # imported with the first chunk (module note)
        from hpcml.tasks.worker import ChunkResult  # imported with the first chunk (module note)

        now = time.monotonic()
        for w in list(self._workers):
            if w.task is None or now < w.task[1] + GRACE_S:
                continue
            self._read(w)  # a message on its way may say the task is over
            if w not in self._workers or w.task is None or not w.orders:
                continue
            indices, _, seconds = w.task
            order = w.orders.popleft()
            self._queue.extendleft(reversed(w.orders))
            w.orders.clear()
            self._replace(w)  # the stuck call ends with the process
            error = f"{TaskTimeout.__name__}: task exceeded timeout_s={seconds:g} (stopped by ending its worker process)"
            self._done.append(ChunkResult(Chunk(tuple(indices)), failed={i: error for i in indices}))
            rest = tuple(i for i in order.chunk.indices if i not in set(indices))
            if rest:  # the tasks before it (their records died with the worker) and after it
                self._queue.appendleft(dataclasses.replace(order, chunk=Chunk(rest)))

    def _dispatch(self) -> None:
        """A chunk to each idle worker, and a second one to wait in a busy worker's pipe while
        more chunks are queued than there are workers (so a worker never idles while the
        driver wakes up, yet the last chunks are never stuck behind a long one)."""
        for depth in (1, 2):
            for w in list(self._workers):
                if not self._queue or (depth == 2 and len(self._queue) <= len(self._workers)):
                    return
                if not w.ready or len(w.orders) >= depth:
                    continue
                payload = ForkingPickler.dumps(self._queue[0])
                if w.orders and len(payload) > PIPE_ROOM:
                    continue  # a send that fills the pipe would wait for the worker's current chunk
                try:
                    w.conn.send_bytes(payload)
                except OSError:  # it died since it was ready: the chunk never reached it
                    self._died(w)
                    continue
                w.orders.append(self._queue.popleft())

    def close(self) -> None:
        """Idle workers are asked to leave, busy ones killed (nobody waits for their chunks);
        none is waited for more than ``STOP_S``."""
        for w in self._workers:
            if not w.orders:
                try:
                    w.conn.send(None)
                except OSError:
                    pass
        for w in self._workers:
            w.end(kill=bool(w.orders))
        self._workers = []
        self._queue.clear()
        _OPEN.discard(self)


_OPEN: set[WorkerPool] = set()  # pools not yet closed


def _close_all() -> None:
    for pool in list(_OPEN):
        pool.close()


atexit.register(_close_all)  # registered after multiprocessing's exit hook, so it runs first
