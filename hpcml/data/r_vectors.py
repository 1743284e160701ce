"""Large R vectors once per machine: the values of an R loop's large matrix or vector, written
once as a file that every R worker maps (the R package's ``R/shared.R`` and ``src/shared.c``).

The R session calls :func:`publish` with the address of a vector's values in its own memory
(this Python runs inside that R process, through reticulate): the bytes are hashed and, unless
a file of that content is already there, written without a copy to ``r-<sha256>.bin``, in this
user's part of the map directory (``hpcml.data.mapped``; for backends whose workers may be on
other nodes, in ``<cache dir>/mapped``, which every node sees). The file appears whole (a
temporary file, fsync, then a hard link that never replaces an existing file), mode 0400.
Workers check the file as the Python side checks its shared data (``hpcml.trust``: this
user's, in directories no other user can write) before they map it.

The session holds a shared lock on each file it uses until :func:`release`; releasing one
whose run is not kept removes it unless another session holds it too, so the files of
finished loops do not pile up (a session that finds the file gone writes it again).
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import uuid
from pathlib import Path

from hpcml.data.cache import cache_dir
from hpcml.data.mapped import map_dir
from hpcml.trust import private_dir

log = logging.getLogger("hpcml.data")

_BLOCK = 64 << 20
# Files this process holds (path -> open file descriptor with a shared lock).
_HELD: dict[str, int] = {}


def _values(address: str, nbytes: int) -> memoryview:
    """The ``nbytes`` at ``address`` (a vector's values in this process's R), without a copy."""
    return memoryview((ctypes.c_char * nbytes).from_address(int(address, 16))).cast("B")


def _sha256(view: memoryview) -> str:
    h = hashlib.sha256()
    for start in range(0, len(view), _BLOCK):
        h.update(view[start:start + _BLOCK])
    return h.hexdigest()


def _hold(path: Path, nbytes: int) -> bool:
    """Take a shared lock on ``path`` if it is a complete file of ours; False if it is not
    there (or was removed before the lock was taken)."""
    import fcntl  # POSIX only, as mapping R vectors is

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        st = os.fstat(fd)
        current = os.stat(path)
        if (st.st_ino, st.st_dev) != (current.st_ino, current.st_dev) or st.st_size != nbytes \
                or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise OSError("not the file of this content")
    except OSError:
        os.close(fd)
        return False
    old = _HELD.pop(str(path), None)
    if old is not None:
        os.close(old)
    _HELD[str(path)] = fd
    return True


def _write(view: memoryview, path: Path, replace: bool) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            if hasattr(os, "posix_fallocate"):  # a full disk is an error now, not a short file
                os.posix_fallocate(fh.fileno(), 0, len(view))
            for start in range(0, len(view), _BLOCK):
                fh.write(view[start:start + _BLOCK])
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o400)
        if replace:  # what is there is not this content (a file cut short): never used, replaced
            os.replace(tmp, path)
        else:
            with contextlib.suppress(FileExistsError):  # another session wrote the same content first
                os.link(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def publish(address: str, nbytes: int, shared: bool = False) -> str | None:
    """The file holding the ``nbytes`` at ``address`` (written if this machine has none of that
    content), held until :func:`release`; None when there is no directory of this user's own
    to write it in (the vector then travels with the loop as before)."""
    root = private_dir(cache_dir() / "mapped" if shared else map_dir())
    if root is None:
        return None
    view = _values(address, int(nbytes))
    path = root / f"r-{_sha256(view)}.bin"
    for attempt in range(3):
        if _hold(path, len(view)):
            return str(path)
        try:
            _write(view, path, replace=attempt > 0)
        except OSError as err:
            log.warning("cannot write the shared copy of an R vector under %s (%s); it is copied to each worker",
                        root, err)
            return None
    return None


def release(paths: list[str], remove: bool) -> None:
    """Let go of files :func:`publish` gave; with ``remove``, delete each one no other session
    holds (a loop whose run is not kept)."""
    import fcntl  # POSIX only, as mapping R vectors is

    for path in paths:
        fd = _HELD.pop(path, None)
        if fd is None:
            continue
        try:
            if remove:
                with contextlib.suppress(OSError):  # held by another session: it removes it when done
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    os.unlink(path)
        finally:
            os.close(fd)
