"""Batch-scheduler clusters for the Dask backend, through dask-jobqueue.

dask-jobqueue writes and submits the worker job scripts; this module only maps hpcml's
options (units in the names: ``mem_gb``, ``walltime_min``) onto the keyword arguments of
the scheduler's cluster class. Adding a scheduler is one line in ``CLUSTERS`` (and one in
``_GPU_DIRECTIVE`` if it can ask for GPUs).
"""
from __future__ import annotations

import contextlib
import sys
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hpcml.backends.netif import Choice, named_interface, reaching_interface
from hpcml.errors import SpecError

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
# The `cluster` option's choices, made from CLUSTERS: a scheduler added there is accepted by the spec.
ClusterName = Literal[("local", *CLUSTERS)]  # type: ignore[valid-type]


def bad_option(field: str, value: Any, message: str) -> SpecError:
    return SpecError.one(f"backend.{field}", value, message)


class Adapt(BaseModel):
    model_config = ConfigDict(extra="forbid")
    minimum_jobs: int = Field(0, ge=0)
    maximum_jobs: int = Field(gt=0)

    @model_validator(mode="after")
    def _order(self) -> "Adapt":
        if self.minimum_jobs > self.maximum_jobs:
            raise bad_option("adapt.minimum_jobs", self.minimum_jobs, f"exceeds maximum_jobs ({self.maximum_jobs})")
        return self


