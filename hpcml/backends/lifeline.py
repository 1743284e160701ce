"""Workers die with their driver: nothing runs on after ``kill -9`` or ``kill -TERM`` of it.

A pool worker blocks on its task queue, whose pipe it holds both ends of, so it would never
notice the driver is gone; a forkserver's workers even keep the forkserver alive (each holds
the pipe whose end tells the forkserver its driver left), and both keep the resource tracker
alive. ``die_with(driver_pid)``, first thing in a worker process, asks Linux to SIGKILL it
when its parent dies (``prctl(PR_SET_PDEATHSIG)``: the driver for fork/spawn workers) and
starts a watchdog thread that exits once the driver is gone (its pid dead or a zombie; on
Linux 5.3+ it waits on a pidfd of the driver, in the kernel, without ever waking). With
the workers gone the forkserver and the resource tracker see their pipes close and exit.
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
_POLL_S = 1.0
_armed = False


def _prctl_deathsig() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


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
