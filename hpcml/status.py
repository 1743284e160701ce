"""What a run directory holds: done, failed and missing tasks (works mid-run, too)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hpcml.errors import SpecError
from hpcml.spec import Job
from hpcml.store import RunStore


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
    store = RunStore(run_dir)
    job = run_job(store)
    total = job.n_tasks
    latest = store.latest_records()
    done = int((latest["status"] == "ok").sum()) if not latest.empty else 0
    failed = latest.loc[latest["status"] != "ok"] if not latest.empty else latest
    return {"name": job.spec.name, "total": total, "done": done, "failed": len(failed),
            "missing": total - done - len(failed),
            "failures": [{"task_id": r.task_id, "attempt": int(r.attempt), "error": getattr(r, "error", "")}
                         for r in failed.itertuples()]}

