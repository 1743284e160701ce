"""What a run directory holds: done, failed and missing tasks (works mid-run, too)."""
from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hpcml.errors import SpecError
from hpcml.rundir.records import counts
from hpcml.spec import Job
from hpcml.rundir.lock import pid_alive
from hpcml.rundir.store import RunStore


def run_job(store: RunStore) -> Job:
    """The job a run directory was made for, or one line saying why it cannot be read."""
    try:
        return Job.from_json(json.dumps(store.read_spec()))
    except SpecError:
        raise
    except (ValidationError, KeyError, ValueError, TypeError) as err:
        raise SpecError.one("run_dir", str(store.spec_path), f"spec.json is damaged (not a job spec this hpcml "
                            f"can read: {type(err).__name__})") from None


def run_status(run_dir: str | Path) -> dict[str, Any]:
    """Counts of done, failed and missing tasks, and each failure; read as Arrow columns (a
    finished run's results.parquet alone), never as a Python object per task."""
    store = RunStore(run_dir)
    job = run_job(store)
    total = job.n_tasks
    done, failed = counts(store.latest_table(["task_index", "status"]))
    if failed.num_rows:  # the failures' ids and errors, read only when there are some
        failed = counts(store.latest_table(["task_id", "task_index", "status", "attempt", "error"]))[1]
    failures = failed.select([c for c in ("task_id", "attempt", "error") if c in failed.column_names]).to_pylist()
    return {"name": job.spec.name, "total": total, "done": done, "failed": len(failures),
            "missing": total - done - len(failures), "finished": store.read_summary() is not None,
            "failures": [{"task_id": r["task_id"], "attempt": int(r["attempt"]), "error": r.get("error") or ""}
                         for r in failures]}


def _holder(store: RunStore) -> str | None:
    """Who runs the run now ("pid 123 on node1"), from its lock; None when nobody holds it (a
    job array's elements take no lock: their run looks idle between collect calls)."""
    info = store.lock.holder()
    if not info:
        return None
    host, pid = info.get("host"), info.get("pid")
    if host == socket.gethostname() and isinstance(pid, int) and not pid_alive(pid):
        return None  # a driver that died here left its lock behind
    return f"pid {pid} on {host}"


def watch_line(st: dict[str, Any], holder: str | None, rate: float | None, batch: bool = False) -> str:
    """One line of ``hpcml status --watch``: counts, who runs it, throughput and time left."""
    left = st["total"] - st["done"] - st["failed"]
    line = f"{st['name']}: {st['done']}/{st['total']} done, {st['failed']} failed, {left} to go"
    if rate:
        line += f"; {rate:.3g} tasks/s, about {_duration(left / rate)} left" if left else f"; {rate:.3g} tasks/s"
    if holder:
        return line + f"; running ({holder})"
    if st["finished"]:
        return line + "; finished"
    return line + ("; batch jobs (hpcml submit: see squeue)" if batch else "; not running")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"


def watch(run_dir: str | Path, every_s: float, emit, clock=time.monotonic) -> dict[str, Any]:
    """Call ``emit(line)`` every ``every_s`` seconds with the run's state until it is finished,
    every task has a record, or nobody runs it (a run that ``hpcml submit`` handed to batch
    jobs, which take no lock, is watched until its tasks are done); the last status.
    Throughput counts the tasks recorded since watching began."""
    store = RunStore(run_dir)
    batch = (store.path / "submit" / "jobs.json").is_file()
    first = None
    while True:
        st, holder, now = run_status(run_dir), _holder(store), clock()
        settled = st["done"] + st["failed"]
        first = first or (now, settled)
        rate = (settled - first[1]) / (now - first[0]) if now > first[0] and settled > first[1] else None
        emit(watch_line(st, holder, rate, batch))
        if st["finished"] or (holder is None and (settled == st["total"] or not batch)):
            return st
        time.sleep(every_s)
