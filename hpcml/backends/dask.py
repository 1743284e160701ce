"""Dask: a LocalCluster on this machine, an existing scheduler, or batch jobs via dask-jobqueue.

One dask task per chunk (``execute_chunk`` on a :class:`WorkOrder`; with ``timeout_s``, watched
by ``dask_watch.watched_chunk`` so a task stuck in C code is given up on and its worker
restarted; on a worker of one thread, what the chunk's tasks started ends with it), results streamed with ``distributed.as_completed``. Workers load the job's data once per process: a worker plugin
warms the per-process cache when a worker joins, so data never travels inside a task.

A worker that dies mid-chunk is handled twice over: Dask itself reruns the chunk on another
worker (up to ``distributed.scheduler.allowed-failures``), and a chunk that still cannot
finish (KilledWorker, cancelled, no workers left) comes back as ``ChunkResult.lost`` for the
driver's retries. A chunk that ran twice leaves two chunk files with identical records;
consolidation keeps one row per task.
"""
from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import logging
import os
import re
import shutil
import socket
import uuid
import warnings
from pathlib import Path
from typing import Iterable, Iterator

from distributed.diagnostics.plugin import WorkerPlugin
from pydantic import Field, model_validator

from hpcml.errors import NotShared, SpecError
from hpcml.rundir.store import Chunk
from hpcml.tasks.environment import FIELD, difference, model_kind, own_versions, packages_for
from hpcml.tasks.worker import ChunkResult, WorkOrder, warm_cache
from hpcml.backends.base import Backend
from hpcml.backends.dask_warm import keep_warm, take_warm, warm_key
from hpcml.backends.dask_watch import chunk_on_worker
from hpcml.backends.lifeline import ignore_interrupts
from hpcml.backends.without_main import starting_without_main
from hpcml.backends.jobqueue import (ClusterName, JobResources, bad_option, cluster_kwargs, make_jobqueue_cluster,
                                     own_http_routes, scheduler_interface)

log = logging.getLogger("hpcml.dask")
LOOPBACK = "127.0.0.1"

# Options that only mean something for a batch-scheduler cluster.
_BATCH_ONLY = set(JobResources.model_fields) - {"local_directory"}


class DaskOptions(JobResources):
    cluster: ClusterName = Field("local", description="local (LocalCluster) or a batch scheduler via dask-jobqueue")
    address: str | None = Field(None, description="connect to this running scheduler instead (tcp://host:port)")
    start_timeout_s: float = Field(120.0, gt=0, description="how long to wait for workers to come up")
    no_workers_timeout_s: float | None = Field(
        600.0, gt=0, description="fail chunks that wait this long with no worker able to run them (None: wait forever)")
    shared_filesystem: bool = Field(True, description="workers can write into the run directory")
    dashboard: bool = Field(False, description="serve the Dask dashboard (LocalCluster/jobqueue scheduler)")
    reuse_workers: bool = Field(False, description="keep the LocalCluster for this process's next job (the R "
                                                   "package's loops do): its start is paid once")

    @model_validator(mode="after")
    def _fits_cluster(self) -> "DaskOptions":
        if self.address and self.cluster != "local":
            raise bad_option("address", self.address, f"give address or cluster={self.cluster!r}, not both")
        if self.cluster == "local":
            batch = sorted(_BATCH_ONLY & self.model_fields_set)
            if batch:
                raise bad_option(batch[0], getattr(self, batch[0]),
                                 "only applies to a batch cluster (set cluster: slurm, pbs, ...)")
        else:
            cluster_kwargs(self.cluster, self, "check", "")  # scheduler-specific mapping errors, now
        return self


