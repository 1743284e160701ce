"""Bounded MPI messaging: heartbeats, waits and sends that never hang on a dead rank.

Plain MPI has no failure detection: a ``recv`` from a rank that was killed, hung, or lost its
node waits forever, and so does a large ``send`` to it (rendezvous protocol). Launchers differ:
``mpirun`` (Open MPI) ends the whole job when a rank dies, but ``srun`` without
``--kill-on-bad-exit`` and ``mpirun --enable-recovery`` keep the others running, and nothing
ends a job whose rank is stuck (a hung file system, a stopped process). So here:

- every rank sends heartbeats from a thread of its own (rank 0 to all, the others to rank 0) on
  a communicator used for nothing else; a peer silent for ``dead_after_s`` while this rank was
  listening (polling in a wait) is declared lost;
- every wait polls (``improbe``, ``Test``) and gives up once the peer it waits for is lost;
- every send is non-blocking and tracked, so a send to a dead rank is abandoned, not waited on.

Compiled code that releases the GIL (NumPy, BLAS, R through rpy2, torch) does not stop the
heartbeat thread; only a C extension holding the GIL longer than ``dead_after_s`` would.
"""
from __future__ import annotations

import threading
import time
from typing import Any

TAG_BEAT = 16


def mpi():
    from mpi4py import MPI

    return MPI


class RankLost(RuntimeError):
    """A peer stopped responding (or the run's deadline passed) while this rank waited for it."""


def backoff(pause: float, busy: bool = False, floor: float = 0.0002, ceiling: float = 0.01) -> float:
    """Poll fast while messages flow, then back off so an idle rank does not burn its core."""
    return floor if busy else min(pause * 2, ceiling)


class Liveness:
    """Heartbeats on a duplicated communicator, so they never mix with work messages."""

    def __init__(self, comm, heartbeat_s: float, dead_after_s: float):
        self.comm = comm.Dup()  # collective: every rank gets here before anyone's clock starts
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.heartbeat_s, self.dead_after_s = heartbeat_s, dead_after_s
        self.peers = list(range(1, self.size)) if self.rank == 0 else ([0] if self.size > 1 else [])
        now = time.monotonic()
        self.last = {p: now for p in self.peers}
        self.dead: set[int] = set()
        self._listened: float | None = None  # when poll() last ran
        self._stop = threading.Event()
        self._sends: list = []
        self._thread = threading.Thread(target=self._beat, name="hpcml-heartbeat", daemon=True)
        if self.peers:
            self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            for p in self.peers:
                if p in self.dead:
                    continue
                try:
                    self._sends.append(self.comm.isend(None, p, TAG_BEAT))
                except Exception:  # a vanished peer can make MPI raise; poll() declares it lost
                    pass
            self._sends = [r for r in self._sends if not _done(r)]

    def poll(self) -> set[int]:
        """Drain heartbeats; return peers newly declared lost."""
        MPI = mpi()
        status = MPI.Status()
        while True:
            # improbe hands this thread the message itself: no other thread can take it between
            # the probe and the receive.
            message = self.comm.improbe(MPI.ANY_SOURCE, TAG_BEAT, status)
            if message is None:
                break
            message.recv()
            self.last[status.Get_source()] = time.monotonic()
        now = time.monotonic()
        if self._listened is None or now - self._listened > self.heartbeat_s:
            # We were not listening (computing, loading data): what peers sent meanwhile may not
            # be delivered yet (MPI delivers when the receiver makes progress, and connects
            # lazily on first contact), so silence counts only from now.
            for p in self.last:
                self.last[p] = max(self.last[p], now)
        self._listened = now
        lost = {p for p, t in self.last.items() if p not in self.dead and now - t > self.dead_after_s}
        self.dead |= lost
        return lost

    def lost_message(self, rank: int) -> str:
        return f"MPI rank {rank} stopped responding (no heartbeat for {self.dead_after_s:g}s)"

    def stop_beating(self) -> None:
        """No more heartbeats from this rank (its thread ends at its next beat)."""
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.heartbeat_s + 5)


def _done(request) -> bool:
    try:
        return bool(request.Test())
    except Exception:  # a send to a failed peer: nothing more will happen to it
        return True


def wait_message(comm, live: Liveness, source: int, deadline: float | None) -> tuple[int, Any]:
    """Block (polling) for the next message from ``source``; ``(tag, payload)``. Never forever."""
    MPI = mpi()
    status, pause = MPI.Status(), 0.0002
    while True:
        message = comm.improbe(source, MPI.ANY_TAG, status)
        if message is not None:
            return status.Get_tag(), message.recv()
        live.poll()
        if source in live.dead:
            raise RankLost(live.lost_message(source))
        if deadline is not None and time.monotonic() > deadline:
            raise RankLost(f"backend.deadline_s passed while waiting for MPI rank {source}")
        time.sleep(pause)
        pause = backoff(pause)


class Outbox:
    """Non-blocking sends, kept until complete; a send to a lost rank is abandoned, never awaited.

    A blocking ``send`` of a message above the eager limit (a few KiB: a long task list, a
    chunk's failures) waits for the receiver, so one dead rank would hang its sender.
    """

    def __init__(self, comm):
        self.comm = comm
        self._pending: list[tuple[int, Any]] = []
        self._lock = threading.Lock()

    def send(self, obj: Any, dest: int, tag: int) -> None:
        request = self.comm.isend(obj, dest, tag)  # mpi4py keeps the pickled buffer with the request
        with self._lock:
            self._pending.append((dest, request))
        self.reap()

    def reap(self) -> None:
        with self._lock:
            self._pending = [(d, r) for d, r in self._pending if not _done(r)]

    def flush(self, live: Liveness, timeout_s: float | None = None) -> bool:
        """Wait until every send to a live peer has completed; False if ``timeout_s`` ran out."""
        end = None if timeout_s is None else time.monotonic() + timeout_s
        pause = 0.0002
        while True:
            self.reap()
            live.poll()
            with self._lock:
                waiting = [d for d, _ in self._pending if d not in live.dead]
            if not waiting:
                return True
            if end is not None and time.monotonic() > end:
                return False
            time.sleep(pause)
            pause = backoff(pause)
