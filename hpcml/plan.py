"""Job -> tasks with stable ids and seeds, and tasks -> chunks.

A task's result depends only on (spec, task index): its generator is
``SeedSequence(job.seed, spawn_key=(index,))`` and everything it shares with other tasks
(CV folds, the sweep holdout) is drawn from the job seed under a spawn key of its own.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Spawn keys of length 2 for shared draws never collide with the (index,) keys of tasks.
_FOLDS_KEY = 0xF01D
_HOLDOUT_KEY = 0x5EED


@dataclass(frozen=True)
class Task:
    index: int
    id: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Chunk:
    """The unit sent to a worker and the unit of durability (one result file)."""

    indices: tuple[int, ...]

    @property
    def id(self) -> str:
        return f"{self.indices[0]:07d}-{self.indices[-1]:07d}"

    def __len__(self) -> int:
        return len(self.indices)


def task_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def plan_tasks(job) -> list[Task]:
    plan = job.spec.plan
    kind = plan.kind
    opts = plan.options
    if kind == "bootstrap":
        params = [{"replicate": i} for i in range(opts.replicates)]
    elif kind == "cv":
        params = [{"repeat": r, "fold": f} for r in range(opts.repeats) for f in range(opts.folds)]
    elif kind == "sweep":
        combos = [dict(zip(opts.grid, values)) for values in itertools.product(*opts.grid.values())]
        params = [{"repeat": r, "params": c} for c in combos for r in range(opts.repeats)]
    elif kind == "replicate":
        params = [{"replicate": i} for i in range(opts.n)]
    elif kind == "shards":
        params = [{"shard": i, "n_shards": opts.n} for i in range(opts.n)]
    else:
        params = [{}]
    return [Task(i, f"{kind}/{i:06d}", p) for i, p in enumerate(params)]


def cv_folds(seed: int, n: int, folds: int, repeat: int) -> np.ndarray:
    """Fold label of each row for one CV repeat: a seeded permutation cut into near-equal parts."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_FOLDS_KEY, repeat)))
    labels = np.empty(n, dtype=np.int64)
    labels[rng.permutation(n)] = np.arange(n) % folds
    return labels


def holdout_mask(seed: int, n: int, fraction: float) -> np.ndarray:
    """Rows held out for scoring a sweep; the same for every task of the job."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_HOLDOUT_KEY,)))
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[: max(1, int(round(fraction * n)))]] = True
    return mask


def shard_bounds(n_rows: int, shard: int, n_shards: int) -> tuple[int, int]:
    """Contiguous block of rows for one shard (sizes differ by at most one)."""
    base, extra = divmod(n_rows, n_shards)
    start = shard * base + min(shard, extra)
    return start, start + base + (1 if shard < extra else 0)


def auto_chunk_size(n_tasks: int, workers: int) -> int:
    # About 8 chunks per worker: amortizes per-chunk cost (scheduling, one result file)
    # while keeping the tail short and a crash losing little work.
    return max(1, min(1000, math.ceil(n_tasks / (8 * max(1, workers)))))


def make_chunks(indices: list[int], chunk_size: int) -> list[Chunk]:
    return [Chunk(tuple(indices[i : i + chunk_size])) for i in range(0, len(indices), chunk_size)]
