"""What a run directory holds: done, failed and missing tasks (works mid-run, too)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from hpcml.errors import SpecError
from hpcml.spec import Job
from hpcml.store import RunStore


def run_status(run_dir: str | Path) -> dict[str, Any]:
    store = RunStore(run_dir)
    if not store.exists():
        raise SpecError.one("run_dir", str(run_dir), "not an hpcml run directory (no spec.json)")
    job = Job.from_json(store.spec_path.read_text())
    total = job.n_tasks
    latest = store.latest_records()
    done = int((latest["status"] == "ok").sum()) if not latest.empty else 0
    failed = latest.loc[latest["status"] != "ok"] if not latest.empty else latest
    return {"name": job.spec.name, "total": total, "done": done, "failed": len(failed),
            "missing": total - done - len(failed),
            "failures": [{"task_id": r.task_id, "attempt": int(r.attempt), "error": getattr(r, "error", "")}
                         for r in failed.itertuples()]}

