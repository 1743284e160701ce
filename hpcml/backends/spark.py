"""Spark: the job's chunks as an RDD, one partition per chunk, on ``local[N]`` or a cluster.

Results stream back as chunks finish: every partition of the RDD is its own small Spark job
(``sc.runJob(rdd, ..., [i])``), submitted from a few driver threads so the cluster always has
queued work, and each job's result is yielded as soon as it returns. A chunk's records
travel back to the driver, which writes the chunk file: Spark may run a task twice (retry
after a crashed executor, speculation) but hands the driver one result per partition, so
every task lands in the store exactly once, and executors need no shared filesystem.

``spark_session`` is shared with the ``engine: spark`` path (hpcml.drivers.spark_engine).
"""
from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from pydantic import BaseModel, ConfigDict, Field

from hpcml.tasks.worker import ChunkResult, WorkOrder, execute_chunk
from hpcml.backends.base import Backend
from hpcml.errors import SpecError

log = logging.getLogger("hpcml")

# Spark's own log4j2 output goes to one file; the JVM's stdout/stderr go beside it.
_LOG4J2 = """\
rootLogger.level = {level}
rootLogger.appenderRef.file.ref = file
appender.file.type = File
appender.file.name = file
appender.file.fileName = {path}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = %d{{yy/MM/dd HH:mm:ss}} %p %c{{1}}: %m%n%ex
"""


class SparkOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    spark_master: str | None = Field(
        None, description="cluster URL, e.g. spark://host:7077 (default: local[workers], or the master spark-submit gave)")
    app_name: str = Field("hpcml", min_length=1, description="application name shown by the cluster")
    executor_memory_gb: float | None = Field(
        None, gt=0, description="memory per executor (in local mode: of the driver JVM, which runs the tasks; "
        "default there a quarter of the machine's memory, at least 1 GB)")
    task_max_failures: int = Field(4, ge=1, description="attempts per Spark task before its chunk counts as failed")
    conf: dict[str, str | int | float | bool] = Field(default_factory=dict, description="extra spark.* settings")
    log_dir: str | None = Field(None, description="where Spark's logs go (default: <run dir>/logs)")
    py_files: list[str] = Field(
        default_factory=list, description="Python files shipped to every executor and imported there first (custom model kinds)")


