"""What a run directory holds: done, failed and missing tasks, and the chunks running now
(works mid-run, too)."""
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
from hpcml.rundir.running import running
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
    finished run's results.parquet alone), never as a Python object per task. ``running``:
    the chunks workers run now (``running_tasks`` in them; ``oldest_running_s``, the age of
    the oldest, or None), from the markers of workers that write their own chunk files
    (``hpcml.rundir.running``); 0 where records travel back to the driver."""
    store = RunStore(run_dir)
    job = run_job(store)
    total = job.n_tasks
    # The markers before the records: a chunk that ends between the two reads shows as running
    # and done for a moment, never as neither.
    now = running(store.path)
    done, failed = counts(store.latest_table(["task_index", "status"]))
    if failed.num_rows:  # the failures' ids and errors, read only when there are some
        failed = counts(store.latest_table(["task_id", "task_index", "status", "attempt", "error"]))[1]
    failures = failed.select([c for c in ("task_id", "attempt", "error") if c in failed.column_names]).to_pylist()
    return {"name": job.spec.name, "total": total, "done": done, "failed": len(failures),
            "missing": total - done - len(failures), "finished": store.read_summary() is not None,
            "running": len(now), "running_tasks": sum(m["tasks"] for m in now),
            "oldest_running_s": round(now[0]["age_s"], 1) if now else None,
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


def _running(st: dict[str, Any]) -> str:
    """What runs among the tasks to go, ``' (2 running, the oldest for 40 s)'``, or '' when
    none does; chunks of several tasks are named as such (a chunk runs its tasks one after
    another)."""
    n, tasks = st.get("running", 0), st.get("running_tasks", 0)
    if not n:
        return ""
    what = f"{n} running" if tasks == n else f"{n} chunks running: {tasks} tasks"
    return f" ({what}, the oldest for {_duration(st['oldest_running_s'] or 0)})"


def status_line(st: dict[str, Any]) -> str:
    """``hpcml status``'s line: the tasks done, failed and missing (some of them running)."""
    return (f"{st['name']}: {st['total']} tasks: {st['done']} done, {st['failed']} failed, "
            f"{st['missing']} missing{_running(st)}")


def watch_line(st: dict[str, Any], holder: str | None, rate: float | None, batch: bool = False) -> str:
    """One line of ``hpcml status --watch``: counts (the chunks running now among the tasks
    to go), who runs it, throughput and time left."""
    left = st["total"] - st["done"] - st["failed"]
    line = f"{st['name']}: {st['done']}/{st['total']} done, {st['failed']} failed, {left} to go{_running(st)}"
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
