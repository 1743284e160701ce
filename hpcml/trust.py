"""What hpcml reads back from disk only when the current user alone can have written it.

Pickles run code when loaded, and a cached copy of the data decides the numbers, so a file
read back from a cache or a run directory must be one nobody else could have planted or
replaced: owned by the current user (or root), not writable by group or others, and in
directories that others cannot write either, unless sticky (``/tmp``, a site's 1777 scratch
directory: there others may add entries but not rename or replace ours). ``ssh`` and ``sudo``
check their files the same way.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH


def owner_name(uid: int) -> str:
    try:
        import pwd

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _mine(st: os.stat_result) -> bool:
    return st.st_uid in (os.geteuid(), 0)


def why_untrusted(path: Path, *, own: bool = True) -> str | None:
    """Why ``path`` (a file or directory, not followed if a link) may hold what another user
    wrote; None when only this user (or root) can have written it. ``own``: it must also be
    owned by this user (root's files are trusted only in the parent directories)."""
    path = Path(os.path.abspath(path))
    try:
        st = os.lstat(path)
    except OSError as err:
        return f"cannot be checked ({err.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if st.st_uid != os.geteuid() and (own or st.st_uid != 0):
        return f"is owned by {owner_name(st.st_uid)}"
    if st.st_mode & OTHERS_WRITE:
        return "is writable by other users"
    for parent in path.parents:
        try:
            pst = os.stat(parent)
        except OSError as err:
            return f"its directory {parent} cannot be checked ({err.strerror})"
        if not _mine(pst):
            return f"its directory {parent} is owned by {owner_name(pst.st_uid)}"
        if pst.st_mode & OTHERS_WRITE and not pst.st_mode & stat.S_ISVTX:
            return f"its directory {parent} is writable by other users"
    return None


def private_dir(root: Path) -> Path | None:
    """A directory for this user's cached files under ``root``: ``root`` itself when it is
    trusted (created mode 0700 if missing), else ``root/user-<uid>`` (a site's shared
    directory, all may write), created 0700 and checked; None if neither can be used."""
    root = Path(root)
    for candidate in (root, root / f"user-{os.geteuid()}"):
        try:  # every directory created here is 0700 (Path.mkdir gives parents the umask's mode)
            for missing in [p for p in (candidate, *candidate.parents) if not p.exists()][::-1]:
                missing.mkdir(mode=0o700, exist_ok=True)
        except OSError:
            return None
        if why_untrusted(candidate) is None:
            return candidate
    return None


def trusted_file(path: Path) -> bool:
    """Whether ``path`` is a regular file only this user can have written."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode) and why_untrusted(path) is None
    except OSError:
        return False


def written_by_me(path: Path) -> bool:
    """Whether ``path`` is a regular file (not a link) of this user that only this user can
    write: the per-file check of a directory already checked (a run's chunk files)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & OTHERS_WRITE


def why_not_my_run_dir(path: Path) -> str | None:
    """Why hpcml must not adopt ``path`` as a run directory, whose chunk files it reads back
    (a map's results are pickles): owned by another user, or writable by everyone without the
    sticky bit. A group-writable one is allowed (group project directories, umask 002): every
    file read back is itself checked with ``written_by_me``."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        return f"cannot be checked ({err.strerror})"
    if st.st_uid != os.geteuid():
        return f"is owned by {owner_name(st.st_uid)}"
    if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
        return "is writable by every user"
    return None
