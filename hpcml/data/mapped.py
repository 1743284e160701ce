"""Data once per machine: the validated design matrix as a file every process maps.

The first process that needs a data set (the driver's checks, usually) writes its float64
design matrix ``X`` and target ``y`` as .npy files under ``<map dir>/<key>/``; every other
process on the machine (local workers, Dask workers, MPI ranks) maps those files read-only
(``np.load(mmap_mode="r")``), so the operating system keeps one copy in its page cache
whatever the number of workers. The key is a fingerprint of the source's content (a file's
bytes, or a generator's spec and library versions), the features and whether a target is
needed (a set of Parquet files: every file's content): a changed file gets a new key, the same content at another path shares one.

A lock file makes one process build while others wait; the entry appears by renaming a
finished temporary directory, so a reader never sees a partial one. A builder that died (a
node that crashed mid-build) leaves its temporary directory behind: whoever next holds the
key's lock removes it, since no other builder of that key can be at work then. Data smaller than
``$HPCML_MAP_MIN_BYTES`` (32 MiB by default) stays a private array in each process; the map
directory is ``$HPCML_MAP_DIR``, else ``<cache dir>/mapped`` (point it at node-local disk on a
cluster whose home directory is shared).

Entries are never shared between users: a map directory others may write (a site's 1777
scratch directory) holds each user's entries in ``user-<uid>/`` (mode 0700), and an entry is
read only when ``hpcml.trust`` finds that this user alone can have written it. Nothing read
back can run code: the arrays are .npy without pickles, the rest JSON that records the
entry's key, the matrix's size and the target's SHA-256, all checked on read. Files are 0600.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable

import numpy as np

from hpcml.data.cache import cache_dir
from hpcml.data.parts import is_file_set, parquet_parts
from hpcml.models.base import Dataset
from hpcml.trust import private_dir, trusted_file, why_untrusted

FORMAT = 2  # 2: JSON and .npy only, in a directory only this user can write
log = logging.getLogger("hpcml.data")

# What this process did for each data set it loaded: built the shared file, mapped one
# another process built, or kept a private copy (small data, no writable map directory).
_STATS = {"built": 0, "mapped": 0, "private": 0}


def map_dir() -> Path:
    return Path(os.environ.get("HPCML_MAP_DIR") or cache_dir() / "mapped")


def _root() -> Path | None:
    """This user's own part of the map directory (None: there is none to trust)."""
    return private_dir(map_dir())


def min_bytes() -> int:
    return int(os.environ.get("HPCML_MAP_MIN_BYTES", 32 << 20))


def map_stats() -> dict[str, int]:
    """How this process got its data sets: ``built``, ``mapped`` (shared), ``private`` (copied)."""
    return dict(_STATS)


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, computed once per version of the file on this machine (the
    digest is remembered by path, inode, size and modification time)."""
    st = path.stat()
    ident = f"{path.resolve()}|{st.st_dev}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}"
    root = _root()
    memo = root / "digests" / hashlib.sha256(ident.encode()).hexdigest()[:32] if root is not None else None
    if memo is not None and trusted_file(memo):  # a planted memo would name another data set's entry
        with contextlib.suppress(OSError):
            return memo.read_text().strip()
    with open(path, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    if memo is None:
        return digest
    with contextlib.suppress(OSError):
        memo.parent.mkdir(mode=0o700, exist_ok=True)
        tmp = memo.with_name(f"{memo.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(digest)
        tmp.chmod(0o600)
        os.replace(tmp, memo)
    return digest


@functools.lru_cache(maxsize=1)
def _generator_versions() -> list[str]:
    """NumPy's, pandas' and scikit-learn's versions, read once per process from the installed
    metadata: no import of scikit-learn (a second or two) in a driver whose data needs none."""
    from importlib.metadata import version

    return [np.__version__, version("pandas"), version("scikit-learn")]


def dataset_key(spec, features: list[str] | None, needs_target: bool) -> str:
    """The content fingerprint of one validated data set."""
    described = spec.model_dump(mode="json")
    path = Path(spec.source)
    if is_file_set(spec.source):  # every file's content, in the order their rows are read
        described["source"] = {"sha256": [file_digest(p) for p in parquet_parts(spec.source)]}
    elif ":" not in spec.source.split("/")[0] and path.is_file():
        described["source"] = {"sha256": file_digest(path)}  # content, not name
    else:  # generated data: the same spec and library versions give the same numbers
        described["versions"] = _generator_versions()
    text = json.dumps({"format": FORMAT, "data": described, "features": features, "target": needs_target},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@contextlib.contextmanager
def _locked(path: Path):
    try:
        import fcntl
    except ImportError:  # no flock (Windows): concurrent builders each rename; one wins
        yield
        return
    with os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600), "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def open_entry(entry: Path) -> Dataset | None:
    """The data set stored at ``entry``, mapped read-only; None if there is none, or if it is
    not this user's own, complete and as written (see the module's docstring)."""
    if not entry.is_dir() or why_untrusted(entry) is not None:
        return None
    files = {name: entry / name for name in ("dataset.json", "X.npy", "y.npy")}
    try:
        if not all(trusted_file(f) for name, f in files.items() if name != "y.npy" or f.exists()):
            return None
        info = json.loads(files["dataset.json"].read_text())
        check = info.pop("check")
        if check["key"] != entry.name or files["X.npy"].stat().st_size != check["x_bytes"]:
            return None
        if (_sha256(files["y.npy"]) if files["y.npy"].exists() else None) != check["y_sha256"]:
            return None
        X = np.load(files["X.npy"], mmap_mode="r", allow_pickle=False)
        y = np.load(files["y.npy"], mmap_mode="r", allow_pickle=False) if check["y_sha256"] else None
    except (OSError, KeyError, TypeError, ValueError):
        return None
    if info["image_shape"] is not None:
        info["image_shape"] = tuple(info["image_shape"])
    info["meta"]["mapped"] = str(entry)
    return Dataset(X=X, y=y, **info)


def _plain(value):
    """NumPy scalars as Python's (class labels), so the description is JSON."""
    return value.item() if isinstance(value, np.generic) else str(value)


