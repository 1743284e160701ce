"""Which chunks are running now, seen from the run directory alone (no coordinator to ask).

A worker that writes its own chunk files (the run directory is shared with it) creates a small
marker as it starts a chunk,

    run_dir/running/<first task>-<pid>-<host>.json    {"host", "pid", "start", "chunk", "tasks"}

and removes it once the chunk's file is written (or its records are given up on). A marker
costs one small file and one removal per chunk, next to the chunk file itself; it is for
watching only, so it is written without fsync and a failure to write it never costs a chunk.

A marker left behind is not running: ``hpcml status`` counts only markers made since the run's
current session began (``sessions.json``, rewritten by each run or resume; both times are the
file system's modification times, so the nodes' clocks need not agree), and of those on this
host only the ones whose process is alive. A marker of a process that died on another node
counts until the run is resumed or finished (the driver clears the folder at both).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from hpcml.rundir.lock import pid_alive

RUNNING = "running"
SESSIONS = "sessions.json"


def _marker(run_dir: str | Path, first: int) -> Path:
    return Path(run_dir, RUNNING, f"{first:07d}-{os.getpid()}-{socket.gethostname()}.json")


def mark(run_dir: str | Path, indices) -> None:
    """This process starts the chunk of task ``indices`` (written to the run directory)."""
    path = _marker(run_dir, indices[0])
    info = {"host": socket.gethostname(), "pid": os.getpid(), "start": time.time(),
            "chunk": f"{indices[0]:07d}-{indices[-1]:07d}", "tasks": len(indices)}
    try:
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(info))
    except OSError:
        pass  # a read-only or vanished directory: the chunk itself reports what matters


def unmark(run_dir: str | Path, indices) -> None:
    """The chunk of ``indices`` that this process started has its file (or is given up on)."""
    try:
        _marker(run_dir, indices[0]).unlink()
    except OSError:
        pass


def clear(run_dir: str | Path) -> None:
    """Every marker gone: the driver's run ended (or a new session begins), so none runs."""
    shutil.rmtree(Path(run_dir, RUNNING), ignore_errors=True)


def running(run_dir: str | Path) -> list[dict[str, Any]]:
    """The chunks running now, oldest first: each ``host``, ``pid``, ``tasks`` (in the chunk)
    and ``age_s`` (seconds since it started, by the file system's clock)."""
    folder = Path(run_dir, RUNNING)
    try:
        entries = list(os.scandir(folder))
        session = Path(run_dir, SESSIONS).stat().st_mtime
    except OSError:
        return []
    here, now, found = socket.gethostname(), time.time(), []
    for entry in entries:
        first, _, rest = entry.name.removesuffix(".json").partition("-")
        pid, _, host = rest.partition("-")
        if not (first.isdigit() and pid.isdigit() and host):
            continue
        try:
            stamp = entry.stat().st_mtime
        except OSError:  # removed this instant: the chunk's file is written
            continue
        if stamp < session or (host == here and not pid_alive(int(pid))):
            continue  # left by an earlier session, or by a process of this host that is gone
        try:
            tasks = int(json.loads(Path(entry.path).read_text()).get("tasks", 1))
        except (OSError, ValueError, TypeError, AttributeError):  # being written, or gone
            tasks = 1
        found.append({"host": host, "pid": int(pid), "tasks": tasks, "age_s": max(0.0, now - stamp)})
    return sorted(found, key=lambda m: -m["age_s"])
