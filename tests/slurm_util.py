"""Helpers for tests against the real Slurm: wait for jobs, read their state and logs."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path


def squeue_ids(name: str | None = None, job: str | None = None) -> list[str]:
    """Ids of queued/running jobs (array elements as 12_3), by job name or by job id."""
    cmd = ["squeue", "-h", "-o", "%i"] + (["--name", name] if name else []) + (["-j", job] if job else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    return proc.stdout.split() if proc.returncode == 0 else []


def job_states(job_id: str) -> list[str]:
    """JobState of a job (one per element for an array); known for MinJobAge after it ends."""
    proc = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, timeout=30)
    return [f.split("=", 1)[1] for line in proc.stdout.splitlines() for f in line.split() if f.startswith("JobState=")]


def wait_done(job_id: str, timeout: float, logs: Path | None = None) -> list[str]:
    """Wait until no element of ``job_id`` is pending or running; its final states."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not squeue_ids(job=job_id):
            return job_states(job_id)
        time.sleep(0.5)
    subprocess.run(["scancel", job_id], capture_output=True, timeout=30)
    raise AssertionError(f"Slurm job {job_id} still queued/running after {timeout:.0f}s: "
                         f"{job_states(job_id)}\n{read_logs(logs) if logs else ''}")


def read_logs(folder: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(Path(folder).glob("*")) if p.is_file())
