"""A model kind that only spends time: for benchmarks and for tests of scheduling and crashes.

``sleep`` busy-waits (``busy: true``, a CPU-bound task like real model code) or sleeps for
``ms`` milliseconds (``ms: 0`` returns at once, either way); with ``sigma`` > 0 the duration is lognormal (median ``ms``), drawn from
the task's own generator so uneven workloads are reproducible too.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from pydantic import Field

from hpcml.models.base import Dataset, FitContext, ModelKind, ModelParams, register_model


class SleepParams(ModelParams):
    ms: float = Field(5.0, ge=0, description="median task duration in milliseconds")
    sigma: float = Field(0.0, ge=0, description="lognormal shape; 0 = every task takes ms")
    busy: bool = Field(True, description="spin the CPU instead of sleeping")
    fail_every: int = Field(0, ge=0, description="tasks whose index is a multiple of this raise (0 = none)")
    flaky_dir: str | None = Field(None, description="fail each task's first attempt, leaving a marker file here")
    report_loads: bool = Field(False, description="also output the worker's pid and how often it has loaded data")


@register_model
class SleepKind(ModelKind):
    name = "sleep"
    Params = SleepParams
    needs_target = False
    primary_metric = "slept_ms"
    greater_is_better = False
    cheap_refit = False

    def fit(self, params: SleepParams, data: Dataset, weights, ctx: FitContext):
        if params.fail_every and ctx.task_index is not None and ctx.task_index % params.fail_every == 0:
            raise RuntimeError(f"task {ctx.task_index} failed on purpose (fail_every={params.fail_every})")
        if params.flaky_dir is not None:
            marker = Path(params.flaky_dir, f"task-{ctx.task_index}")
            if not marker.exists():
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.touch()
                raise RuntimeError(f"task {ctx.task_index} fails on its first attempt (flaky_dir)")
        ms = params.ms * float(np.exp(params.sigma * ctx.rng.standard_normal())) if params.sigma else params.ms
        if ms <= 0:  # a no-op: no clock read, no kernel timer (time.sleep(0) still costs ~50 us)
            return ms
        end = time.perf_counter() + ms / 1000.0
        if params.busy:
            while time.perf_counter() < end:
                pass
        else:
            time.sleep(ms / 1000.0)
        return ms

    def outputs(self, params, fitted, data) -> dict[str, float]:
        out = {"slept_ms": float(fitted)}
        if params.report_loads:  # proof that data is loaded once per worker process, not per task
            import os

            # ... and that large data is mapped from the machine's one file, not copied
            X, stats = data.X, data.meta["map_stats"]()
            mapped = isinstance(X, np.memmap) and not X.flags.writeable
            out.update(pid=float(os.getpid()), data_loads=float(data.meta.get("loads", 0)),
                       data_mapped=float(mapped), data_file_inode=float(os.stat(X.filename).st_ino) if mapped else -1.0,
                       data_private_copies=float(stats["private"]), data_builds=float(stats["built"]))
        return out

    def score(self, params, fitted, data, mask) -> dict[str, float]:
        return {}
