"""Workers die with their driver: nothing runs on after ``kill -9`` or ``kill -TERM`` of it.

A pool worker blocks on its task queue, whose pipe it holds both ends of, so it would never
notice the driver is gone; a forkserver's workers even keep the forkserver alive (each holds
the pipe whose end tells the forkserver its driver left), and both keep the resource tracker
alive. ``die_with(driver_pid)``, first thing in a worker process, asks Linux to SIGKILL it
when its parent dies (``prctl(PR_SET_PDEATHSIG)``: the driver for fork/spawn workers) and
starts a watchdog thread that exits once the driver is gone (its pid dead or a zombie; on
Linux 5.3+ it waits on a pidfd of the driver, in the kernel, without ever waking). With
the workers gone the forkserver and the resource tracker see their pipes close and exit.

What a task starts ends with it: a local worker (and a Dask worker of one thread,
``dask_watch.chunk_on_worker``) is its descendants' reaper
(``PR_SET_CHILD_SUBREAPER``), so a child that outlives its parent (``sleep 45 &`` of a
command, a daemonized or ``setsid`` process) is re-parented to the worker, not to init, and
``end_descendants`` kills and reaps all of them after each chunk. Left running, they would
hold the terminal's pipe open (``hpcml run | cat`` would wait for them) and the machine's cores.
"""
from __future__ import annotations

import ctypes
import os
import select
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
_POLL_S = 1.0
_armed = False


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _prctl_deathsig() -> None:
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def become_subreaper() -> bool:
    """Orphaned descendants of this process become its children (Linux 3.4+), for ``end_descendants``."""
    return _prctl(PR_SET_CHILD_SUBREAPER, 1)


def _children() -> set[int]:
    me = os.getpid()
    try:  # every thread's children (CONFIG_PROC_CHILDREN): a few reads, not a scan of /proc
        found: set[int] = set()
        for tid in os.listdir(f"/proc/{me}/task"):
            with open(f"/proc/{me}/task/{tid}/children") as fh:
                found.update(int(pid) for pid in fh.read().split())
        return found
    except OSError:
        pass
    found = set()
    try:
        names = [n for n in os.listdir("/proc") if n.isdigit()]
    except OSError:
        return found
    for name in names:
        try:
            with open(f"/proc/{name}/stat") as fh:
                if int(fh.read().rsplit(")", 1)[1].split()[1]) == me:
                    found.add(int(name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _reap(pid: int, within_s: float = 5.0) -> None:
    end = time.monotonic() + within_s
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return  # reaped already (its Popen waited)
        if done or time.monotonic() > end:
            return
        time.sleep(0.005)


def end_descendants(spare: frozenset[int] = frozenset()) -> int:
    """SIGKILL and reap every child of this process but ``spare``, generation by generation (a
    killed child's own children come to a subreaper next); the number ended."""
    ended, tried = 0, set(spare)
    for _ in range(64):  # generations; a fork bomb cannot keep this going forever
        kids = _children() - tried
        if not kids:
            break
        tried |= kids  # one that will not die (stuck in the kernel) is not waited for again
        for pid in kids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for pid in kids:
            _reap(pid)
        ended += len(kids)
    return ended


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not: it has exited, its parent has not reaped it)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def _watch(parent: int, driver: int) -> None:
    try:  # Linux 5.3+: wait in the kernel, never waking (a thread that wakes to poll takes
        # the GIL each time: a task that forks, as R's doParallel does, could fork just then
        # and leave its child a GIL nobody will release)
        fd = os.pidfd_open(driver)
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while not poller.poll():
            pass
        os._exit(1)  # the driver has exited (PDEATHSIG covers the parent)
    while True:
        time.sleep(_POLL_S)
        if os.getppid() != parent or not pid_alive(driver):
            os._exit(1)


def die_with(driver_pid: int) -> None:
    """Arm once per process."""
    global _armed
    if _armed:
        return
    _armed = True
    parent = os.getppid()
    _prctl_deathsig()
    threading.Thread(target=_watch, args=(parent, driver_pid), name="hpcml-lifeline", daemon=True).start()


def ignore_interrupts() -> None:
    """Ctrl-C reaches every process of the terminal's group: the driver alone handles it."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def helpers() -> frozenset[int]:
    """This process's children that are not a task's: multiprocessing's resource tracker."""
    from multiprocessing import resource_tracker  # only where a chunk has just ended

    pid = getattr(resource_tracker._resource_tracker, "_pid", None)
    return frozenset([pid]) if pid else frozenset()
