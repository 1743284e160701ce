"""Per-task time limits (``timeout_s``), enforced where the task runs.

In a process's main thread (local, MPI, Spark's Python workers) an alarm interrupts the task
wherever it is; in a worker thread (Dask) an asynchronous exception stops it at its next
bytecode, or when a long call into C returns. A task that stays in C past its limit (a sleep,
a long BLAS call) is seen from outside, and its process ended: by a :class:`TaskWatch` in
another thread on Dask, which records the timeout and restarts that worker; on local by the
driver, which a worker tells each task's deadline (``backends/procpool.py``).
"""
from __future__ import annotations

import ctypes
import signal
import threading
import time
from contextlib import contextmanager, nullcontext


class TaskTimeout(Exception):
    pass


def _timeout_message(seconds: float) -> str:
    return f"task exceeded timeout_s={seconds:g}"


@contextmanager
def deadline(seconds: float | None):
    if not seconds:
        yield
    elif threading.current_thread() is threading.main_thread():
        with _alarm_deadline(seconds):
            yield
    else:
        with _thread_deadline(seconds):
            yield


@contextmanager
def _alarm_deadline(seconds: float):
    # Process-based workers (local, MPI, Spark's Python workers): SIGALRM interrupts the task
    # wherever it is, even inside a long call into C once that call checks for signals.
    def _raise(signum, frame):
        raise TaskTimeout(_timeout_message(seconds))

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def _thread_deadline(seconds: float):
    """A deadline for a task in a worker thread (Dask), where no signal handler runs.

    A timer raises TaskTimeout asynchronously in the task's thread: Python code stops at its
    next bytecode; a long call into C (BLAS, time.sleep, R) stops when it returns to Python.
    """
    message = _timeout_message(seconds)
    timeout_type = type("TaskTimeout", (TaskTimeout,), {"__init__": lambda self: TaskTimeout.__init__(self, message)})
    tid = ctypes.c_ulong(threading.get_ident())
    lock = threading.Lock()
    state = {"running": True, "fired": False}

    def fire():
        with lock:  # never after the task has left the block below
            if state["running"]:
                state["fired"] = True
                ctypes.pythonapi.PyThreadState_SetAsyncExc(tid, ctypes.py_object(timeout_type))

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    start = time.perf_counter()
    timer.start()
    try:
        yield
    finally:
        # The exception may still be pending if it fired as the task returned: until the lock
        # is held and the pending exception cleared, it can surface here, so retry.
        while True:
            try:
                with lock:
                    state["running"] = False
                    if state["fired"]:
                        ctypes.pythonapi.PyThreadState_SetAsyncExc(tid, None)
                break
            except TaskTimeout:
                continue
        timer.cancel()
    if time.perf_counter() - start > seconds:
        raise TaskTimeout(message)  # ran past the limit inside C code and returned normally


class Abandoned(BaseException):
    """Raised in a chunk's thread when the task it ran was given up on: the thread records
    nothing more (the watcher has recorded the chunk)."""


class TaskWatch:
    """What a chunk's thread is running and until when, for a watcher in another thread.

    ``records`` is the chunk's list of records, appended by the chunk's thread between tasks;
    ``give_up`` takes them, at most once, when a task is ``grace_s`` past its deadline.
    """

    def __init__(self) -> None:
        self.records: list[dict] = []
        self._lock = threading.Lock()
        self._current: tuple[list[int], float] | None = None
        self._abandoned = False

    @contextmanager
    def task(self, indices: list[int], seconds: float | None):
        with self._lock:
            if self._abandoned:
                raise Abandoned
            self._current = (list(indices), time.monotonic() + seconds) if seconds else None
        try:
            yield
        finally:
            with self._lock:
                self._current = None
                abandoned = self._abandoned
            if abandoned:
                raise Abandoned  # the watcher recorded this task: its late result is not kept

    def give_up(self, grace_s: float) -> tuple[list[int], list[dict]] | None:
        """(the stuck task's indices, the records made before it) once a task has run
        ``grace_s`` past its deadline; None while every task keeps to its time."""
        with self._lock:
            current = self._current
            if self._abandoned or current is None or time.monotonic() < current[1] + grace_s:
                return None
            self._abandoned = True
            return current[0], list(self.records)


def watched(watch: TaskWatch | None, indices: list[int], seconds: float | None):
    """``watch.task(...)`` where there is a watch, else nothing."""
    return watch.task(indices, seconds) if watch is not None else nullcontext()
