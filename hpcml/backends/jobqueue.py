"""Batch-scheduler clusters for the Dask backend, through dask-jobqueue.

dask-jobqueue writes and submits the worker job scripts; this module only maps hpcml's
options (units in the names: ``mem_gb``, ``walltime_min``) onto the keyword arguments of
the scheduler's cluster class. Adding a scheduler is one line in ``CLUSTERS``.
"""
from __future__ import annotations

import sys
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# name -> (dask_jobqueue class, keyword its account/project directive uses, walltime format)
CLUSTERS: dict[str, tuple[str, str | None, str]] = {
    "slurm": ("SLURMCluster", "account", "hms"),
    "pbs": ("PBSCluster", "account", "hms"),
    "sge": ("SGECluster", "project", "hms"),
    "lsf": ("LSFCluster", "project", "hm"),
    "oar": ("OARCluster", "project", "hms"),
    "moab": ("MoabCluster", "account", "hms"),
    "htcondor": ("HTCondorCluster", None, ""),
}
ClusterName = Literal["local", "slurm", "pbs", "sge", "lsf", "oar", "moab", "htcondor"]


class Adapt(BaseModel):
    model_config = ConfigDict(extra="forbid")
    minimum_jobs: int = Field(0, ge=0)
    maximum_jobs: int = Field(gt=0)

    @model_validator(mode="after")
    def _order(self) -> "Adapt":
        if self.minimum_jobs > self.maximum_jobs:
            raise ValueError(f"minimum_jobs ({self.minimum_jobs}) exceeds maximum_jobs ({self.maximum_jobs})")
        return self


class JobResources(BaseModel):
    """What one batch job of Dask workers asks the scheduler for."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    cores: int = Field(1, gt=0, description="cores per job (shared by its worker processes)")
    processes: int = Field(1, gt=0, description="dask worker processes per job")
    mem_gb: float = Field(2.0, gt=0, description="memory per job in GB")
    walltime_min: int = Field(30, gt=0, description="job time limit in minutes")
    queue: str | None = Field(None, alias="partition", description="queue / partition")
    account: str | None = Field(None, description="account (project) charged")
    job_extra_directives: list[str] = Field(default_factory=list, description="extra '#SBATCH'-style lines")
    gpus: int | None = Field(None, gt=0, description="GPUs per job (Slurm --gres=gpu:N, PBS ngpus=N)")
    interface: str | None = Field("lo", description="network interface the workers listen on (lo: one machine)")
    local_directory: str | None = Field(None, description="node-local scratch for worker spill files")
    log_directory: str | None = Field(None, description="job logs (default: <run dir>/logs/dask)")
    python: str = Field(sys.executable, description="python on the compute nodes (default: this one)")
    lifetime_min: float | None = Field(None, gt=0, description="retire each worker after this long (set below walltime)")
    lifetime_stagger_min: float | None = Field(None, ge=0, description="spread retirements by up to this much")
    jobs: int | None = Field(None, gt=0, description="fixed number of jobs (scale(jobs=N))")
    adapt: Adapt | None = Field(None, description="adaptive scaling between minimum_jobs and maximum_jobs")

    @model_validator(mode="after")
    def _one_scaling(self) -> "JobResources":
        if self.jobs is not None and self.adapt is not None:
            raise ValueError("give jobs or adapt, not both")
        if self.processes > self.cores:
            raise ValueError(f"processes ({self.processes}) exceeds cores ({self.cores})")
        return self

    def n_jobs(self) -> int:
        if self.adapt is not None:
            return self.adapt.maximum_jobs
        return self.jobs or 1

    def startup_workers(self) -> int:
        """Workers to wait for before running: all of a fixed scale, else the adaptive minimum
        (0 is fine: adaptive scaling asks for jobs once chunks are submitted)."""
        jobs = self.adapt.minimum_jobs if self.adapt is not None else (self.jobs or 1)
        return jobs * self.processes


def _walltime(minutes: int, fmt: str) -> str:
    h, m = divmod(minutes, 60)
    return f"{h:02d}:{m:02d}" if fmt == "hm" else f"{h:02d}:{m:02d}:00"


def cluster_kwargs(name: str, res: JobResources, job_name: str, log_directory: str) -> dict[str, Any]:
    """hpcml resources -> keyword arguments of the dask-jobqueue class for ``name``."""
    _, account_kw, wall_fmt = CLUSTERS[name]
    directives = list(res.job_extra_directives)
    if res.gpus:
        directives.append(f"--gres=gpu:{res.gpus}" if name == "slurm" else f"-l ngpus={res.gpus}")
    worker_args: list[str] = []
    if res.lifetime_min:
        worker_args += ["--lifetime", f"{res.lifetime_min * 60:.0f}s"]
        if res.lifetime_stagger_min:
            worker_args += ["--lifetime-stagger", f"{res.lifetime_stagger_min * 60:.0f}s"]
    kw: dict[str, Any] = dict(
        cores=res.cores, processes=res.processes, memory=f"{res.mem_gb:g}GB", interface=res.interface,
        python=res.python, job_name=job_name, log_directory=log_directory, job_extra_directives=directives,
        worker_extra_args=worker_args)
    if res.local_directory:
        kw["local_directory"] = res.local_directory
    if wall_fmt:
        kw["walltime"] = _walltime(res.walltime_min, wall_fmt)
    if res.queue and name != "htcondor":
        kw["queue"] = res.queue
    if res.account and account_kw:
        kw[account_kw] = res.account
    if name == "htcondor":
        kw["disk"] = f"{res.mem_gb:g}GB"  # HTCondorCluster requires a disk request
    return kw


def make_jobqueue_cluster(name: str, res: JobResources, job_name: str, log_directory: str):
    import dask_jobqueue

    cls = getattr(dask_jobqueue, CLUSTERS[name][0])
    cluster = cls(**cluster_kwargs(name, res, job_name, log_directory))
    if res.adapt is not None:
        cluster.adapt(minimum_jobs=res.adapt.minimum_jobs, maximum_jobs=res.adapt.maximum_jobs)
    else:
        cluster.scale(jobs=res.jobs or 1)
    return cluster
