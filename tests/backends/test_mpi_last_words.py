"""Rank 0's one line when the launcher ends the MPI job with a signal (hpcml.backends.mpi.last_words):
the ranks that did not answer are named with their nodes; with every rank answering, the line
says the job was cancelled or ran out of time. (The real thing: test_mpi.py's kill -9 under
mpirun and tests/cluster's node crash.)"""
from __future__ import annotations

import os
import socket
import subprocess
import sys

from hpcml.backends.mpi.last_words import gone_here, last_line, silent_ranks


def test_the_silent_ranks_are_the_lost_ones():
    assert silent_ranks([1, 2, 3], answered={1, 3}, dead=set()) == [2]
    assert silent_ranks([1, 2, 3], answered={1, 2, 3}, dead=set()) == []
    assert silent_ranks([1, 2, 3], answered={1, 3}, dead={2}) == [2]


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
