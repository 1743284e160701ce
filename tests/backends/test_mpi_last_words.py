"""Rank 0's one line when the launcher ends the MPI job with a signal (hpcml.backends.mpi.last_words):
the ranks that did not answer are named with their nodes; with every rank answering, the line
says the job was cancelled or ran out of time. (The real thing: test_mpi.py's kill -9 under
mpirun and tests/cluster's node crash.)"""
from __future__ import annotations

import os
import socket
import subprocess
import sys

from hpcml.backends.mpi.last_words import LastWords, gone_here, last_line


class Rank0:
    """What LastWords asks of rank 0's communicator, without MPI."""

    def __init__(self, size: int):
        self.size = size

    def Get_rank(self):
        return 0

    def Get_size(self):
        return self.size

    def bcast(self, value, root=0):
        return value


def _words(hosts, pids, said):
    words = LastWords(Rank0(len(hosts)), hosts, pids)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            for text in said:
                peer.sendto(text.encode(), tuple(words.address))
        return words.listen(set())
    finally:
        words.close()


def test_silent_ranks_of_other_nodes_and_gone_ranks_of_this_node_are_the_lost_ones():
    here = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    # rank 1 elsewhere answered, rank 2 elsewhere said hello at start and then nothing: lost
    assert _words([here, "node-a", "node-b"], [os.getpid(), 1, 2], ["hello 1", "hello 2", "bye 1"]) == [2]
    # every rank answered, or is alive on this node: no one lost
    assert _words([here, "node-a", here], [os.getpid(), 1, os.getpid()], ["hello 1", "bye 1"]) == []
    # a rank of this node whose process is gone is lost without a word awaited
    assert _words([here, here, "node-a"], [os.getpid(), dead.pid, 2], ["hello 2", "bye 2"]) == [1]
    # ... but not one that said its word before it ended (the launcher's signal reached it first)
    assert _words([here, here, "node-a"], [os.getpid(), dead.pid, 2], ["hello 2", "bye 1", "bye 2"]) == []
    # a silent rank whose hello never arrived cannot be told from an unreachable one
    assert _words([here, "node-a"], [os.getpid(), 1], []) is None


def test_the_line_names_the_lost_ranks_and_their_nodes_or_says_every_rank_answered():
    hosts = ["node1", "node1", "node2", "node2"]
    line = last_line(15, [2, 3], hosts)
    assert line == ("hpcml: MPI rank(s) 2 (on node2), 3 (on node2) lost: the launcher ended the MPI job (signal 15 to "
                    "rank 0 on node1) when node node2 or their process stopped answering; finished chunks are kept; "
                    "rerun with --resume to finish what is missing")
    assert last_line(15, [], hosts).startswith("hpcml: rank 0 stopped by signal 15: the launcher ended the MPI job "
                                               "with every rank still answering (cancelled, or out of time)")
    assert "a rank or its node was lost, or the job was cancelled" in last_line(15, None, [])
    assert all("\n" not in text for text in (line, last_line(15, [], hosts)))


def test_a_rank_of_this_node_whose_process_is_gone_counts_as_lost_at_once():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    here = socket.gethostname()
    assert gone_here(1, [here, here], [os.getpid(), child.pid])
    assert not gone_here(0, [here, here], [os.getpid(), child.pid])
    assert not gone_here(1, [here, "elsewhere"], [os.getpid(), child.pid])  # another node: not known here