def _connect(opts: DaskOptions):
    """Client of a running scheduler; an unreachable address is bad input, said in one line."""
    from distributed import Client

    try:
        return Client(opts.address, timeout=opts.start_timeout_s)
    except (OSError, TimeoutError, asyncio.TimeoutError, ValueError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise SpecError.one("backend.address", opts.address, f"no dask scheduler reachable there ({first})") from None


class _WarmData(WorkerPlugin):
    """Worker plugin: load the job and its data into the process cache as a worker joins."""

    name = "hpcml-warm-data"

    def __init__(self, job_json: str, ours: bool):
        self.job_json = job_json
        self.ours = ours  # workers this run started (not a shared scheduler's)

    async def setup(self, worker) -> None:
        if self.ours:  # Ctrl-C is the driver's (they already exit when their nanny goes)
            ignore_interrupts()
        # Off the event loop: a slow load must not stall the worker's heartbeats.
        await asyncio.get_running_loop().run_in_executor(None, warm_cache, self.job_json)


class _FileLog(logging.Handler):
    """A log file that is not a ``StreamHandler``: LocalCluster's ``silence_logs`` turns every
    StreamHandler of the ``distributed`` logger down to errors, and this one must keep INFO."""

    def __init__(self, path: Path):
        super().__init__()
        self._file = open(path, "a", buffering=1)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._file.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self._file.close()
        super().close()


class DaskBackend(Backend):
    name = "dask"
    Options = DaskOptions

    def __init__(self, workers=None, options=None):
        super().__init__(workers, options)
        self.shares_filesystem = self.options.shared_filesystem
        self.cluster = None
        self.client = None
        self._token = uuid.uuid4().hex[:8]
        self._submissions = itertools.count()
        self._saved_loggers: list[tuple[logging.Logger, list, bool]] = []
        self._terminal: logging.Handler | None = None  # dask's errors that still reach the terminal
        self._job_logs = self._run_dir = self._where = None  # a batch cluster's, set as it starts

    @property
    def workers(self) -> int:
        opts = self.options
        if opts.cluster != "local":
            return opts.n_jobs() * opts.processes
        return self._workers or os.cpu_count() or 1

    def start(self, job_json: str, log_dir: Path) -> None:
        opts = self.options
        name = json.loads(job_json)["name"]
        self._route_logs(Path(log_dir) / "dask")
        try:
            self._start(opts, name, job_json, log_dir)
        except BaseException:
            self._restore_logs()
            raise

    def _start(self, opts, name: str, job_json: str, log_dir: Path) -> None:
        import dask
        from distributed import Client, LocalCluster

        with dask.config.set({"distributed.scheduler.no-workers-timeout": opts.no_workers_timeout_s}), \
                warnings.catch_warnings():
            # The scheduler's HTTP routes fall back to a free port when 8787 is taken: not news.
            warnings.filterwarnings("ignore", message=r"Port \d+ is already in use")
            if opts.address:
                self.client = _connect(opts)
                expect = 1
            elif opts.cluster == "local" and opts.reuse_workers and \
                    (warm := take_warm(warm_key(self.workers, opts.local_directory, opts.dashboard))) is not None:
                self.client, self.cluster = warm
                expect = self.workers
            elif opts.cluster == "local":
                # The scheduler's HTTP server (dashboard or not) listens where the scheduler does,
                # on a free port: never 0.0.0.0, never a fixed 8787 that other clusters take.
                # Its worker processes do not run a plain script of the user's again.
                with own_http_routes(), starting_without_main():
                    self.cluster = LocalCluster(
                        n_workers=self.workers, threads_per_worker=1, processes=True, host=LOOPBACK,
                        dashboard_address=f"{LOOPBACK}:0", scheduler_kwargs={"dashboard": opts.dashboard},
                        local_directory=opts.local_directory, silence_logs=logging.ERROR)
                expect = self.workers
            else:
                logs = opts.log_directory or str((log_dir / "dask").resolve())
                Path(logs).mkdir(parents=True, exist_ok=True)
                self._job_logs, self._run_dir = Path(logs), Path(log_dir).resolve().parent
                where = self._where = scheduler_interface(opts.cluster, opts)
                log.info("dask scheduler on %s; set backend.interface to choose another", where.describe())
                self.cluster = make_jobqueue_cluster(opts.cluster, opts, f"hpcml-{name}", logs, where,
                                                     dashboard=opts.dashboard)
                expect = opts.startup_workers()
            if self.client is None:
                self.client = Client(self.cluster)
        self.client.register_plugin(_WarmData(job_json, ours=opts.cluster == "local" and not opts.address),
                                   name=_WarmData.name)
        if expect:
            self._wait_for_workers(expect)
        self._check_versions(job_json)

    def _check_versions(self, job_json: str) -> None:
        """Every worker's numpy, hpcml, ... against the driver's, before any task: a node with
        another Python stops the run in one line (workers that join later compare theirs with
        the run directory's versions.json before their first chunk)."""
        packages = packages_for(model_kind(job_json))
        hosts = self.client.run(socket.gethostname, on_error="return")
        # Run by reference: a worker whose Python lacks hpcml cannot even unpickle the call.
        seen = self.client.run(own_versions, packages, on_error="return")
        driver = own_versions(packages)["versions"]
        for address in sorted(seen):
            got, host = seen[address], hosts.get(address)
            node = host if isinstance(host, str) else address
            if isinstance(got, BaseException):
                why = (f"the Python of the dask worker on node {node} cannot run hpcml "
                       f"({type(got).__name__}: {str(got).splitlines()[0] if str(got) else ''}): give the nodes "
                       "the driver's environment (backend.python, job_script_prologue)")
                value = self.options.python if self.options.cluster != "local" else address
            else:
                why, value = difference(driver, got["versions"], node, packages), got["python"]
            if why:
                self.stop()
                raise NotShared.one(FIELD, value, why)

    def _wait_for_workers(self, n: int) -> None:
        opts = self.options
        try:
            self.client.wait_for_workers(n, timeout=opts.start_timeout_s)
        except (TimeoutError, asyncio.TimeoutError, OSError):
            have = len(self.client.scheduler_info(n_workers=-1).get("workers", {}))
            where = opts.address or opts.cluster
            scheduler = getattr(self.cluster, "scheduler_address", None)
            self.stop()
            hint = self._batch_hint(scheduler) if opts.cluster != "local" else ""
            raise SpecError.one("backend.start_timeout_s", opts.start_timeout_s,
                                f"only {have} of {n} dask worker(s) on {where} came up in time{hint}") from None

    def _batch_hint(self, scheduler: str | None) -> str:
        """What to check when batch workers never came up, and where their job logs are kept
        (moved out of a run directory that is removed with the failed start)."""
        opts, logs = self.options, self._job_logs
        if logs.is_relative_to(self._run_dir) and logs.exists():
            kept = self._run_dir.parent / f"{self._run_dir.name}.start-logs-{self._token}"
            shutil.move(str(logs), kept)
            logs = kept
        said = _log_errors(logs)
        return (f"; the worker jobs must reach the scheduler at {scheduler} (backend.interface: "
                f"{self._where.describe()}) and start backend.python ({opts.python}) on the nodes: "
                f"check squeue and the job logs{said}, kept in {logs}")

    def _submit(self, order: WorkOrder, futures: dict) -> object:
        # Absolute: workers (batch jobs) need not share the driver's working directory.
        order = dataclasses.replace(order, run_dir=str(Path(order.run_dir).resolve()))
        # Unique per submission: a started backend runs many jobs (the passes of a fit over row
        # blocks), whose chunks share ids; Dask would hand back an earlier result of a same key.
        key = f"hpcml-{order.chunk.id}-a{order.attempt}-{self._token}-{next(self._submissions)}"
        future = self.client.submit(chunk_on_worker, order, key=key, pure=False)
        futures[future] = order
        return future

    def run(self, orders: Iterable[WorkOrder]) -> Iterator[ChunkResult]:
        from distributed import as_completed

        assert self.client is not None, "start() first"
        futures: dict = {}
        for order in orders:
            self._submit(order, futures)
        try:
            pending = as_completed(list(futures))
            for future in pending:
                order = futures.pop(future)
                result = _outcome(future, order)
                future.release()
                if result.unfinished:  # tasks after one stuck past timeout_s: a chunk of their own
                    rest = dataclasses.replace(order, chunk=Chunk(result.unfinished))
                    pending.add(self._submit(rest, futures))
                if result.restart_worker:
                    self._restart(result.restart_worker)
                yield result
        finally:
            if futures:  # the caller stopped early: nothing may keep running for it
                # Stopped early (Ctrl-C reaches the cluster's processes too): what dask says
                # while it cancels and closes, e.g. a comm closed under it, goes to the log file
                # only; the caller reports the interruption in one line.
                if self._terminal is not None:
                    self._terminal.setLevel(logging.CRITICAL + 1)
                self.client.cancel(list(futures), force=True)

    def _restart(self, address: str) -> None:
        """Restart a worker whose task is stuck in C code past timeout_s (through its nanny: the
        stuck thread ends with the process); one without a nanny is retired instead."""
        try:
            self.client.restart_workers([address], timeout=self.options.start_timeout_s)
            return
        except Exception as err:  # no nanny, or the restart did not come back in time
            log.warning("could not restart dask worker %s after a task timed out (%s); retiring it", address, err)
        try:
            self.client.retire_workers([address], close_workers=True)
        except Exception as err:
            log.warning("could not retire dask worker %s either (%s); its stuck task keeps running", address, err)

    def _route_logs(self, directory: Path) -> None:
        """Dask's own log lines (scheduler, nannies, the dashboard address) into
        ``<run>/logs/dask/dask.log``; only its errors still reach the terminal."""
        directory.mkdir(parents=True, exist_ok=True)
        to_file = _FileLog(directory / "dask.log")
        to_file.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        errors = self._terminal = logging.StreamHandler()
        errors.setLevel(logging.ERROR)
        for name in ("distributed", "dask", "tornado"):
            logger = logging.getLogger(name)
            self._saved_loggers.append((logger, list(logger.handlers), logger.propagate))
            logger.handlers = [to_file, errors]
            logger.propagate = False

    def _restore_logs(self) -> None:
        for logger, handlers, propagate in self._saved_loggers:
            for h in logger.handlers:
                if h not in handlers:
                    h.close()
            logger.handlers, logger.propagate = handlers, propagate
        self._saved_loggers, self._terminal = [], None

    def stop(self) -> None:
        try:
            self._stop()
        finally:
            self._restore_logs()

    def _stop(self) -> None:
        client, cluster, self.client, self.cluster = self.client, self.cluster, None, None
        opts = self.options
        if client is not None and cluster is not None and opts.cluster == "local" and opts.reuse_workers \
                and client.status == "running":
            keep_warm(warm_key(self.workers, opts.local_directory, opts.dashboard), client, cluster)
            return
        if client is not None:
            if self.options.address:  # a shared scheduler: leave its workers as we found them
                try:
                    client.unregister_worker_plugin(_WarmData.name)
                except Exception:
                    pass
            client.close(timeout=30)
        if cluster is not None:
            cluster.close(timeout=60)  # jobqueue: cancels the worker jobs (scancel)


# Lines of a worker job's log that say why it never became a worker: its Python cannot
# import hpcml or dask, the interpreter is missing, the scheduler is not reachable.
_LOG_ERROR = re.compile(r"(Error|error:|No module named|command not found|No such file)")


def _log_errors(folder: Path, most: int = 2) -> str:
    """`` (they say: ...)`` with the last error line of the worker job logs in ``folder``
    (the distinct ones, ``most`` at most), or ``""``."""
    said: list[str] = []
    try:
        files = sorted((p for p in folder.iterdir() if p.is_file()), key=lambda p: p.name)
    except OSError:
        return ""
    for path in files:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        last = next((line.strip() for line in reversed(lines) if _LOG_ERROR.search(line)), None)
        if last:
            last = last if len(last) <= 200 else last[:197] + "..."
            if last not in said:
                said.append(last)
    if not said:
        return ""
    return " (they say: " + "; ".join(f"{p!r}" for p in said[-most:]) + ")"


def _outcome(future, order: WorkOrder) -> ChunkResult:
    """A finished dask future -> the chunk's result, or ``lost`` with the reason."""
    if future.status == "finished":
        try:
            return future.result()
        except Exception as err:
            return ChunkResult.lost(order.chunk, f"{type(err).__name__}: {err}")
    if future.status == "cancelled":
        return ChunkResult.lost(order.chunk, "dask worker or scheduler lost (chunk cancelled)")
    err = future.exception()
    if err is None:  # no error: the worker holding the chunk's result ended (status "lost")
        return ChunkResult.lost(order.chunk, f"dask worker lost with the chunk's result (future {future.status})")
    # KilledWorker: the chunk's workers died more than allowed-failures times.
    return ChunkResult.lost(order.chunk, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}".strip())
