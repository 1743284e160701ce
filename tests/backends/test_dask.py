"""The Dask backend against a real LocalCluster on 127.0.0.1 (and a scheduler the user
started), bit for bit against the local backend; its options and bad input; the job scripts
dask-jobqueue writes from hpcml's resources for every batch scheduler.

The real-Slurm tests (SLURMCluster, scancel of a worker job) are in test_slurm.py.
"""
from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytest.importorskip("distributed", reason="pip install 'hpcml[dask]'")

from conftest import assert_same_results, hpcml_cli, small_spec  # noqa: E402


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory):
    from hpcml import run

    return run(small_spec(tmp_path_factory.mktemp("ref")), progress=False).results


@pytest.fixture
def scheduler():
    """A scheduler and 2 single-threaded worker processes started outside hpcml, as a user would."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None)
    client = Client(cluster)
    try:
        yield cluster, client
    finally:
        client.close()
        cluster.close()


# ------------------------------------------------------------------ real LocalCluster

@pytest.mark.slow
@pytest.mark.timeout(240)
def test_cli_backend_dask_equals_local(tmp_path, local_reference):
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(small_spec(tmp_path)))
    proc = hpcml_cli("run", "--backend", "dask", "--chunk-size", "7", spec, "-q")
    assert proc.returncode == 0, proc.stderr
    assert "40/40 tasks ok" in proc.stdout
    run_dir = tmp_path / "run"
    assert_same_results(local_reference, pd.read_parquet(run_dir / "results.parquet"))
    # Chunked: 40 tasks in chunks of 7 -> 6 chunk files, one per dask task.
    assert len(list((run_dir / "chunks").glob("chunk-*.parquet"))) == 6
    assert yaml.safe_load((run_dir / "summary.json").read_text())["run"]["backend"] == "dask"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_existing_scheduler_gets_data_once_per_worker(tmp_path, local_reference, scheduler):
    from hpcml import run

    cluster, client = scheduler
    result = run(small_spec(tmp_path, backend={"name": "dask", "address": cluster.scheduler_address}),
                 chunk_size=5, progress=False)
    assert result.ok
    assert_same_results(local_reference, result.results)

    def data_loads():
        from hpcml.data import load_stats

        return load_stats()

    loads = client.run(data_loads)
    assert len(loads) == 2
    # Each worker process read the data once (when it joined) and reused it for every chunk.
    assert all(misses == 1 for misses, _ in loads.values()), loads
    assert sum(hits for _, hits in loads.values()) >= 8, loads  # 8 chunks ran on the cached data
    # The user's scheduler keeps its workers; hpcml's worker plugin is gone again.
    assert len(client.scheduler_info(n_workers=-1)["workers"]) == 2
    plugins = client.run(lambda dask_worker: sorted(dask_worker.plugins))
    assert all("hpcml-warm-data" not in p for p in plugins.values()), plugins


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_kept_cluster_serves_the_next_job_and_closes_at_exit(tmp_path, local_reference):
    """``reuse_workers``: the second job runs on the first one's LocalCluster (no new start),
    with the local backend's numbers; a cluster that lost a worker is not reused; close_warm
    (at exit) closes what is kept."""
    from hpcml import run
    from hpcml.backends import dask_warm

    backend = {"name": "dask", "workers": 2, "reuse_workers": True}
    try:
        first = run(small_spec(tmp_path / "a", backend=backend), progress=False)
        assert first.ok and len(dask_warm._WARM) == 1
        (client, cluster), = dask_warm._WARM.values()
        second = run(small_spec(tmp_path / "b", backend=backend), progress=False)
        assert second.ok and list(dask_warm._WARM.values()) == [(client, cluster)]
        assert_same_results(second.results, local_reference)
        # one worker gone: the next job starts a cluster of its own
        cluster.scale(1)
        client.wait_for_workers(1, timeout=60)
        deadline = time.monotonic() + 60
        while len(client.scheduler_info(n_workers=-1)["workers"]) != 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        third = run(small_spec(tmp_path / "c", backend=backend), progress=False)
        assert third.ok
        (client3, cluster3), = dask_warm._WARM.values()
        assert cluster3 is not cluster and cluster.status.name == "closed"
    finally:
        dask_warm.close_warm()
    assert not dask_warm._WARM and cluster3.status.name == "closed"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_retries_rerun_failed_tasks_through_dask(tmp_path):
    from hpcml import run

    spec = small_spec(tmp_path, model={"kind": "sleep", "ms": 1, "busy": False, "flaky_dir": str(tmp_path / "flaky")},
                      data={"source": "synthetic:regression", "options": {"n_samples": 10, "n_features": 2}},
                      plan={"replicate": {"n": 12}}, retries=1,
                      # Workers without the run directory: records travel back, the driver writes them.
                      backend={"name": "dask", "workers": 2, "shared_filesystem": False})
    result = run(spec, chunk_size=4, progress=False)
    assert result.ok, result.failures()
    assert sorted(result.results["task_index"]) == list(range(12))
    assert set(result.results["attempt"]) == {1}  # every task failed once, then passed on the retry
    # Both attempts left their trace: 3 chunks of failures, then 3 chunks of successes.
    assert len(list((result.run_dir / "chunks").glob("chunk-*.parquet"))) == 6


# ------------------------------------------------------------------ bad input

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("backend, field, value", [
    ({"cores": 2}, "backend.cores", "2"),
    ({"cluster": "torque"}, "backend.cluster", "'torque'"),
    ({"cluster": "slurm", "address": "tcp://127.0.0.1:8786"}, "backend.address", "'tcp://127.0.0.1:8786'"),
    ({"cluster": "slurm", "processes": 4, "cores": 2}, "backend.processes", "4"),
    ({"cluster": "slurm", "jobs": 2, "adapt": {"maximum_jobs": 4}}, "backend.adapt",
     "{'minimum_jobs': 0, 'maximum_jobs': 4}"),
    ({"cluster": "slurm", "adapt": {"minimum_jobs": 5, "maximum_jobs": 4}}, "backend.adapt.minimum_jobs", "5"),
    ({"cluster": "slurm", "walltime_min": 10, "lifetime_min": 10}, "backend.lifetime_min", "10.0"),
    ({"cluster": "slurm", "mem_gb": 0}, "backend.mem_gb", "0"),
    ({"cluster": "oar", "gpus": 1}, "backend.gpus", "1"),
    ({"cluster": "htcondor", "job_extra_directives": ["+Group"]}, "backend.job_extra_directives", "'+Group'"),
    ({"shedule": "x"}, "backend.shedule", "'x'"),
])
def test_bad_dask_options_name_the_field(tmp_path, backend, field, value):
    from hpcml.errors import SpecError
    from hpcml.spec import load_job

    with pytest.raises(SpecError) as info:
        load_job(small_spec(tmp_path, backend={"name": "dask", **backend}))
    lines = info.value.lines()
    assert len(lines) == 1 and lines[0].startswith(f"{field}: ") and lines[0].endswith(f"(got {value})"), lines


@pytest.mark.timeout(120)
def test_cli_bad_option_exit_2_and_no_output(tmp_path):
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(small_spec(tmp_path, backend={"name": "dask", "cluster": "slurm", "jobs": 0})))
    proc = hpcml_cli("run", spec)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: backend.jobs: Input should be greater than 0 (got 0)"
    assert not (tmp_path / "run").exists()


@pytest.mark.timeout(120)
def test_cli_unreachable_scheduler_exit_2_and_no_output(tmp_path):
    address = f"tcp://127.0.0.1:{_free_port()}"
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(small_spec(tmp_path, backend={"name": "dask", "address": address,
                                                                 "start_timeout_s": 2})))
    proc = hpcml_cli("run", spec, "-q")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: backend.address: no dask scheduler reachable there")
    assert lines[0].endswith(f"(got '{address}')")
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ dask-jobqueue job scripts (no scheduler)

def _script(cluster: str, **resources) -> str:
    import dask_jobqueue

    from hpcml.backends.jobqueue import CLUSTERS, JobResources, cluster_kwargs

    kw = cluster_kwargs(cluster, JobResources(**resources), "hpcml-t", "/tmp/hpcml-logs")
    job_cls = getattr(dask_jobqueue, CLUSTERS[cluster][0]).job_cls
    return job_cls(scheduler="tcp://127.0.0.1:8786", name="w", **kw).job_script()


def test_slurm_worker_script_carries_every_resource():
    text = _script("slurm", cores=4, processes=2, mem_gb=8, walltime_min=90, partition="gpu", account="proj01",
                   gpus=2, job_extra_directives=["--qos=high"], lifetime_min=80, lifetime_stagger_min=4,
                   job_script_prologue=["module load cuda"], python="/opt/hpcml/bin/python")
    for line in ["#SBATCH -J hpcml-t", "#SBATCH -p gpu", "#SBATCH -A proj01", "#SBATCH --cpus-per-task=4",
                 "#SBATCH --mem=8G", "#SBATCH -t 01:30:00", "#SBATCH --qos=high", "#SBATCH --gres=gpu:2",
                 "module load cuda"]:
        assert line in text.splitlines(), (line, text)
    command = text.strip().splitlines()[-1]
    assert command.startswith("/opt/hpcml/bin/python -m distributed.cli.dask_worker tcp://127.0.0.1:8786")
    assert "--nworkers 2" in command and "--lifetime 4800s --lifetime-stagger 240s" in command
    # One chunk at a time per worker process: the last --nthreads (the one the CLI keeps) is 1.
    assert command.split("--nthreads ")[-1].split()[0] == "1"


@pytest.mark.parametrize("cluster, gpu_line", [
    ("pbs", "#PBS -l ngpus=1"), ("moab", "#PBS -l ngpus=1"), ("sge", "#$ -l gpu=1"), ("lsf", '#BSUB -gpu "num=1"'),
    ("htcondor", "request_gpus = 1"),
])
def test_every_scheduler_gets_gpus_account_and_walltime(cluster, gpu_line):
    text = _script(cluster, cores=2, mem_gb=4, walltime_min=45, partition="q1", account="acct", gpus=1,
                   job_extra_directives=["Requirements = true"] if cluster == "htcondor" else [])
    assert gpu_line in text, text
    if cluster != "htcondor":
        assert "acct" in text and ("00:45" in text)


def test_lifetime_makes_fixed_jobs_adaptive():
    from hpcml.backends.jobqueue import Adapt, JobResources

    # Retiring workers (every batch worker has a lifetime) must be replaced, which only adaptive scaling does.
    assert JobResources(jobs=3).scaling() == Adapt(minimum_jobs=3, maximum_jobs=3)
    assert JobResources(jobs=3, lifetime_min=20).scaling() == Adapt(minimum_jobs=3, maximum_jobs=3)
    assert JobResources(adapt={"maximum_jobs": 4}, lifetime_min=20).scaling() == Adapt(maximum_jobs=4)


@pytest.mark.parametrize("walltime_min, lifetime, stagger", [(1, "40s", "5s"), (2, "100s", "5s"),
                                                             (30, "1620s", "45s"), (120, "6900s", "75s")])
def test_batch_workers_retire_before_their_walltime_by_default(walltime_min, lifetime, stagger):
    """Without lifetime_min, a worker's lifetime is its walltime less a tenth (20 s to 5 min),
    staggered by a quarter of that: it retires before the batch scheduler kills its job."""
    command = _script("slurm", walltime_min=walltime_min).strip().splitlines()[-1]
    assert f"--lifetime {lifetime} --lifetime-stagger {stagger}" in command, command
    # HTCondor jobs have no walltime: no lifetime unless one is given
    assert "--lifetime" not in _script("htcondor")
    assert "--lifetime 600s" in _script("htcondor", lifetime_min=10)


def test_a_worker_does_not_start_a_chunk_it_has_no_lifetime_left_for():
    from hpcml.backends.dask_watch import too_late

    assert too_late(3.0, 5.0)  # 3 s left, chunks take 5 s: retire, give the chunk back
    assert not too_late(30.0, 5.0)
    assert not too_late(None, 5.0)  # no lifetime
    assert not too_late(3.0, None)  # no chunk timed yet on this worker


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_task_timeouts_work_on_dask(tmp_path):
    """Dask runs chunks in worker threads, where no alarm reaches: the deadline raises in the
    task's thread instead. A 60 s Python loop stops at the limit; a sleep (a C call) stops when
    it returns. Both fail with the same error as on the other backends."""
    from hpcml import run

    data = {"source": "synthetic:regression", "options": {"n_samples": 10, "n_features": 2}}
    spec = small_spec(tmp_path, model={"kind": "sleep", "ms": 60_000, "busy": True}, timeout_s=0.5, data=data,
                      plan={"replicate": {"n": 4}}, backend={"name": "dask", "workers": 2})
    t0 = time.perf_counter()
    result = run(spec, progress=False)
    assert time.perf_counter() - t0 < 50  # not 2 x 60 s of spinning
    assert result.n_failed == 4
    assert set(result.results["error"]) == {"TaskTimeout: task exceeded timeout_s=0.5"}

    spec = small_spec(tmp_path, model={"kind": "sleep", "ms": 300, "busy": False}, timeout_s=0.1, data=data,
                      plan={"replicate": {"n": 4}}, backend={"name": "dask", "workers": 2}, output=str(tmp_path / "s"))
    result = run(spec, progress=False)
    assert result.n_failed == 4
    assert set(result.results["error"]) == {"TaskTimeout: task exceeded timeout_s=0.1"}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_task_stuck_in_c_past_its_timeout_is_stopped_and_resumed(tmp_path):
    """A sleep of a minute, past timeout_s=1: the task fails with TaskTimeout soon after its
    limit, its worker is restarted (the stuck thread ends with it), the chunk's other tasks and
    the other chunks still run, and --resume reruns only the timed-out tasks."""
    from hpcml import run

    funcs = str(Path(__file__).parents[1] / "user_code_funcs.py")
    marker = tmp_path / "unstick"
    spec = small_spec(tmp_path, data={"source": "none"}, timeout_s=1,
                      model={"kind": "python", "file": funcs, "function": "stuck_until", "args": {"marker": str(marker)}},
                      plan={"replicate": {"n": 8}}, backend={"name": "dask", "workers": 2, "chunk_size": 4})
    result = run(spec, progress=False)
    res = result.results.set_index("task_index")
    assert sorted(res.index[res["status"] == "failed"]) == [1, 4]
    # Stopped, not waited for: a sleep that ran its minute would fail with the plain message.
    assert (res.loc[[1, 4], "error"] == "TaskTimeout: task exceeded timeout_s=1 (stopped by restarting its dask "
            "worker)").all(), res["error"]
    assert sorted(res.index[res["status"] == "ok"]) == [0, 2, 3, 5, 6, 7]  # the tasks after 1 and 4 ran too
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["run"]["failed"] == 2
    marker.write_text("")
    again = run(spec, progress=False, resume=True)
    assert again.ok and sorted(again.results["task_index"]) == list(range(8))
    assert (again.results["status"] == "ok").all()


@pytest.mark.timeout(180)
def test_dask_logs_go_to_the_run_dir_not_the_terminal(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(small_spec(tmp_path, backend={"name": "dask", "workers": 1})))
    proc = hpcml_cli("run", path)
    assert proc.returncode == 0, proc.stderr
    noise = [ln for ln in proc.stderr.splitlines() if "tasks done" not in ln]
    assert noise == [], noise  # no scheduler, nanny or dashboard lines
    log = (tmp_path / "run" / "logs" / "dask" / "dask.log").read_text()
    assert "Scheduler at" in log and "dashboard at" in log


# ------------------------------------------------------------------ batch clusters: the network defaults

def _network(monkeypatch, addresses: dict, hostname: tuple, route):
    from hpcml.backends import netif

    monkeypatch.setattr(netif, "ipv4_addresses", lambda: addresses)
    monkeypatch.setattr(netif, "hostname_address", lambda: hostname)
    monkeypatch.setattr(netif, "route_address", lambda: route)


@pytest.mark.parametrize("hostname, route, want", [
    # the hostname's address comes first: what the nodes' own lookups of it give
    (("login1", "10.1.0.5"), "192.168.1.9", ("ib0", "10.1.0.5", "the address of hostname login1")),
    # Debian's 127.0.1.1 for the hostname: the interface of the route out instead
    (("login1", "127.0.1.1"), "192.168.1.9", ("eth0", "192.168.1.9", "the route out of this machine")),
    (("login1", None), "192.168.1.9", ("eth0", "192.168.1.9", "the route out of this machine")),
    # no other interface: loopback, and the reason says only this machine's workers can connect
    (("login1", "127.0.1.1"), None, ("lo", "127.0.0.1", "no other interface has an address")),
])
def test_the_scheduler_interface_is_the_one_that_reaches_other_nodes(monkeypatch, hostname, route, want):
    from hpcml.backends.netif import reaching_interface

    _network(monkeypatch, {"127.0.0.1": "lo", "10.1.0.5": "ib0", "192.168.1.9": "eth0"}, hostname, route)
    got = reaching_interface()
    assert (got.interface, got.address) == want[:2]
    assert got.found_from.startswith(want[2]), got


def test_a_named_interface_wins_and_an_unknown_one_is_one_line(monkeypatch):
    import dask

    from hpcml.backends.jobqueue import JobResources, scheduler_interface
    from hpcml.errors import SpecError

    _network(monkeypatch, {"127.0.0.1": "lo", "10.1.0.5": "ib0", "192.168.1.9": "eth0"}, ("login1", "10.1.0.5"), None)
    assert scheduler_interface("slurm", JobResources(interface="eth0")).address == "192.168.1.9"
    with dask.config.set({"jobqueue.pbs.interface": "eth0"}):  # a site's dask-jobqueue config is honoured
        got = scheduler_interface("pbs", JobResources())
    assert (got.address, got.found_from) == ("192.168.1.9", "dask config jobqueue.pbs.interface")
    assert scheduler_interface("slurm", JobResources()).interface == "ib0"
    with pytest.raises(SpecError) as err:
        scheduler_interface("slurm", JobResources(interface="ib9"))
    assert err.value.lines() == ["backend.interface: no IPv4 address on this machine (interfaces: eth0, ib0, lo) "
                                 "(got 'ib9')"]


def test_workers_are_not_pinned_to_loopback_by_default():
    """Workers on compute nodes find their address by their route to the scheduler; a site's
    interface still reaches their command line."""
    from hpcml.backends.jobqueue import JobResources

    assert JobResources().interface is None
    assert "--interface" not in _script("slurm").strip().splitlines()[-1]
    assert "--interface ib0" in _script("slurm", interface="ib0").strip().splitlines()[-1]


@pytest.mark.parametrize("dashboard", [False, True])
def test_jobqueue_scheduler_listens_on_the_chosen_address_only(tmp_path, dashboard):
    """Not 0.0.0.0 and not 8787, even without a dashboard (the HTTP server still runs)."""
    import urllib.error
    import urllib.request

    from hpcml.backends.jobqueue import JobResources, make_jobqueue_cluster
    from hpcml.backends.netif import Choice

    res = JobResources(adapt={"minimum_jobs": 0, "maximum_jobs": 1})  # no job is submitted
    cluster = make_jobqueue_cluster("slurm", res, "hpcml-t", str(tmp_path), Choice("lo", "127.0.0.1", "test"),
                                    dashboard=dashboard)
    try:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        sockets = [s.getsockname() for s in cluster.scheduler.http_server._sockets.values()]
        assert sockets and all(host == "127.0.0.1" and port != 8787 for host, port, *_ in sockets), sockets
        try:
            code = urllib.request.urlopen(f"http://127.0.0.1:{sockets[0][1]}/status", timeout=30).status
        except urllib.error.HTTPError as err:
            code = err.code
        assert (code == 200) == dashboard  # the dashboard only when asked
    finally:
        cluster.close()


@pytest.mark.timeout(120)
def test_batch_workers_that_never_come_up_name_the_settings_and_keep_the_job_logs(tmp_path, monkeypatch):
    """The start timeout names what to check (the interface the scheduler chose, the Python on
    the nodes) and moves the job logs out of the run directory, which the failed start removes."""
    from distributed import LocalCluster

    from hpcml import run
    from hpcml.backends import dask as dask_backend
    from hpcml.backends.netif import Choice
    from hpcml.errors import SpecError

    def no_workers(name, res, job_name, logs, where, dashboard=False):
        (Path(logs) / "slurm-41.out").write_text("Timed out trying to connect to tcp://10.1.0.5:40000\n")
        (Path(logs) / "slurm-41.err").write_text("/opt/env/bin/python: Error while finding module specification for "
                                                 "'distributed.cli.dask_worker' (ModuleNotFoundError: No module "
                                                 "named 'distributed')\n")
        return LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=None)

    monkeypatch.setattr(dask_backend, "make_jobqueue_cluster", no_workers)
    monkeypatch.setattr(dask_backend, "scheduler_interface", lambda *a: Choice("ib0", "10.1.0.5", "the test"))
    spec = small_spec(tmp_path, backend={"name": "dask", "cluster": "slurm", "jobs": 2, "start_timeout_s": 1,
                                         "python": "/opt/env/bin/python"})
    with pytest.raises(SpecError) as err:
        run(spec, progress=False)
    (line,) = err.value.lines()
    assert line.startswith("backend.start_timeout_s: only 0 of 2 dask worker(s) on slurm came up in time; ")
    assert "backend.interface: ib0 (10.1.0.5, the test)" in line and "backend.python (/opt/env/bin/python)" in line
    # what the job logs say went wrong (here: the nodes' Python has no dask), in the line itself
    assert "check squeue and the job logs (they say: \"/opt/env/bin/python: Error while finding module " in line
    assert "No module named 'distributed')\"), kept in " in line
    kept = Path(line.split(", kept in ")[1].split(" (got ")[0])
    assert not (tmp_path / "run").exists() and kept.parent == tmp_path
    assert "Timed out trying to connect" in (kept / "slurm-41.out").read_text()


def test_a_scheduler_added_to_clusters_is_accepted_by_the_spec():
    """Adding a batch scheduler is one line in CLUSTERS: the `cluster` option's choices are made
    from it, so none is listed twice."""
    from typing import get_args

    from hpcml.backends.jobqueue import ClusterName
    from hpcml.backends.dask import DaskOptions
    from hpcml.backends.jobqueue import CLUSTERS

    assert set(get_args(ClusterName)) == {"local", *CLUSTERS}
    for name in CLUSTERS:
        assert DaskOptions(cluster=name).cluster == name
    with pytest.raises(Exception, match="cluster"):
        DaskOptions(cluster="no-such-scheduler")


def _numpy_0_0_1() -> None:
    """Run on a worker: its Python now reports numpy 0.0.1 (another environment on a node)."""
    from hpcml.tasks import environment

    real = environment.installed
    environment.installed = lambda package: "0.0.1" if package == "numpy" else real(package)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_worker_with_another_numpy_stops_the_run_before_any_task(tmp_path, scheduler):
    """Each worker's versions of the packages that decide the numbers are compared with the
    driver's as the backend starts: a difference is one line naming the node, the package and
    both versions, and no run directory is left."""
    import numpy as np
    from cloudpickle import register_pickle_by_value

    import hpcml
    from hpcml.errors import NotShared

    cluster, client = scheduler
    register_pickle_by_value(__import__(__name__))
    client.run(_numpy_0_0_1)
    spec = small_spec(tmp_path, backend={"name": "dask", "address": cluster.scheduler_address})
    with pytest.raises(NotShared) as err:
        hpcml.run(spec, progress=False)
    (line,) = err.value.lines()
    assert line.startswith(f"backend.python: node {socket.gethostname()} has numpy 0.0.1, the driver "
                           f"{np.__version__}: the numbers could differ; give the nodes the driver's environment "
                           "(backend.python, job_script_prologue) (got "), line
    assert not (tmp_path / "run").exists()


def test_a_worker_that_joins_later_compares_its_versions_before_its_first_chunk(tmp_path):
    """A worker compares its versions with those the driver recorded in the run directory
    (versions.json) before running a chunk: a difference fails the chunk as ``fatal``, which
    stops the run in one line, and nothing is written."""
    import numpy as np

    from hpcml.rundir.store import Chunk, RunStore
    from hpcml.spec import load_job
    from hpcml.tasks.worker import WorkOrder, execute_chunk

    job = load_job(small_spec(tmp_path))
    store = RunStore(job.output)
    store.prepare(job, resume=False)
    store.release()
    recorded = json.loads((store.path / "versions.json").read_text())
    assert recorded["numpy"] == np.__version__ and recorded["hpcml"] == __import__("hpcml").__version__
    recorded["numpy"] = "0.0.1"
    (store.path / "versions.json").write_text(json.dumps(recorded))
    result = execute_chunk(WorkOrder(job.to_json(), str(store.path), Chunk((0, 1))))
    assert result.fatal == ("backend.python", __import__("sys").executable,
                            f"node {socket.gethostname()} has numpy {np.__version__}, the driver 0.0.1: the numbers "
                            "could differ; give the nodes the driver's environment (backend.python, "
                            "job_script_prologue)")
    assert result.ok == [] and set(result.failed) == {0, 1} and not store.chunk_files()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_workers_that_reach_their_lifetime_cost_no_retry(tmp_path, capfd):
    """Workers with a lifetime (as dask-jobqueue's are, below the walltime) retire mid-run and
    are replaced: a worker with less lifetime left than its chunks take retires without starting
    the next one, a chunk cut off by a retirement runs elsewhere, and with ``retries: 0`` every
    task is ok at its first attempt, no failure recorded."""
    from distributed import LocalCluster

    import hpcml
    from hpcml.rundir.store import RunStore

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, lifetime="20s", lifetime_restart=True, silence_logs=False)
    try:
        spec = small_spec(tmp_path, name="t-lifetime", retries=0,
                          data={"source": "synthetic:regression", "options": {"n_samples": 10, "n_features": 2}},
                          plan={"replicate": {"n": 40}}, model={"kind": "sleep", "ms": 1000, "sigma": 0.3, "busy": False},
                          backend={"name": "dask", "address": cluster.scheduler_address, "chunk_size": 2})
        result = hpcml.run(spec, progress=False)
    finally:
        cluster.close()
    assert result.ok, result.failures()
    assert list(result.results["task_index"]) == list(range(40))
    assert (result.results["attempt"] == 0).all()
    records = RunStore(result.run_dir).read_records()
    assert set(records["status"]) == {"ok"}, records[records["status"] != "ok"]
    # a worker gave its chunk back rather than start it with too little lifetime left
    assert "Reason: hpcml: lifetime left below the chunk time" in capfd.readouterr().err