class JobResources(BaseModel):
    """What one batch job of Dask workers asks the scheduler for."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    cores: int = Field(1, gt=0, description="cores per job (shared by its worker processes)")
    processes: int = Field(1, gt=0, description="dask worker processes per job (each runs one chunk at a time)")
    mem_gb: float = Field(2.0, gt=0, description="memory per job in GB")
    walltime_min: int = Field(30, gt=0, description="job time limit in minutes")
    queue: str | None = Field(None, alias="partition", description="queue / partition")
    account: str | None = Field(None, description="account (project) charged")
    job_extra_directives: list[str] = Field(default_factory=list, description="extra '#SBATCH'-style lines")
    gpus: int | None = Field(None, gt=0, description="GPUs per job (Slurm --gres=gpu:N, PBS ngpus=N, ...)")
    interface: str | None = Field(None, description="network interface of the scheduler and workers (default: "
                                  "the scheduler on the one that reaches other nodes, workers by their route to it)")
    local_directory: str | None = Field(None, description="node-local scratch for worker spill files")
    log_directory: str | None = Field(None, description="job logs (default: <run dir>/logs/dask)")
    python: str = Field(sys.executable, description="python on the compute nodes (default: this one)")
    job_script_prologue: list[str] = Field(default_factory=list, description="shell lines run before the worker "
                                           "starts (module load, source venv/bin/activate)")
    lifetime_min: float | None = Field(None, gt=0, description="retire each worker after this long (set below "
                                       "walltime_min; default: walltime_min less a margin, see lifetime_s); its "
                                       "job is replaced, so a run may outlast one walltime")
    lifetime_stagger_min: float | None = Field(None, ge=0, description="spread retirements by up to this much")
    jobs: int | None = Field(None, gt=0, description="fixed number of jobs (adapt between N and N: a job "
                             "that ends, its worker retired or lost, is replaced)")
    adapt: Adapt | None = Field(None, description="adaptive scaling between minimum_jobs and maximum_jobs")

    @model_validator(mode="after")
    def _one_scaling(self) -> "JobResources":
        # SpecError, not ValueError: pydantic would name only "backend" for a cross-field check.
        if self.jobs is not None and self.adapt is not None:
            raise bad_option("adapt", self.adapt.model_dump(), f"give jobs ({self.jobs}) or adapt, not both")
        if self.processes > self.cores:
            raise bad_option("processes", self.processes, f"exceeds cores ({self.cores})")
        if self.lifetime_min is not None and self.lifetime_min + (self.lifetime_stagger_min or 0) >= self.walltime_min:
            raise bad_option("lifetime_min", self.lifetime_min, f"plus lifetime_stagger_min must stay below "
                             f"walltime_min ({self.walltime_min}), or the scheduler kills workers mid-chunk")
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

    def lifetime_s(self) -> tuple[float, float]:
        """(lifetime, stagger) of each worker in seconds: ``lifetime_min`` and
        ``lifetime_stagger_min`` when given, else the walltime less a margin (a tenth of it,
        20 s to 5 min) and a stagger of a quarter of that margin, so that a worker retires
        gracefully before the batch scheduler kills its job and no chunk is cut off."""
        if self.lifetime_min is not None:
            return self.lifetime_min * 60, (self.lifetime_stagger_min or 0) * 60
        walltime = self.walltime_min * 60
        margin = min(300.0, max(20.0, walltime / 10))
        return walltime - margin, margin / 4

    def scaling(self) -> Adapt:
        """Adaptive bounds. Retiring workers (every batch worker has a lifetime) need them even
        for a fixed ``jobs: N``: a fixed-scale cluster does not replace a job that ended, adapt does."""
        if self.adapt is not None:
            return self.adapt
        return Adapt(minimum_jobs=self.jobs or 1, maximum_jobs=self.jobs or 1)


def _walltime(minutes: int, fmt: str) -> str:
    h, m = divmod(minutes, 60)
    return f"{h:02d}:{m:02d}" if fmt == "hm" else f"{h:02d}:{m:02d}:00"


# GPU request per scheduler: a directive line, or (HTCondor) a submit-file key.
_GPU_DIRECTIVE = {"slurm": "--gres=gpu:{n}", "pbs": "-l ngpus={n}", "moab": "-l ngpus={n}", "sge": "-l gpu={n}",
                  "lsf": '-gpu "num={n}"'}


def cluster_kwargs(name: str, res: JobResources, job_name: str, log_directory: str) -> dict[str, Any]:
    """hpcml resources -> keyword arguments of the dask-jobqueue class for ``name``."""
    _, account_kw, wall_fmt = CLUSTERS[name]
    directives: list[str] | dict[str, str] = list(res.job_extra_directives)
    if name == "htcondor":
        # HTCondorCluster takes its extra lines as a mapping of submit-file keys.
        directives = dict(_condor_pair(line) for line in directives)
        if res.gpus:
            directives["request_gpus"] = str(res.gpus)
    elif res.gpus:
        if name not in _GPU_DIRECTIVE:
            raise bad_option("gpus", res.gpus, f"not mapped for cluster {name!r}; request GPUs in job_extra_directives")
        directives.append(_GPU_DIRECTIVE[name].format(n=res.gpus))
    # One thread per worker process whatever cores/processes says: a worker runs one chunk at
    # a time, so per-task threads (threads_per_task) and timeouts behave as on every backend.
    # The dask-worker CLI keeps the last --nthreads given.
    worker_args: list[str] = ["--nthreads", "1"]
    # Every worker retires before its job's walltime (dask_watch.py: nor does it start a chunk
    # it has no time left for); its chunk moves to another worker without costing a retry.
    # (HTCondor jobs have no walltime: there only a lifetime_min given is used.)
    if wall_fmt or res.lifetime_min:
        lifetime, stagger = res.lifetime_s()
        worker_args += ["--lifetime", f"{lifetime:.0f}s"]
        if stagger:
            worker_args += ["--lifetime-stagger", f"{stagger:.0f}s"]
    kw: dict[str, Any] = dict(
        cores=res.cores, processes=res.processes, memory=f"{res.mem_gb:g}GB", python=res.python,
        job_name=job_name, log_directory=log_directory, job_extra_directives=directives,
        worker_extra_args=worker_args, job_script_prologue=list(res.job_script_prologue))
    if res.interface:  # else dask-jobqueue's config (null unless a site sets it): workers use their route
        kw["interface"] = res.interface
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


def _condor_pair(line: str) -> tuple[str, str]:
    key, sep, value = line.partition("=")
    if not sep or not key.strip():
        raise bad_option("job_extra_directives", line, "an HTCondor directive must read 'key = value'")
    return key.strip(), value.strip()


def scheduler_interface(name: str, res: JobResources) -> Choice:
    """Where the scheduler listens: ``backend.interface``, else the site's dask-jobqueue config,
    else the interface that reaches other nodes."""
    import dask
    import dask_jobqueue

    if res.interface:
        return named_interface(res.interface)
    config = getattr(dask_jobqueue, CLUSTERS[name][0]).job_cls.default_config_name()
    configured = dask.config.get(f"jobqueue.{config}.interface", None)
    if configured:
        return named_interface(configured, f"dask config jobqueue.{config}.interface")
    return reaching_interface()


MISSING_BOKEH = "distributed.http.scheduler.missing_bokeh"


@contextlib.contextmanager
def own_http_routes():
    """The scheduler's HTTP routes as a fresh list: a scheduler asked for a dashboard without
    bokeh appends a fallback page to the routes in dask's *global* config, so every later
    scheduler of the process served /status even with ``dashboard: false``."""
    import dask

    routes = [r for r in dask.config.get("distributed.scheduler.http.routes") if r != MISSING_BOKEH]
    with dask.config.set({"distributed.scheduler.http.routes": routes}):
        yield


def make_jobqueue_cluster(name: str, res: JobResources, job_name: str, log_directory: str,
                          where: Choice, dashboard: bool = False):
    """The dask-jobqueue cluster, its scheduler (and HTTP server, a dashboard only when asked)
    on ``where``'s address alone, on free ports: never 0.0.0.0, never a fixed 8787."""
    import dask_jobqueue

    cls = getattr(dask_jobqueue, CLUSTERS[name][0])
    scheduler = {"host": where.address, "dashboard_address": f"{where.address}:0", "dashboard": dashboard}
    with own_http_routes():
        cluster = cls(**cluster_kwargs(name, res, job_name, log_directory), scheduler_options=scheduler)
    bounds = res.scaling()
    cluster.adapt(minimum_jobs=bounds.minimum_jobs, maximum_jobs=bounds.maximum_jobs)
    return cluster
