"""What every rank of one MPI run shares: communicators, heartbeats, sends, options, tags."""
from __future__ import annotations

import atexit
import logging
import os
import socket
import sys
import time

from hpcml.backends.mpi.last_words import LastWords
from hpcml.backends.mpi.liveness import Liveness, Outbox, mpi
from hpcml.backends.mpi.options import MPIOptions

log = logging.getLogger("hpcml.mpi")

# Message tags: a rank asks for work / reports a result, rank 0 sends work, the job, stop;
# static mode's "run directory prepared" and "my share is done".
TAG_READY, TAG_WORK, TAG_JOB, TAG_STOP, TAG_PREP, TAG_DONE = 11, 12, 13, 14, 15, 17


class Session:
    """What every rank of one MPI run shares: communicators, heartbeats, sends, options."""

    def __init__(self, options: MPIOptions):
        MPI = mpi()
        self.comm = MPI.COMM_WORLD.Dup()
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.options = options
        self.live = Liveness(MPI.COMM_WORLD, options.heartbeat_s, options.dead_after_s)
        # Each rank's node and process, so that a lost rank can be named with its node (last_words).
        where = self.comm.allgather((socket.gethostname(), os.getpid()))
        self.hosts: list[str] = [host for host, _ in where]
        self.pids: list[int] = [pid for _, pid in where]
        self.last_words = LastWords(self.comm, self.hosts, self.pids)
        self.outbox = Outbox(self.comm)
        # Rank 0: ranks whose task was given up on past timeout_s and are still in its call.
        self.stuck: set[int] = set()
        self.deadline = time.monotonic() + options.deadline_s if options.deadline_s else None
        # Rank 0 consolidates dead_after_s after the deadline, whoever is still working; the
        # other ranks keep no chunk file that would land after half of that (rank 0's clock).
        self.write_until = None
        if options.deadline_s:
            cutoff = time.time() + options.deadline_s + options.dead_after_s / 2 if self.rank == 0 else None
            cutoff = self.comm.bcast(cutoff, root=0)
            self.write_until = cutoff if self.rank != 0 else None

    def abort_at_exit(self, code: int, complete: bool, why: str | None = None) -> None:
        # A lost rank never reaches MPI_Finalize, and the others would wait for it there:
        # abort once the summary is printed (atexit runs before mpi4py's own finalize hook).
        why = why or f"MPI rank(s) {', '.join(map(str, sorted(self.live.dead))) or '?'} lost"
        then = "the results are complete" if complete else "rerun with --resume to finish what is missing"
        log.error("%s; ending the MPI job (%s)", why, then)
        atexit.register(lambda: (sys.stdout.flush(), sys.stderr.flush(), self.comm.Abort(code)))

    def close(self) -> None:
        self.live.close()
        self.last_words.close()
