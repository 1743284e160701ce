"""This machine's memory, and sizes said the way people read them: so a spec whose counts
would need more memory than the machine has is refused before anything is written."""
from __future__ import annotations

import os
from pathlib import Path

# The least a task costs the driver however small its outputs: its index in the lists of
# tasks to run and done, its row of results.parquet (task id, status, attempt, seconds) and
# the consolidated table in memory. Measured at about 400 bytes (100,000 tasks of `sleep`);
# 100 is a floor.
BYTES_PER_TASK = 100
# The least a worker process costs: an interpreter with numpy, pandas and scikit-learn
# imported (about 190 MiB resident measured; 50 MiB is a floor).
BYTES_PER_WORKER = 50 << 20


def machine_bytes() -> int:
    """Physical memory, or the cgroup's limit where that is lower (a container, a Slurm job)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def human(nbytes: float) -> str:
    """1536 -> '1.5 KiB'; 3e15 -> '2.7 PiB'."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if nbytes < 1024 or unit == "PiB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    raise AssertionError


def too_big(nbytes: float) -> str | None:
    """Why ``nbytes`` cannot be held here (None when it can)."""
    have = machine_bytes()
    if nbytes <= have:
        return None
    return f"would need about {human(nbytes)} of memory; this machine has {human(have)}"