def _allocator(tmp: Path) -> Callable[[tuple[int, int]], np.ndarray]:
    def allocate(shape: tuple[int, int]) -> np.ndarray:
        nbytes = 8 * shape[0] * shape[1]
        if nbytes < min_bytes():
            return np.empty(shape)
        try:
            tmp.mkdir(mode=0o700)
            X = np.lib.format.open_memmap(tmp / "X.npy", mode="w+", dtype=np.float64, shape=shape)
            if hasattr(os, "posix_fallocate"):  # a full disk is an error now, not a crash while writing
                with open(tmp / "X.npy", "r+b") as fh:
                    os.posix_fallocate(fh.fileno(), 0, X.offset + nbytes)
            return X
        except OSError as err:
            log.warning("cannot write the shared copy of the data under %s (%s); each process keeps its own", tmp, err)
            shutil.rmtree(tmp, ignore_errors=True)
            return np.empty(shape)

    return allocate


def _publish(data: Dataset, tmp: Path, entry: Path) -> None:
    data.X.flush()
    if data.y is not None:
        np.save(tmp / "y.npy", np.asarray(data.y, dtype=np.float64), allow_pickle=False)
    info = {"features": data.features, "target": data.target, "image_shape": data.image_shape,
            "classes": data.classes, "meta": data.meta,
            "check": {"key": entry.name, "x_bytes": (tmp / "X.npy").stat().st_size,
                      "y_sha256": _sha256(tmp / "y.npy") if data.y is not None else None}}
    (tmp / "dataset.json").write_text(json.dumps(info, default=_plain))
    for name in os.listdir(tmp):
        os.chmod(tmp / name, 0o600)  # no more open than the data's source could be
        with open(tmp / name, "rb") as fh:
            os.fsync(fh.fileno())
    try:
        os.rename(tmp, entry)
    except OSError:  # another process published it first (no flock): keep theirs
        shutil.rmtree(tmp, ignore_errors=True)


def _remove_abandoned(root: Path, key: str, mine: Path | None = None) -> None:
    """Temporary directories of ``key`` that no builder owns (the caller holds the key's lock)."""
    for stale in root.glob(f"{key}.*.tmp"):
        if stale != mine:
            log.info("removing %s, left by a build that did not finish", stale)
            shutil.rmtree(stale, ignore_errors=True)


def _tidy_if_free(root: Path, key: str) -> None:
    """Remove a dead builder's leftovers of ``key`` if its lock is free now (never waits)."""
    if not any(root.glob(f"{key}.*.tmp")):
        return
    try:
        import fcntl

        with os.fdopen(os.open(root / f"{key}.lock", os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600), "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by a builder at work: leave its directory be
            try:
                _remove_abandoned(root, key)
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    except (ImportError, OSError):
        return


class _BuiltMeanwhile(BaseException):
    """Raised out of a build once the lock shows another process has published the data."""


def load_shared(key: str, build: Callable[..., Dataset]) -> Dataset:
    """The data set of ``key``: mapped if this machine has it, else built by ``build(allocate=)``
    (shared when large enough, private otherwise).

    The machine-wide lock is taken only once ``build`` asks for a shared matrix: data too small
    to share is built privately without it, so a process that hangs or is stopped while it
    holds the lock (a SIGSTOPped MPI rank) never blocks the other processes' small loads."""
    root = _root()
    if root is None:  # no directory of this user's own to share through: each process its own copy
        _STATS["private"] += 1
        return build(allocate=np.empty)
    entry = root / key
    data = open_entry(entry)
    if data is not None:
        _STATS["mapped"] += 1
        _tidy_if_free(root, key)
        return data
    tmp = root / f"{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    shared = _allocator(tmp)
    with contextlib.ExitStack() as stack:
        def allocate(shape: tuple[int, int]) -> np.ndarray:
            if 8 * shape[0] * shape[1] < min_bytes():
                return np.empty(shape)
            try:
                stack.enter_context(_locked(root / f"{key}.lock"))
            except OSError:  # no writable map directory: a private copy, as before
                return np.empty(shape)
            if entry.exists():  # built while this process waited for the lock
                raise _BuiltMeanwhile
            _remove_abandoned(root, key, tmp)
            return shared(shape)

        try:
            data = build(allocate=allocate)
        except _BuiltMeanwhile:
            data = open_entry(entry)
            if data is not None:
                _STATS["mapped"] += 1
                return data
            data = build(allocate=np.empty)
        try:
            if not isinstance(data.X, np.memmap):
                _STATS["private"] += 1
                return data
            _publish(data, tmp, entry)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        del data  # unmap the writable matrix: from here on, only read-only maps of the file
        _STATS["built"] += 1
        return open_entry(entry) or build(allocate=np.empty)
