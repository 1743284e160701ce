"""What a run directory holds: done, failed and missing tasks (works mid-run, too)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hpcml.errors import SpecError
from hpcml.rundir.records import counts
from hpcml.spec import Job
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
