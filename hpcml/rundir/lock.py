"""One process at a time in a run directory: a lock file created with ``O_EXCL``.

``O_CREAT | O_EXCL`` is atomic on local file systems and on NFSv3+ (and Lustre, GPFS), so two
drivers on two nodes never both get the lock. The file names its holder (host and pid); a
lock left behind by a process that died on this host (``kill -9``, a node's reboot never
reaches here) is taken over, a lock held on another host is reported with its holder.
"""
from __future__ import annotations

import atexit
import errno
import json
import os
import socket
from pathlib import Path

from hpcml.errors import SpecError

LOCK_NAME = ".hpcml.lock"


def pid_alive(pid: int) -> bool:
    """Whether a process of this host has ``pid`` (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


class RunLock:
    """``acquire()`` or SpecError naming the holder; ``release()`` is idempotent (and runs at exit)."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.held = False

    def holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return None

    def acquire(self) -> "RunLock":
        if self.held:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"host": socket.gethostname(), "pid": os.getpid()}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self._take_over_stale(me["host"]):
                    continue
                raise self._refusal() from None
            except OSError as err:
                if err.errno in (errno.EROFS, errno.EACCES):
                    raise SpecError.one("output", str(self.path.parent), f"cannot write here: {err.strerror}") from None
                raise
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps(me))
            self.held = True
            atexit.register(self.release)
            return self
        raise self._refusal()

    def _take_over_stale(self, host: str) -> bool:
        info = self.holder()
        if info is None or not info:  # being written this instant, or emptied: not ours to judge
            return False
        if info.get("host") != host or pid_alive(int(info.get("pid", 0))):
            return False
        try:  # the holder died on this host: remove its lock and try again
            self.path.unlink()
        except FileNotFoundError:
            pass
        return True

    def _refusal(self) -> SpecError:
        info = self.holder() or {}
        who = f"host {info.get('host', '?')}, pid {info.get('pid', '?')}"
        return SpecError.one("output", str(self.path.parent),
                             f"run directory is in use by another hpcml process ({who}); wait for it to end, "
                             f"or delete {self.path} if that process is gone")

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        info = self.holder()
        if info and info.get("pid") == os.getpid() and info.get("host") == socket.gethostname():
            self.path.unlink(missing_ok=True)
