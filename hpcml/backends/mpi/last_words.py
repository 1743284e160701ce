"""What rank 0 says when the launcher ends the MPI job with a signal (SIGTERM).

Open MPI's ``mpirun`` ends every rank (SIGTERM, then SIGKILL one second later, or sooner) as
soon as a rank dies or a node's daemon is lost; a scheduler does the same on ``scancel`` or at
the time limit. Only the ranks can tell these apart: on the signal, every other rank sends
rank 0 a last word, and rank 0 listens briefly. The ranks of other nodes that stay silent,
and the ranks of rank 0's own node whose process is gone, are the lost ones; rank 0 names
them and their nodes in one line, with what to do next.

The words travel as UDP datagrams to a socket rank 0 binds at start on the address of its
hostname, not through MPI: once a peer's connection has closed, any MPI progress may let Open
MPI's TCP transport end rank 0 on the spot ("peer process has unexpectedly disconnected").
Every other rank says hello at start; a rank whose hello never arrived (the hostname
resolves to an address the others cannot reach) is not named lost for its silence, only
unknown. Nothing here may take longer than the launcher's grace period, nor raise: the
process ends in any case.
"""
from __future__ import annotations

import os
import signal
import socket
import time

from hpcml.rundir.lock import pid_alive, release_held

LISTEN_S = 0.3  # rank 0 waits at most this long for the others' words


def last_line(signum: int, lost: list[int] | None, hosts: list[str]) -> str:
    """Rank 0's one line: which rank(s) and node(s) were lost, or that every rank answered
    (``lost`` None: not known)."""
    then = "finished chunks are kept; rerun with --resume to finish what is missing"
    if lost is None:
        return (f"hpcml: rank 0 stopped by signal {signum} (the launcher ended the MPI job: a rank or its node was "
                f"lost, or the job was cancelled or ran out of time); {then}")
    if lost:
        who = ", ".join(f"{r} (on {hosts[r] if r < len(hosts) else '?'})" for r in lost)
        nodes = sorted({hosts[r] for r in lost if r < len(hosts)})
        return (f"hpcml: MPI rank(s) {who} lost: the launcher ended the MPI job (signal {signum} to rank 0 on "
                f"{hosts[0] if hosts else '?'}) when {'node ' + ', '.join(nodes) if nodes else 'it'} or "
                f"{'its' if len(lost) == 1 else 'their'} process stopped answering; {then}")
    return (f"hpcml: rank 0 stopped by signal {signum}: the launcher ended the MPI job with every rank still "
            f"answering (cancelled, or out of time); {then}")


def here(rank: int, hosts: list[str]) -> bool:
    return rank < len(hosts) and hosts[rank] == socket.gethostname()


def gone_here(rank: int, hosts: list[str], pids: list[int]) -> bool:
    """Whether ``rank`` ran on this node and its process is gone (or a zombie not yet reaped)."""
    if not here(rank, hosts):
        return False
    try:
        with open(f"/proc/{pids[rank]}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return not pid_alive(pids[rank])


def _own_address() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


class LastWords:
    """Rank 0's UDP socket and the other ranks' way to it; made by every rank at once
    (``comm.bcast`` of rank 0's address)."""

    def __init__(self, comm, hosts: list[str], pids: list[int]):
        self.rank, self.size, self.hosts, self.pids = comm.Get_rank(), comm.Get_size(), hosts, pids
        self.sock, self.reachable = None, set()
        address = None
        if self.rank == 0 and self.size > 1:
            try:
                self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self.sock.bind((_own_address(), 0))
                address = self.sock.getsockname()
            except OSError:
                self.sock = None
        self.address = comm.bcast(address, root=0)
        if self.rank != 0 and self.address:
            try:
                self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self.sock.sendto(f"hello {self.rank}".encode(), tuple(self.address))
            except OSError:
                self.sock = None

    def say(self) -> None:
        """A rank other than 0: the last word, sent at once (a datagram waits for nothing)."""
        if self.sock is not None:
            self.sock.sendto(f"bye {self.rank}".encode(), tuple(self.address))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _read(self, answered: set[int], timeout: float) -> bool:
        """One word into ``answered`` (or ``reachable``, a hello); False when none came."""
        self.sock.settimeout(timeout) if timeout > 0 else self.sock.setblocking(False)
        try:
            data, _ = self.sock.recvfrom(64)
        except (socket.timeout, BlockingIOError):
            return False
        word, _, rank = data.decode(errors="replace").partition(" ")
        if rank.isdigit() and 0 < int(rank) < self.size:
            (self.reachable if word == "hello" else answered).add(int(rank))
        return True

    def listen(self, dead: set[int]) -> list[int] | None:
        """Rank 0: the ranks lost, or None when a silent rank could not be told from an
        unreachable one. A rank of this node is lost when its process is gone without a word
        (looked up at once, no word awaited: a rank that said its word before it ended has it
        waiting here already); a rank of another node when it stays silent for LISTEN_S though
        its hello arrived at start; a rank declared lost before, in any case."""
        peers, answered = set(range(1, self.size)), set()
        elsewhere = {p for p in peers if not here(p, self.hosts)}
        gone = {p for p in peers - elsewhere if gone_here(p, self.hosts, self.pids)}
        if self.sock is not None:
            while self._read(answered, 0):
                pass
            end = time.monotonic() + LISTEN_S
            while elsewhere - answered - dead and time.monotonic() < end:
                if not self._read(answered, end - time.monotonic()):
                    break
        lost = (gone - answered) | set(dead)
        silent = elsewhere - answered - lost
        lost |= silent & self.reachable
        return sorted(lost) if lost or not silent else None


def on_terminate(session):
    """The SIGTERM handler of one rank of ``session`` (``signal.signal(SIGTERM, ...)``)."""

    def handler(signum, frame):
        try:
            if session.rank == 0:
                session.live.stop_beating()  # a beat to a lost rank could let MPI end this process first
                lost = session.last_words.listen(set(session.live.dead)) if session.size > 1 else []
                line = last_line(signum, lost, session.hosts)
                release_held()  # the run is over here: a --resume on another node must not find it held
                os.write(2, (line + "\n").encode())
            else:
                session.last_words.say()
        except BaseException:
            if session.rank == 0:
                os.write(2, (last_line(signum, None, []) + "\n").encode())
        os._exit(128 + signum)

    return handler


def install(session):
    """Install the handler; the previous one (to put back with ``signal.signal``)."""
    return signal.signal(signal.SIGTERM, on_terminate(session))