def _conf_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def local_heap_mb() -> int:
    """The JVM heap hpcml asks for in local mode: a quarter of the machine's memory, at least
    Spark's own 1 GB. The one JVM holds the cached data (what does not fit spills to disk) and
    every task's buffers; with Spark's 1 GB a fit of a few GB of rows ran out of heap, and the
    JVM exits on that. The heap grows only as it is used."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(1024, int(total / 4 / 2**20))


def _master_url(options: SparkOptions, workers: int | None) -> str | None:
    """The master to ask for; None under spark-submit, whose --master then decides."""
    if options.spark_master:
        return options.spark_master
    if "PYSPARK_GATEWAY_PORT" in os.environ:  # launched by spark-submit / the pyspark shell
        return None
    # local[N,F]: in local mode spark.task.maxFailures is ignored; F is how retries are asked for.
    return f"local[{workers or os.cpu_count() or 1},{options.task_max_failures}]"


def session_conf(options: SparkOptions, workers: int | None, log_dir: Path) -> dict[str, str]:
    """Every spark.* setting hpcml applies (user ``conf`` wins)."""
    master = _master_url(options, workers)
    java_opts = f"-Dlog4j2.configurationFile=file:{log_dir / 'log4j2.properties'}"
    conf = {
        "spark.app.name": options.app_name,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        # Loopback unless the user points at a cluster (then the driver must be reachable).
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.extraJavaOptions": java_opts,
        "spark.executor.extraJavaOptions": java_opts,
        "spark.task.maxFailures": str(options.task_max_failures),
        # Executors run the driver's interpreter, so hpcml and its pins are the same there.
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
    }
    if master is not None:
        conf["spark.master"] = master
    if master is not None and not master.startswith("local") and workers:
        conf["spark.cores.max"] = str(workers)
    local = (master or "").startswith("local")
    if options.executor_memory_gb:
        mem = f"{int(options.executor_memory_gb * 1024)}m"
        conf["spark.driver.memory" if local else "spark.executor.memory"] = mem
    elif local:
        conf["spark.driver.memory"] = f"{local_heap_mb()}m"
    if options.spark_master and not options.spark_master.startswith(("local", "spark://127.", "spark://localhost")):
        # A remote cluster must reach the driver: let Spark pick the host's address.
        del conf["spark.driver.host"], conf["spark.driver.bindAddress"]
    conf.update({k: _conf_value(v) for k, v in options.conf.items()})
    return conf


@dataclass
class SparkHandle:
    """A session and whether hpcml started it (then hpcml also stops it and its JVM)."""

    spark: Any
    owned: bool
    log_file: Path | None
    gateway_owned: bool = False
    heap: str | None = None  # spark.driver.memory of a JVM hpcml started

    @property
    def sc(self):
        return self.spark.sparkContext

    def alive(self) -> bool:
        """Whether Spark still runs: a JVM that ran out of memory has exited (local mode) or
        stopped the context."""
        try:
            return not self.sc._jsc.sc().isStopped()
        except Exception:  # the JVM is gone: py4j cannot reach it
            return False

    def death_line(self) -> str | None:
        """None while Spark runs; else one line saying why it stopped, where its log tells."""
        if self.alive():
            return None
        text = self.log_file.read_text(errors="replace") if self.log_file is not None and self.log_file.is_file() else ""
        oom = next((ln.strip() for ln in text.splitlines() if "java.lang.OutOfMemoryError" in ln), None)
        if oom is None:
            where = f"; see {self.log_file}" if self.log_file is not None else ""
            return f"Spark stopped during the fit{where}"
        heap = f" with spark.driver.memory={self.heap}" if self.heap else ""
        return (f"Spark's JVM ran out of memory ({oom.split('OutOfMemoryError:', 1)[-1].strip() or 'OutOfMemoryError'})"
                f"{heap}; give it more with backend.executor_memory_gb "
                f"(in local mode the driver's JVM runs the tasks){f'; see {self.log_file}' if self.log_file else ''}")

    def stop(self) -> None:
        if not self.owned:
            return
        from pyspark import SparkContext

        gateway = SparkContext._gateway
        try:
            self.spark.stop()
        except Exception:  # the JVM already exited (out of memory): only its process is left to end
            if not self.gateway_owned:
                raise
            SparkContext._active_spark_context = None  # so that a next session starts a JVM of its own
        if self.gateway_owned and gateway is not None:
            # The JVM outlives SparkContext.stop(); end it so the next session starts with its
            # own settings (log dir, memory) and no JVM lingers.
            proc = getattr(gateway, "proc", None)
            try:
                gateway.shutdown()
            except Exception:
                pass
            if proc is not None:
                try:
                    proc.stdin.close()
                    proc.wait(timeout=30)
                except Exception:
                    proc.kill()
            SparkContext._gateway = None
            SparkContext._jvm = None


MASTER_PROBE_S = 5.0  # to open a TCP connection to a standalone master before Spark tries for a minute


def check_master(url: str | None) -> None:
    """A standalone master (``spark://host:port``, or several for high availability) that no
    connection reaches: one line naming it, before a JVM starts. Spark itself would retry for
    about a minute and end in a Java stack trace."""
    if not url or not url.startswith("spark://"):
        return
    import socket  # only for a standalone master

    why = ""
    for hostport in url[len("spark://"):].split(","):
        host, _, port = hostport.strip().rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=MASTER_PROBE_S):
                return
        except (OSError, ValueError) as err:
            why = why or f"{hostport}: {err.strerror if isinstance(err, OSError) and err.strerror else err}"
    raise SpecError.one("backend.spark_master", url, f"no Spark master reachable there ({why}); start one "
                        "(scripts/spark_start.sh starts one on this machine) or name the one your site runs")


def _py4j_lost_connection(record: logging.LogRecord) -> bool:
    return not (record.name == "root" and record.getMessage() == "Exception while sending command.")


def spark_session(options: SparkOptions, workers: int | None, default_log_dir: Path) -> SparkHandle:
    """The active SparkSession if there is one (spark-submit, a notebook), else a new one."""
    from pyspark import SparkConf, SparkContext
    from pyspark.sql import SparkSession

    logging.getLogger("py4j").setLevel(logging.WARNING)
    # py4j logs a lost connection to the JVM (a JVM that ran out of memory and exited) with
    # tracebacks on the root logger; hpcml's record of the fit says it in one line instead.
    if _py4j_lost_connection not in logging.getLogger().filters:
        logging.getLogger().addFilter(_py4j_lost_connection)
    active = SparkSession.getActiveSession()
    if active is None and SparkContext._active_spark_context is not None:
        active = SparkSession(SparkContext._active_spark_context)
    if active is not None:
        master = active.sparkContext.master
        if options.spark_master and options.spark_master != master:
            log.warning("spark_master=%s ignored: this process already runs Spark on %s", options.spark_master, master)
        return SparkHandle(active, owned=False, log_file=None)
    check_master(_master_url(options, workers))
    log_dir = Path(options.log_dir or default_log_dir).resolve()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_file = log_dir / "spark.log"
    level = "warn"
    (log_dir / "log4j2.properties").write_text(_LOG4J2.format(level=level, path=log_file))
    conf = SparkConf(loadDefaults=False)
    for key, value in session_conf(options, workers, log_dir).items():
        conf.set(key, value)
    # PySpark picks the workers' interpreter from PYSPARK_PYTHON when the context starts
    # (spark.pyspark.python only reaches spark-submit's launcher): without it, executors run
    # the system python3, which lacks hpcml's dependencies.
    os.environ.setdefault("PYSPARK_PYTHON", conf.get("spark.pyspark.python") or sys.executable)
    # Daemons and executors bind to loopback too on a one-machine cluster. Set only while the
    # JVM starts (it reads it then): left in this process's environment, a later run against a
    # cluster's master, or any process this one starts, would advertise loopback to executors
    # on other nodes, which then never reach the driver.
    loopback = conf.get("spark.driver.host") == "127.0.0.1" and "SPARK_LOCAL_IP" not in os.environ
    if loopback:
        os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    try:
        return _start_context(conf, log_dir, log_file)
    finally:
        if loopback:
            os.environ.pop("SPARK_LOCAL_IP", None)


def _start_context(conf, log_dir: Path, log_file: Path) -> SparkHandle:
    from pyspark import SparkContext  # pyspark only where Spark runs
    from pyspark.sql import SparkSession  # pyspark only where Spark runs

    no_gateway = SparkContext._gateway is None
    gateway_owned = no_gateway and "PYSPARK_GATEWAY_PORT" not in os.environ
    gateway = None
    if no_gateway and not gateway_owned:
        # spark-submit started the driver's JVM before hpcml ran, with its default logging
        # (INFO to the terminal). Connect to it and point log4j at the run's file before the
        # context's first log line, so its logs go where they do for any other run.
        SparkContext._ensure_initialized(conf=conf)
        _use_log4j_config(SparkContext._jvm, log_dir / "log4j2.properties")
    if gateway_owned:
        from pyspark.java_gateway import launch_gateway

        # The JVM's own stdout/stderr (startup warnings, local-mode worker output) go to a
        # file too, so the terminal shows only hpcml.
        with open(log_dir / "jvm.out", "ab") as sink:
            gateway = launch_gateway(conf, popen_kwargs={"stdout": sink, "stderr": sink})
    sc = SparkContext(conf=conf, gateway=gateway)
    sc.setLogLevel("ERROR")
    log.info("Spark %s on %s; its logs go to %s", sc.version, sc.master, log_dir)
    return SparkHandle(SparkSession(sc), owned=True, log_file=log_file, gateway_owned=gateway_owned,
                       heap=conf.get("spark.driver.memory"))


def _use_log4j_config(jvm, path: Path) -> None:
    """Reconfigure the running JVM's log4j2 from ``path`` (a running JVM ignores -D options)."""
    try:
        # Spark sets up its logging once, on its first log line, and then replaces any
        # configuration it finds with its INFO-to-console defaults. Let that happen now,
        # silently, so the configuration set next is the one that stays.
        jvm.org.apache.spark.SparkConf(False).initializeLogIfNecessary(False, True)
        context = jvm.org.apache.logging.log4j.LogManager.getContext(False)
        context.setConfigLocation(jvm.java.io.File(str(path)).toURI())
    except Exception as err:  # logging stays spark-submit's; the run itself is unaffected
        log.warning("could not redirect Spark's logs to %s: %s", path, err)


_IMPORTED: set[str] = set()
_IMPORT_LOCK = threading.Lock()


def _run_partition(py_modules: tuple[str, ...], orders: Iterable[WorkOrder]) -> Iterator[ChunkResult]:
    """Executor side: import the user's modules (custom kinds), then run each chunk."""
    with _IMPORT_LOCK:
        for name in py_modules:
            if name not in _IMPORTED:
                importlib.import_module(name)
                _IMPORTED.add(name)
    for order in orders:
        yield execute_chunk(order)


def spark_error_line(err: BaseException) -> str:
    """The line a user can act on: the Python exception itself, not Spark's wrapper."""
    text = str(err).strip()
    # A failed Python task arrives as a Py4J error holding the worker's traceback, then
    # "SQLSTATE" and the Java stack; the traceback's last line names the real error.
    if "Traceback (most recent call last)" in text:
        body = text.split("Traceback (most recent call last)", 1)[1].split("SQLSTATE", 1)[0]
        lines = [ln.strip() for ln in body.splitlines() if ln.strip() and not ln.startswith((" ", "\t"))]
        if lines:
            return f"Spark task failed: {lines[-1]}"[:500]
    for marker in ("PythonException:", "SparkException:"):
        if marker in text:
            text = text.split(marker, 1)[1].strip()
            break
    line = text.splitlines()[0] if text else type(err).__name__
    return f"Spark task failed: {line}"[:500]


class SparkBackend(Backend):
    name = "spark"
    Options = SparkOptions
    # Records come back to the driver, which writes them: exactly once per chunk.
    shares_filesystem = False

    def __init__(self, workers=None, options=None):
        super().__init__(workers, options)
        self._handle: SparkHandle | None = None
        self._pool: ThreadPoolExecutor | None = None

    @property
    def workers(self) -> int:
        if self._handle is not None and not self._workers:
            return max(1, self._handle.sc.defaultParallelism)
        return super().workers

    def start(self, job_json: str, log_dir: Path) -> None:
        self._handle = spark_session(self.options, self._workers, log_dir)
        for path in self.options.py_files:
            self._handle.sc.addPyFile(str(Path(path).resolve()))
        # Enough jobs in flight that no core idles while the driver collects a result.
        self._pool = ThreadPoolExecutor(max_workers=2 * self.workers, thread_name_prefix="hpcml-spark")

    def run(self, orders: Iterable[WorkOrder]) -> Iterator[ChunkResult]:
        assert self._handle is not None and self._pool is not None, "start() first"
        orders = list(orders)
        if not orders:
            return
        sc = self._handle.sc
        modules = tuple(Path(p).stem for p in self.options.py_files)
        rdd = sc.parallelize(orders, numSlices=len(orders)).mapPartitions(
            lambda part: _run_partition(modules, part))
        pending = {self._pool.submit(sc.runJob, rdd, lambda it: it, [i]): order for i, order in enumerate(orders)}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    order = pending.pop(future)
                    try:
                        results = future.result()
                    except Exception as err:  # the task failed task_max_failures times
                        yield ChunkResult.lost(order.chunk, spark_error_line(err))
                        continue
                    yield results[0] if results else ChunkResult.lost(order.chunk, "Spark returned no result")
        finally:
            if pending:  # the caller stopped early: drop queued jobs, cancel running ones
                for future in pending:
                    future.cancel()
                sc.cancelAllJobs()

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._handle is not None:
            self._handle.stop()
            self._handle = None
