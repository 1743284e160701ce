"""One process at a time in a run directory: a lock file created with ``O_EXCL``.

``O_CREAT | O_EXCL`` is atomic on local file systems and on NFSv3+ (and Lustre, GPFS), so two
drivers on two nodes never both get the lock. The file names its holder (host and pid) and
its lease: the holder renews the file's modification time every quarter of ``lease_s`` from
a thread of its own. A lock left behind by a process that died on this host (``kill -9``) is
taken over at once; one held on another host is taken over once its lease has run out
unrenewed (its node crashed or lost the shared file system), and until then is reported with
its holder and how long ago it was renewed. Ages are read off the file system's clock (the
modification time of a file written just now), so the nodes' clocks need not agree. A holder
that finds its lock taken over (it was stopped longer than its lease) says so in one line.
"""
from __future__ import annotations

import atexit
import errno
import json
import os
import logging
import socket
import threading
import uuid
from pathlib import Path

from hpcml.errors import SpecError

LOCK_NAME = ".hpcml.lock"
LEASE_S = 60.0  # default lease; HPCML_LOCK_LEASE_S sets another (the holder's value is in the file)
log = logging.getLogger("hpcml")
_HELD: list["RunLock"] = []


def lease_s() -> float:
    try:
        value = float(os.environ.get("HPCML_LOCK_LEASE_S", LEASE_S))
    except ValueError:
        return LEASE_S
    return value if value > 0 else LEASE_S


def release_held() -> None:
    """Release every lock this process holds (a process about to end without its exit hooks)."""
    for lock in list(_HELD):
        lock.release()


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
        self._stop = threading.Event()

    def holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return None

    def acquire(self) -> "RunLock":
        if self.held:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"host": socket.gethostname(), "pid": os.getpid(), "lease_s": lease_s()}
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
            _HELD.append(self)
            atexit.register(self.release)
            self._stop = threading.Event()
            threading.Thread(target=self._renew, args=(me, self._stop), name="hpcml-lock-lease", daemon=True).start()
            return self
        raise self._refusal()

    def _renew(self, me: dict, stop: threading.Event) -> None:
        """The holder's lease: touch the lock every quarter lease; say so if it was taken over."""
        while not stop.wait(me["lease_s"] / 4):
            info = self.holder()
            if info is not None and (info.get("host"), info.get("pid")) != (me["host"], me["pid"]):
                log.error("the lock of run directory %s was taken over by host %s, pid %s (this process did not "
                          "renew it for %gs): two processes may now write there; stop one of them",
                          self.path.parent, info.get("host", "?"), info.get("pid", "?"), me["lease_s"])
                return
            try:
                os.utime(self.path)
            except OSError:  # gone or unreachable for now: try again at the next renewal
                pass

    def age_s(self) -> float | None:
        """Seconds since the lock was last renewed, by the file system's clock (None: no lock)."""
        probe = self.path.with_name(f"{LOCK_NAME}.clock-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}")
        try:
            then = self.path.stat().st_mtime
            probe.write_bytes(b"")
            now = probe.stat().st_mtime
        except OSError:
            return None
        finally:
            probe.unlink(missing_ok=True)
        return max(0.0, now - then)

    def _take_over_stale(self, host: str) -> bool:
        info = self.holder()
        if info is None or not info:  # being written this instant, or emptied: not ours to judge
            return False
        if info.get("host") == host:
            if pid_alive(int(info.get("pid", 0))):
                return False
        else:
            age, lease = self.age_s(), info.get("lease_s")
            if age is None or not isinstance(lease, (int, float)) or age <= lease:
                return False  # alive as far as anyone can tell (a lock with no lease never runs out)
        return self._remove(info)

    def _remove(self, stale: dict) -> bool:
        """Move the stale lock aside, and put it back if it was not the one judged stale (another
        process took the lock over in between): only one of several takers removes it."""
        aside = self.path.with_name(f"{LOCK_NAME}.stale-{socket.gethostname()}-{os.getpid()}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return True  # removed by another taker: try to create it
        try:
            moved = json.loads(aside.read_text() or "{}")
        except (OSError, ValueError):
            moved = {}
        if moved.get("host") != stale.get("host") or moved.get("pid") != stale.get("pid"):
            try:  # a live holder's lock: back where it was, unless yet another process holds it now
                os.link(aside, self.path)
            except FileExistsError:
                pass
            aside.unlink(missing_ok=True)
            return True  # judged again on the next try
        aside.unlink(missing_ok=True)
        log.warning("run directory %s: took over the lock of host %s, pid %s (%s)", self.path.parent,
                    stale.get("host", "?"), stale.get("pid", "?"),
                    "no longer running" if stale.get("host") == socket.gethostname()
                    else f"not renewed for more than its lease of {stale.get('lease_s'):g}s")
        return True

    def _refusal(self) -> SpecError:
        info = self.holder() or {}
        who = f"host {info.get('host', '?')}, pid {info.get('pid', '?')}"
        age, lease = self.age_s(), info.get("lease_s")
        if info.get("host") != socket.gethostname() and age is not None and isinstance(lease, (int, float)):
            who += f", its lock renewed {age:.0f}s ago: taken over when not renewed for {lease:g}s"
        return SpecError.one("output", str(self.path.parent),
                             f"run directory is in use by another hpcml process ({who}); wait for it to end, "
                             f"or delete {self.path} if that process is gone")

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        self._stop.set()
        if self in _HELD:
            _HELD.remove(self)
        info = self.holder()
        if info and info.get("pid") == os.getpid() and info.get("host") == socket.gethostname():
            self.path.unlink(missing_ok=True)
