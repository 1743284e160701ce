"""A simulated three-node cluster for the tests in this folder (Linux namespaces, as root).

``scripts/cluster_up.sh`` builds nodes ``head``, ``node1`` and ``node2``: each a network, UTS
and mount namespace with its own hostname, ``/tmp`` and ``/dev/shm``, on a bridge that lives in
a namespace of its own (10.99.0.0/24 exists only inside those namespaces; the machine's own
network namespace is never touched). The rest of the file system is shared, like a cluster's:
the checkout and the cluster's state directory (under /var/tmp, never /tmp), which holds the
run directories (``cluster.shared``). ``scripts/cluster_down.sh`` removes it at the end of the
session: every process in its namespaces by pid, then the namespaces.

Where namespaces cannot be made (not root, no ``unshare``), every test here is skipped with
one line that says why.
"""
from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
PYTHON = sys.executable
NODES = ("head", "node1", "node2")
IP = {"head": "10.99.0.10", "node1": "10.99.0.11", "node2": "10.99.0.12"}
SUBNET = "10.99.0.0/24"


@functools.lru_cache(maxsize=1)
def cannot_build() -> str | None:
    """Why this machine cannot build the simulated cluster (None: it can)."""
    if not sys.platform.startswith("linux"):
        return f"simulated cluster needs Linux namespaces (this is {sys.platform})"
    if os.geteuid() != 0:
        return "simulated cluster needs root to create network namespaces (run the tests as root)"
    missing = [b for b in ("ip", "unshare", "nsenter", "setsid") if shutil.which(b) is None]
    if missing:
        return f"simulated cluster needs {', '.join(missing)} (util-linux, iproute2)"
    probe = subprocess.run(["unshare", "--net", "--uts", "--mount", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        why = (probe.stderr.strip().splitlines() or [f"exit {probe.returncode}"])[-1]
        return f"simulated cluster: this machine cannot create namespaces (unshare: {why})"
    return None


def pytest_runtest_setup(item):
    """Skipped here rather than in the fixture, so that pytest's summary folds every test of
    this folder into one line with the reason (a fixture's skip is reported per test)."""
    why = cannot_build()
    if why:
        pytest.skip(why)


class Cluster:
    """The running simulated cluster: run commands on its nodes, start and stop services, crash nodes."""

    def __init__(self, state: Path, prefix: str):
        self.state, self.prefix = state, prefix
        self.shared = state / "shared"  # run directories: seen by every node
        self.logs = state / "logs"
        self.nodes, self.ip = NODES, IP
        self._procs: list[subprocess.Popen] = []
        self.slurm_up = False

    def up(self, *nodes: str) -> None:
        proc = subprocess.run(["bash", str(SCRIPTS / "cluster_up.sh"), str(self.state), self.prefix, *nodes],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"cluster_up.sh failed:\n{proc.stdout}\n{proc.stderr}")

    def down(self) -> str:
        for proc in self._procs:
            self.stop(proc)
        proc = subprocess.run(["bash", str(SCRIPTS / "cluster_down.sh"), self.prefix], capture_output=True,
                              text=True, timeout=120)
        return proc.stdout + proc.stderr

    def env(self, **extra: str) -> dict[str, str]:
        """What a user's shell on a node has: this checkout's hpcml and Python first, a shared HOME."""
        path = f"{Path(PYTHON).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        return {**os.environ, "PATH": path, "HOME": str(self.state / "home"), "PYTHONPATH": str(ROOT),
                "HPCML_CLUSTER_STATE": str(self.state), "NO_COLOR": "1", "TERM": "dumb", **extra}

    def command(self, node: str, argv: list[str], cwd: Path | None = None) -> list[str]:
        """``argv`` run inside ``node``'s namespaces (nsenter execs it: the pid is the command's)."""
        pid = (self.state / "nodes" / node / "pid").read_text().strip()
        return ["nsenter", "-t", pid, "-u", "-m", "-n", f"--wd={cwd or self.shared}", *map(str, argv)]

    def run(self, node: str, argv: list, timeout: float = 300, env: dict | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(node, argv, cwd), capture_output=True, text=True, timeout=timeout,
                              env=self.env(**(env or {})))

    def hpcml(self, node: str, *args, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
        """The real ``hpcml`` command line on a node."""
        return self.run(node, [PYTHON, "-m", "hpcml.cli", *args], timeout=timeout, env=env)

    def spawn(self, node: str, argv: list, name: str, env: dict | None = None) -> subprocess.Popen:
        """A service on a node, its output in ``logs/<name>.log``; stopped by pid at the end."""
        with open(self.logs / f"{name}.log", "w") as out:
            proc = subprocess.Popen(self.command(node, argv), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=self.env(**(env or {})), start_new_session=True)
        self._procs.append(proc)
        return proc

    def wait_log(self, name: str, text: str, timeout: float = 120, proc: subprocess.Popen | None = None) -> None:
        path = self.logs / f"{name}.log"
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if path.exists() and text in path.read_text(errors="replace"):
                return
            if proc is not None and proc.poll() is not None:
                break
            time.sleep(0.2)
        log = path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"
        raise AssertionError(f"{name}: no {text!r} within {timeout:.0f}s\n{log}")

    def stop(self, proc: subprocess.Popen, wait: float = 15) -> None:
        """SIGTERM a service started by :meth:`spawn`, SIGKILL if it does not go."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if proc in self._procs:
            self._procs.remove(proc)

    def pids(self, node: str) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", f"{self.prefix}-{node}"], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def crash(self, node: str) -> list[int]:
        """A node crash: SIGKILL every process in the node's network namespace at once."""
        pids = self.pids(node)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return pids

    def revive(self, node: str) -> None:
        """Boot a crashed node again (a fresh holder of its namespaces, an empty /dev/shm), with
        its Slurm daemons if Slurm was up."""
        end = time.monotonic() + 30
        while self.pids(node) and time.monotonic() < end:
            time.sleep(0.1)
        self.up(node)
        if self.slurm_up:
            self.slurm(node)

    def slurm(self, *nodes: str) -> str:
        """Start Slurm's daemons (munged, slurmctld on head, slurmd on node1/node2) on ``nodes``
        (default: all), then wait until both compute nodes are idle."""
        proc = subprocess.run(["bash", str(SCRIPTS / "cluster_slurm.sh"), str(self.state), *nodes],
                              capture_output=True, text=True, timeout=180)
        if proc.returncode != 0:
            raise RuntimeError(f"cluster_slurm.sh failed:\n{proc.stdout}\n{proc.stderr}")
        self.slurm_up = True
        return proc.stdout

    def slurm_ready(self, timeout: float = 150) -> None:
        """Wait until both compute nodes are idle. A node that an earlier test cut off or crashed
        may still be marked down (Slurm noticed it not responding): it is resumed, since a job
        submitted meanwhile would wait for it past any start timeout."""
        end, states = time.monotonic() + timeout, {}
        while time.monotonic() < end:
            out = self.run("head", ["sinfo", "-h", "-N", "-o", "%N=%T"], timeout=30).stdout.split()
            states = dict(item.split("=", 1) for item in out if "=" in item)
            if states == {"node1": "idle", "node2": "idle"}:
                return
            for node, state in states.items():
                if state.startswith(("down", "drain", "fail")):
                    self.run("head", ["scontrol", "update", f"NodeName={node}", "State=RESUME"], timeout=30)
            time.sleep(1)
        raise RuntimeError(f"Slurm's compute nodes not idle after {timeout:g} s: {states}")

    def partition(self, node: str) -> None:
        """Cut ``node`` off the network (its switch port down); its processes keep running."""
        subprocess.run(["ip", "netns", "exec", f"{self.prefix}-sw", "ip", "link", "set", f"v-{node}", "down"],
                       check=True, timeout=30)

    def heal(self, node: str) -> None:
        subprocess.run(["ip", "netns", "exec", f"{self.prefix}-sw", "ip", "link", "set", f"v-{node}", "up"],
                       check=True, timeout=30)

    def mpirun(self, n: int, hosts: str, argv: list, timeout: float = 300) -> subprocess.CompletedProcess:
        """``mpirun`` on head with ranks on ``hosts``, started through the rsh agent that enters a
        node's namespaces; MPI's TCP restricted to the cluster's subnet."""
        return self.run("head", self.mpirun_argv(n, hosts, argv), timeout=timeout)

    def mpirun_argv(self, n: int, hosts: str, argv: list) -> list:
        """The ``mpirun`` command line of ``mpirun`` (to run on head)."""
        return ["mpirun", "--allow-run-as-root", "--oversubscribe", "-n", str(n), "--host", hosts,
                "--mca", "plm", "rsh", "--mca", "plm_rsh_agent", str(SCRIPTS / "cluster_rsh.sh"),
                "--mca", "plm_rsh_no_tree_spawn", "1",
                "--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include", SUBNET,
                "--mca", "oob_tcp_if_include", SUBNET,
                *[a for var in ("PYTHONPATH", "HOME", "NO_COLOR", "TERM", "HPCML_CLUSTER_STATE") for a in ("-x", var)],
                PYTHON, *argv]


@pytest.fixture(scope="session")
def cluster():
    """The simulated cluster (built once per session, removed at its end)."""
    why = cannot_build()
    if why:
        pytest.skip(why)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    # Not under /tmp: every node has its own /tmp, and run directories must be shared.
    state = Path("/var/tmp") / f"hpcml-cluster-{tag}"
    # Each session its own namespaces (cluster_up.sh would reuse existing ones of the same names,
    # as it does for a node that is booted again): a name taken already is refused, not shared.
    prefix = f"hc{tag}"
    taken = [ns for ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
             if ns.startswith(prefix + "-")]
    assert not taken, f"namespaces {taken} exist already: another session's cluster"
    made = Cluster(state, prefix)
    (state / "shared").mkdir(exist_ok=False, parents=True)
    (state / "home").mkdir()
    try:
        made.up()
        yield made
    finally:
        said = made.down()
        left = [ns for ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
                if ns.startswith(prefix + "-")]
        shutil.rmtree(state, ignore_errors=True)
        assert not left, f"namespaces left behind: {left}\n{said}"


@pytest.fixture
def dask_nodes(cluster):
    """A dask scheduler on head (10.99.0.10:8786), one single-threaded worker on node1 and node2,
    as a site's admins would start them; yields the scheduler address."""
    name = f"dask-{uuid.uuid4().hex[:6]}"
    sched = cluster.spawn("head", [PYTHON, "-m", "distributed.cli.dask_scheduler", "--host", IP["head"],
                                   "--port", "8786", "--no-dashboard",
                                   "--dashboard-address", f"{IP['head']}:0"], f"{name}-scheduler")
    address = f"tcp://{IP['head']}:8786"
    procs = [sched]
    try:
        cluster.wait_log(f"{name}-scheduler", "Scheduler at", proc=sched)
        for node in ("node1", "node2"):
            procs.append(cluster.spawn(node, [PYTHON, "-m", "distributed.cli.dask_worker", address, "--nworkers", "1",
                                              "--nthreads", "1", "--name", node, "--no-dashboard",
                                              "--local-directory", "/tmp/dask-worker"], f"{name}-{node}"))
        for node, proc in zip(("node1", "node2"), procs[1:]):
            cluster.wait_log(f"{name}-{node}", "Registered to", proc=proc)
        yield address
    finally:
        for proc in reversed(procs):
            cluster.stop(proc)


@pytest.fixture(scope="session")
def slurm_daemons(cluster):
    """A two-node Slurm on the cluster: slurmctld on head, a slurmd on node1 and node2
    (scripts/cluster_slurm.sh); its daemons end with the cluster's namespaces."""
    missing = [b for b in ("slurmctld", "slurmd", "munged", "sbatch") if shutil.which(b) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (scripts/install_system.sh installs Slurm + munge)")
    try:
        return cluster.slurm()
    except RuntimeError as err:
        pytest.fail(str(err))


@pytest.fixture
def cluster_slurm(cluster, slurm_daemons):
    """The cluster's Slurm with both compute nodes idle for this test (after an earlier test's
    crash or partition, Slurm may still hold a node down)."""
    try:
        cluster.slurm_ready()
    except RuntimeError as err:
        pytest.fail(str(err))
    return slurm_daemons


@pytest.fixture
def spark_nodes(cluster):
    """A Spark standalone master on head (spark://10.99.0.10:7077) and a worker (1 core, 1g) on
    node1 and node2, from pyspark's own jars, each bound to its node's cluster address only
    (SPARK_LOCAL_IP: its RPC, block manager and web UI ports); yields the master URL. Stopped
    by pid at the end (a worker's SIGTERM ends its executors)."""
    pyspark = pytest.importorskip("pyspark", reason="pyspark not installed (pip install 'hpcml[spark]')")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("java not installed (Spark needs Java 17+; make test installs it)")
    home = Path(pyspark.__file__).parent
    name = f"spark-{uuid.uuid4().hex[:6]}"
    url = f"spark://{IP['head']}:7077"

    def env(node: str) -> dict[str, str]:
        return {"SPARK_HOME": str(home), "SPARK_LOCAL_IP": IP[node], "SPARK_CONF_DIR": "",
                "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false -Dspark.port.maxRetries=0"}

    spark_class = str(home / "bin" / "spark-class")
    master = cluster.spawn("head", [spark_class, "org.apache.spark.deploy.master.Master", "--host", IP["head"],
                                    "--port", "7077", "--webui-port", "0"], f"{name}-master", env=env("head"))
    procs = [master]
    try:
        cluster.wait_log(f"{name}-master", f"Starting Spark master at {url}", proc=master)
        for node in ("node1", "node2"):
            procs.append(cluster.spawn(node, [spark_class, "org.apache.spark.deploy.worker.Worker", url, "--host",
                                              IP[node], "--webui-port", "0", "--cores", "1", "--memory", "1g",
                                              "--work-dir", "/tmp/spark-work"], f"{name}-{node}", env=env(node)))
        for node, proc in zip(("node1", "node2"), procs[1:]):
            cluster.wait_log(f"{name}-{node}", "Successfully registered with master", proc=proc)
        yield url
    finally:
        for proc in reversed(procs):
            cluster.stop(proc)
