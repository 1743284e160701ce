"""MPI packing under real Open MPI: equal to the local backend, lost ranks, threads, shards.

Every slow test starts real ``mpirun`` jobs (``--allow-run-as-root --oversubscribe``, as root in
CI). A rank is killed or stopped by its pid, found through the launcher's environment
(``OMPI_COMM_WORLD_RANK``) and a tag of this test, so nothing else on the machine is touched.
"""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import PYTHON, ROOT, assert_same_results, small_spec
from mpi_util import MPIRUN, mpirun, start_mpirun

import hpcml
from hpcml.backends.mpi import MPIOptions
from hpcml.drivers.mpi_static import rank_share
from hpcml.launchers import launcher_rank
from hpcml.launchers import launch
from hpcml.rundir.store import RunStore



def real_mpi(fn):
    """A test that starts real mpirun jobs."""
    for mark in (pytest.mark.slow, pytest.mark.mpi,
                 pytest.mark.skipif(MPIRUN is None or importlib.util.find_spec("mpi4py") is None,
                                    reason="Open MPI or mpi4py not installed (make test installs both)")):
        fn = mark(fn)
    return fn


# Short heartbeats so a lost rank is noticed in seconds (the default is 2 s / 30 s).
FAST_LIVENESS = {"heartbeat_s": 0.5, "dead_after_s": 4}


def rank_pids(tag: str) -> dict[int, int]:
    """pid of each rank of the mpirun started with ``tag`` (from /proc/<pid>/environ)."""
    pids = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = dict(v.split("=", 1) for v in (entry / "environ").read_bytes().decode(errors="replace").split("\0")
                       if "=" in v)
        except OSError:
            continue
        if env.get("HPCML_TEST_TAG") == tag and "OMPI_COMM_WORLD_RANK" in env:
            pids[int(env["OMPI_COMM_WORLD_RANK"])] = int(entry.name)
    return pids


def wait_for_chunks(run_dir: Path, n: int, proc: subprocess.Popen, timeout: float = 90) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if len(RunStore(run_dir).chunk_files()) >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"the MPI job ended before writing {n} chunks:\n{proc.stderr.read()}")
        time.sleep(0.05)
    pytest.fail(f"no {n} chunk files in {timeout}s")


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec))
    return path


def ok_records(run_dir: Path) -> pd.DataFrame:
    frame = RunStore(run_dir).read_records()
    return frame.loc[frame["status"] == "ok"]


# ---------------------------------------------------------------- fast: no mpirun


def test_rank_share_covers_every_task_once():
    todo = [0, 2, 3, 5, 7, 8, 9, 11, 12, 13]
    for layout in ("cyclic", "block"):
        for size in (1, 2, 3, 4, 11):
            shares = [rank_share(todo, r, size, layout) for r in range(size)]
            assert sorted(i for s in shares for i in s) == todo
            assert max(map(len, shares)) - min(map(len, shares)) <= 1
    assert rank_share(todo, 1, 3, "cyclic") == [2, 7, 11]  # the bundler: every size-th task
    assert rank_share(todo, 1, 3, "block") == [7, 8, 9]


def test_launchers_are_pure_command_functions():
    cmd = "python -m hpcml.pack job.yaml"
    assert launch("mpirun", cmd, ntasks=48) == "mpirun -n 48 python -m hpcml.pack job.yaml"
    assert launch("mpirun", cmd, ntasks=2, cpus_per_task=24) == "mpirun -n 2 --bind-to none " + cmd
    assert launch("srun", cmd, ntasks=4, cpus_per_task=2, extra=["--mpi=pmix"]) == \
        "srun --ntasks=4 --cpus-per-task=2 --mpi=pmix " + cmd
    assert launch("ibrun", cmd, ntasks=96) == "ibrun " + cmd  # ibrun takes the count from the allocation
    assert launch("none", cmd, ntasks=1) == cmd


def test_options_reject_bad_values():
    with pytest.raises(ValueError, match="heartbeat_s"):
        MPIOptions(heartbeat_s=5, dead_after_s=6)
    with pytest.raises(ValueError, match="mode"):
        MPIOptions(mode="round-robin")


def test_launcher_rank_from_environment(monkeypatch):
    from hpcml.launchers import LAUNCHER_VARS

    for names in LAUNCHER_VARS:
        for var in names[1:]:
            monkeypatch.delenv(var, raising=False)
    assert launcher_rank() == 0
    monkeypatch.setenv("SLURM_PROCID", "5")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "8")
    assert launcher_rank() == 5
    monkeypatch.setenv("SLURM_PROCID", "9")  # out of range: never an error here, just rank 0
    assert launcher_rank() == 0


def test_bad_option_one_line_exit_2_nothing_written(tmp_path):
    spec = write_spec(tmp_path / "job.yaml", small_spec(tmp_path, backend={"name": "mpi", "layout": "diagonal"}))
    proc = subprocess.run([PYTHON, "scripts/pack_tasks.py", str(spec), "-q"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "backend.layout" in lines[0] and "'diagonal'" in lines[0], proc.stderr
    assert not (tmp_path / "run").exists()


def test_launch_without_matching_mpi_is_refused(tmp_path):
    """srun started 3 tasks but mpi4py sees one rank each: running would do the job 3 times."""
    pytest.importorskip("mpi4py")
    spec = write_spec(tmp_path / "job.yaml", small_spec(tmp_path))
    proc = subprocess.run([PYTHON, "-m", "hpcml.pack", str(spec), "-q"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "SLURM_STEP_NUM_TASKS": "3", "SLURM_PROCID": "0"})
    assert proc.returncode == 2, proc.stderr
    assert "SLURM_STEP_NUM_TASKS" in proc.stderr and "one rank" in proc.stderr
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- real mpirun


@pytest.fixture(scope="module")
def local_bootstrap(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("local-boot")
    return hpcml.run(small_spec(tmp, backend={"name": "local", "workers": 2}), progress=False).results


@pytest.mark.parametrize("n, mode, layout, entry", [
    (2, "static", "cyclic", "hpcml run"),
    (2, "dynamic", None, "pack_tasks.py"),
    (3, "static", "block", "pack_tasks.py"),
    (3, "dynamic", None, "hpcml run"),
])
@pytest.mark.timeout(180)
@real_mpi
def test_same_numbers_as_local(tmp_path, local_bootstrap, n, mode, layout, entry):
    backend = {"name": "mpi", "mode": mode, **({"layout": layout} if layout else {})}
    spec = write_spec(tmp_path / "job.yaml", small_spec(tmp_path, backend=backend))
    if entry == "hpcml run":
        proc = mpirun(n, "-m", "hpcml.cli", "run", str(spec), "--backend", "mpi", "-q")
    else:
        proc = mpirun(n, "scripts/pack_tasks.py", str(spec), "--mode", mode, "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("40/40 tasks ok") == 1  # rank 0 reports, once
    results = pd.read_parquet(tmp_path / "run" / "results.parquet")
    assert_same_results(local_bootstrap, results)
    chunks = [pq.read_table(f).column("task_index").to_pylist() for f in RunStore(tmp_path / "run").chunk_files()]
    assert sorted(i for c in chunks for i in c) == list(range(40))  # every task once, none twice
    if mode == "static":  # each rank wrote the chunks of its own share, with no coordinator
        owner = {i: r for r in range(n) for i in rank_share(list(range(40)), r, n, layout)}
        assert all(len({owner[i] for i in c}) == 1 for c in chunks)
        assert len({owner[c[0]] for c in chunks}) == n


def sleep_spec(tmp_path: Path, mode: str, **backend) -> dict:
    """Uneven tasks (lognormal 120 ms median) in chunks of 2, so a kill lands mid-run."""
    return {"name": "t-kill", "seed": 11, "data": {"source": "sklearn:iris"},
            "model": {"kind": "sleep", "ms": 120, "sigma": 0.5, "busy": False},
            "plan": {"replicate": {"n": 48}},
            "backend": {"name": "mpi", "mode": mode, "chunk_size": 2, **FAST_LIVENESS, **backend},
            "output": str(tmp_path / "run")}


@pytest.fixture(scope="module")
def local_sleep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("local-sleep")
    spec = sleep_spec(tmp, "static")
    spec["backend"] = {"name": "local", "workers": 2}
    return hpcml.run(spec, progress=False).results


def _resume_and_check(tmp_path: Path, spec: Path, local: pd.DataFrame, before: dict[str, bytes]) -> None:
    """--resume (on 2 ranks) completes; nothing lost, nothing run twice, finished chunks untouched."""
    proc = mpirun(2, "scripts/pack_tasks.py", str(spec), "--resume", "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = tmp_path / "run"
    for name, data in before.items():
        assert (run / "chunks" / name).read_bytes() == data
    ok = ok_records(run)
    assert sorted(ok["task_index"]) == list(range(48))  # each task has exactly one ok record
    results = pd.read_parquet(run / "results.parquet")
    assert (results["status"] == "ok").all()
    assert_same_results(local, results)


def _finished_chunks(run: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in RunStore(run).chunk_files()}


@pytest.mark.timeout(240)
@real_mpi
def test_kill9_under_mpirun_ends_job_and_resume_completes(tmp_path, local_sleep):
    """Open MPI's mpirun ends the whole job when a rank dies; rank 0 says how to go on."""
    spec = write_spec(tmp_path / "job.yaml", sleep_spec(tmp_path, "dynamic"))
    tag = uuid.uuid4().hex
    proc = start_mpirun(3, "-m", "hpcml.pack", str(spec), "-q", tag=tag)
    try:
        wait_for_chunks(tmp_path / "run", 4, proc)
        os.kill(rank_pids(tag)[1], signal.SIGKILL)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=60)
        assert time.monotonic() - t0 < 30  # no hang
    finally:
        _reap(proc, tag)
    assert proc.returncode != 0
    assert "exited on signal 9" in err and "rerun with --resume" in err, err
    assert f"hpcml: MPI rank(s) 1 (on {socket.gethostname()}) lost: the launcher ended the MPI job" in err, err
    assert not (tmp_path / "run" / "results.parquet").exists()
    _resume_and_check(tmp_path, spec, local_sleep, _finished_chunks(tmp_path / "run"))


@pytest.mark.timeout(240)
@real_mpi
def test_kill9_without_launcher_help_is_detected_by_heartbeats(tmp_path, local_sleep):
    """A launcher that keeps the other ranks running (srun's default, --enable-recovery):
    rank 0 notices the silence, records the lost rank's tasks as failed and ends the job."""
    spec = write_spec(tmp_path / "job.yaml", sleep_spec(tmp_path, "static"))
    tag = uuid.uuid4().hex
    proc = start_mpirun(3, "-m", "hpcml.pack", str(spec), "-q", extra=("--enable-recovery",), tag=tag)
    try:
        wait_for_chunks(tmp_path / "run", 3, proc)
        os.kill(rank_pids(tag)[2], signal.SIGKILL)
        t0 = time.monotonic()
        out, err = proc.communicate(timeout=90)
        assert time.monotonic() - t0 < 4 + 30  # dead_after_s, then consolidation and abort
    finally:
        _reap(proc, tag)
    # (mpirun --enable-recovery exits 0 even after MPI_Abort: Open MPI 4.1; the run says what happened)
    assert "MPI rank(s) 2 lost" in err and "rerun with --resume" in err, err
    results = pd.read_parquet(tmp_path / "run" / "results.parquet")
    failed = results.loc[results["status"] != "ok"]
    assert len(failed) > 0 and failed["error"].str.contains("MPI rank 2 was lost").all()
    assert set(failed["task_index"]) <= set(rank_share(list(range(48)), 2, 3, "cyclic"))
    _resume_and_check(tmp_path, spec, local_sleep, _finished_chunks(tmp_path / "run"))


@pytest.mark.timeout(240)
@real_mpi
def test_hung_rank_is_declared_lost_and_its_chunk_rerun_elsewhere(tmp_path, local_sleep):
    """A stopped rank (hung file system, SIGSTOP) that no launcher notices: the heartbeat bound.
    Its chunk runs on the ranks left without a retry (``retries`` is 0): the run completes."""
    spec = write_spec(tmp_path / "job.yaml", sleep_spec(tmp_path, "dynamic"))
    tag = uuid.uuid4().hex
    proc = start_mpirun(3, "-m", "hpcml.cli", "run", str(spec), "-q", tag=tag)
    try:
        wait_for_chunks(tmp_path / "run", 4, proc)
        os.kill(rank_pids(tag)[1], signal.SIGSTOP)
        out, err = proc.communicate(timeout=90)
    finally:
        _reap(proc, tag)
    assert proc.returncode == 1, out + err  # MPI_Abort: the stopped rank cannot finalize
    assert "MPI rank(s) 1 lost" in err and "the results are complete" in err, err
    assert "48/48 tasks ok" in out
    results = pd.read_parquet(tmp_path / "run" / "results.parquet")
    assert_same_results(local_sleep, results)
    # Either the stopped rank held a chunk (one line says it runs on the ranks left) or it was
    # stopped between chunks; no task failed either way.
    held = [line for line in err.splitlines() if "MPI rank 1 stopped responding" in line]
    assert all("runs on the ranks left" in line for line in held) and len(held) <= 1, err
    records = RunStore(tmp_path / "run").read_records()
    assert (records["status"] == "ok").all(), records.loc[records["status"] != "ok"]
    # Every task once in the results. (The chunk files may hold a second ok copy of the stopped
    # rank's chunk: when the job is torn down, Open MPI sends SIGCONT before it kills, so a hung
    # rank can still finish the chunk it held. Consolidation keeps one row per task.)
    assert sorted(results["task_index"]) == list(range(48))
    assert sorted(RunStore(tmp_path / "run").latest_records()["task_index"]) == list(range(48))


def _reap(proc: subprocess.Popen, tag: str) -> None:
    """Leave nothing running: the job's own ranks (by pid) and mpirun itself."""
    if proc.poll() is None:
        proc.kill()
        proc.communicate(timeout=30)
    for pid in rank_pids(tag).values():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass



# A program every rank runs: the Python API under mpirun, with a model kind of its own that
# reports what a task sees (pinned BLAS threads, its rank), and a log of the rows each rank
# reads from a sharded Parquet file. Arguments: output log dir, then spec files to run in turn.
DRIVER = textwrap.dedent('''
    import json, os, sys
    from mpi4py import MPI
    from threadpoolctl import threadpool_info
    import hpcml.data.lazy_rows
    from hpcml.drivers.mpi import run_under_mpi
    from hpcml.models.base import ModelKind, ModelParams, register_model
    from hpcml.spec import load_job

    rank = MPI.COMM_WORLD.Get_rank()

    @register_model
    class Probe(ModelKind):
        name, Params, needs_target, cheap_refit, primary_metric = "probe", ModelParams, False, False, "blas_threads"

        def fit(self, params, data, weights, ctx):
            blas = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
            return {"blas_threads": float(min(blas)), "omp_env": float(os.environ["OMP_NUM_THREADS"]),
                    "ctx_threads": float(ctx.threads), "rank": float(rank)}

        def outputs(self, params, fitted, data):
            return fitted

        def score(self, params, fitted, data, mask):
            return {}

    read = hpcml.data.lazy_rows._Parquet.read
    def logged_read(self, start, stop, columns):
        with open(os.path.join(sys.argv[1], f"reads-{rank}.jsonl"), "a") as fh:
            fh.write(json.dumps([start, stop]) + "\\n")
        return read(self, start, stop, columns)
    hpcml.data.lazy_rows._Parquet.read = logged_read

    for path in sys.argv[2:]:
        result = run_under_mpi(load_job(path), progress=False)
        if result is not None:
            print(f"{result.n_tasks - result.n_failed}/{result.n_tasks} ok", flush=True)
''')


def run_driver(tmp_path: Path, n: int, specs: list[dict], extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    paths = [str(write_spec(tmp_path / f"job{i}.yaml", s)) for i, s in enumerate(specs)]
    return mpirun(n, str(driver), str(tmp_path), *paths, extra=extra)


@pytest.mark.timeout(180)
@real_mpi
def test_threads_per_rank_pins_every_task(tmp_path, monkeypatch):
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)  # hpcml sets them from threads_per_task

    def probe(name: str, **backend) -> dict:
        return {"name": name, "data": {"source": "sklearn:iris"}, "model": {"kind": "probe"},
                "plan": {"replicate": {"n": 8}}, "backend": {"name": "mpi", "chunk_size": 1, **backend},
                "output": str(tmp_path / name)}

    # hybrid: 2 ranks x 2 threads, launched bound to one core each, so hpcml warns about it
    proc = run_driver(tmp_path, 2, [probe("hybrid", threads_per_rank=2, mode="static")],
                      extra=("--bind-to", "core"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "may use only 1 core(s) but runs 2 threads per task" in proc.stderr
    hybrid = pd.read_parquet(tmp_path / "hybrid" / "results.parquet")
    assert (hybrid["blas_threads"] == 2).all() and (hybrid["ctx_threads"] == 2).all()
    assert (hybrid["omp_env"] == 2).all()  # what child processes (Rscript, doParallel) inherit
    assert set(hybrid["rank"]) == {0.0, 1.0}
    assert RunStore(tmp_path / "hybrid").exists()
    assert '"threads_per_task": 2' in (tmp_path / "hybrid" / "spec.json").read_text()

    # per-core sessions (the default): one thread per rank, in a run of its own
    proc = run_driver(tmp_path, 2, [probe("percore", mode="dynamic")], extra=("--bind-to", "none"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "may use only" not in proc.stderr
    percore = pd.read_parquet(tmp_path / "percore" / "results.parquet")
    assert (percore["blas_threads"] == 1).all() and (percore["omp_env"] == 1).all()


@pytest.mark.timeout(180)
@real_mpi
def test_shards_plan_each_rank_reads_only_its_part(tmp_path):
    rng = np.random.default_rng(5)
    n_rows, features = 600, ["a", "b", "c"]
    X = rng.standard_normal((n_rows, 3))
    frame = pd.DataFrame(X, columns=features).assign(y=X @ [1.0, -2.0, 0.5] + rng.standard_normal(n_rows))
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "data.parquet", row_group_size=100)
    spec = {"name": "t-shards", "seed": 1, "data": {"source": str(tmp_path / "data.parquet"), "target": "y"},
            "model": {"kind": "ols", "features": features}, "plan": {"shards": {"n": 6}},
            "backend": {"name": "mpi", "mode": "static", "layout": "block"}, "output": str(tmp_path / "run")}
    proc = run_driver(tmp_path, 3, [spec])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "6/6 ok" in proc.stdout
    for rank in range(3):  # block layout: rank r holds shards 2r and 2r+1, rows 200r .. 200r+199
        reads = [tuple(json.loads(ln)) for ln in (tmp_path / f"reads-{rank}.jsonl").read_text().splitlines()]
        assert sorted(reads) == [(200 * rank, 200 * rank + 100), (200 * rank + 100, 200 * rank + 200)], reads
    local = hpcml.run({**spec, "backend": {"name": "local", "workers": 2}, "output": str(tmp_path / "local")},
                      progress=False)
    results = pd.read_parquet(tmp_path / "run" / "results.parquet")
    assert_same_results(local.results, results)
    assert list(results["rows"]) == [100] * 6


@pytest.mark.timeout(180)
@real_mpi
def test_bad_input_under_mpirun_is_one_line_exit_2(tmp_path):
    """Every rank reads the same bad spec; the error is printed once and nothing is written."""
    spec = write_spec(tmp_path / "bad.yaml", small_spec(tmp_path, backend={"name": "mpi", "dead_after_s": -1}))
    for argv in (["scripts/pack_tasks.py", str(spec), "-q"], ["-m", "hpcml.cli", "run", str(spec), "-q"]):
        proc = mpirun(2, *argv)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and "backend.dead_after_s" in errors[0] and "-1" in errors[0], proc.stderr
    # found only once rank 0 loads the data (more shards than rows): the other ranks are told to stop
    spec = write_spec(tmp_path / "bad2.yaml", small_spec(tmp_path, plan={"shards": {"n": 10_000}},
                                                         backend={"name": "mpi", "mode": "dynamic"}))
    proc = mpirun(2, "-m", "hpcml.cli", "run", str(spec), "-q")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "plan.shards.n" in errors[0] and "10000" in errors[0], proc.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.timeout(180)
@real_mpi
def test_results_agree_with_chunk_files_when_a_rank_finishes_after_rank_0_gave_up(tmp_path):
    """Every rank is mid-task when rank 0 stops waiting (deadline_s + dead_after_s) and
    consolidates: a late rank's result must not land after that, on a busy machine too."""
    for mode in ("static", "dynamic"):
        run = tmp_path / mode
        spec = {"name": "t-late", "data": {"source": "sklearn:iris"},
                # Tasks outlast deadline_s + dead_after_s (5 s); the liveness margin is wide enough
                # that a starved heartbeat on a loaded machine does not pass for a lost rank 0.
                "model": {"kind": "sleep", "ms": 5600, "busy": False}, "plan": {"replicate": {"n": 4}},
                "backend": {"name": "mpi", "mode": mode, "chunk_size": 1, "deadline_s": 2,
                            "heartbeat_s": 0.5, "dead_after_s": 3}, "output": str(run)}
        proc = mpirun(2, "scripts/pack_tasks.py", str(write_spec(tmp_path / f"{mode}.yaml", spec)), "-q")
        assert proc.returncode in (0, 1), proc.stdout + proc.stderr
        time.sleep(4)  # anything a late rank would still write has landed by now
        assert (run / "results.parquet").exists(), (mode, proc.returncode, proc.stdout + proc.stderr)
        results = pd.read_parquet(run / "results.parquet")
        assert sorted(results["task_index"]) == list(range(4))
        assert sorted(ok_records(run)["task_index"]) == sorted(results.loc[results["status"] == "ok", "task_index"])


@real_mpi
def test_deadline_stops_new_work_records_the_rest_and_resume_finishes(tmp_path):
    """deadline_s: nothing new starts after it, the summary is consistent with the chunk files
    on disk (every task ok or failed, none silently missing), and --resume finishes the rest."""
    for mode in ("static", "dynamic"):
        run = tmp_path / mode
        spec = {"name": "t-deadline", "seed": 2, "data": {"source": "sklearn:iris"},
                "model": {"kind": "sleep", "ms": 200, "busy": False}, "plan": {"replicate": {"n": 40}},
                "backend": {"name": "mpi", "mode": mode, "chunk_size": 2, "deadline_s": 2, **FAST_LIVENESS},
                "output": str(run)}
        path = write_spec(tmp_path / f"{mode}.yaml", spec)
        proc = mpirun(2, "scripts/pack_tasks.py", str(path), "-q")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        results = pd.read_parquet(run / "results.parquet")
        assert sorted(results["task_index"]) == list(range(40))
        failed = results.loc[results["status"] != "ok"]
        assert len(failed) > 0 and failed["error"].str.contains("backend.deadline_s passed").all()
        assert sorted(ok_records(run)["task_index"]) == sorted(results.loc[results["status"] == "ok", "task_index"])
    spec["backend"].pop("deadline_s")
    proc = mpirun(2, "scripts/pack_tasks.py", str(write_spec(tmp_path / "resume.yaml", spec)), "--resume", "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(ok_records(tmp_path / "dynamic")["task_index"]) == list(range(40))


STUCK_FUNCS = """
import ctypes
import signal


def call(task, stuck=(2,)):
    if task["index"] in stuck:
        # What a long call into C looks like to Python: no handler runs until it returns (the
        # alarm of timeout_s is held off; an eigvals of a large matrix behaves the same).
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        ctypes.CDLL(None).sleep(600)
    return task["index"]
"""

STUCK_CASES = {
    # mode, ranks, whether rank 0 runs chunks, tasks stuck in C -> the rank each is given up on by
    "dynamic, a worker rank": ("dynamic", 2, False, {2: 1}),
    "dynamic, rank 0's own chunk": ("dynamic", 1, True, {2: 0}),
    "static, every rank's share": ("static", 2, True, {2: 0, 3: 1}),
}


@pytest.mark.timeout(300)
@real_mpi
@pytest.mark.parametrize("case", list(STUCK_CASES))
def test_timeout_s_gives_up_on_a_task_stuck_in_c(tmp_path, case):
    """A task 600 s into a call into C with ``timeout_s: 3``: the rank running it gives up on
    it within seconds (failed with TaskTimeout, naming the rank), the rest of its chunk and share
    runs, the results are consolidated, and the MPI job ends promptly. A worker rank of dynamic
    mode stays out of the work (rank 0 ends the job rather than wait for it); a rank running
    its own chunks goes on while the call sits in an abandoned thread."""
    mode, ranks, rank0_works, stuck = STUCK_CASES[case]
    (tmp_path / "funcs.py").write_text(STUCK_FUNCS)
    spec = {"name": "t-stuck", "data": {"source": "none"},
            "model": {"kind": "python", "file": str(tmp_path / "funcs.py"), "function": "call",
                      "args": {"stuck": sorted(stuck)}},
            "plan": {"replicate": {"n": 6}}, "timeout_s": 3, "output": str(tmp_path / "run"),
            "backend": {"name": "mpi", "mode": mode, "rank0_works": rank0_works, "chunk_size": 3, **FAST_LIVENESS}}
    path = write_spec(tmp_path / "job.yaml", spec)
    tag = uuid.uuid4().hex
    proc = start_mpirun(ranks, "-m", "hpcml.cli", "run", str(path), "-q", tag=tag)
    t0 = time.monotonic()
    try:
        out, err = proc.communicate(timeout=200)
        took = time.monotonic() - t0
    finally:
        _reap(proc, tag)
    assert took < 200, took  # the call alone would take 600 s
    assert proc.returncode == 1, (proc.returncode, err)  # some tasks failed
    if not rank0_works:
        assert "still in a task given up on past timeout_s" in err, err
    results = pd.read_parquet(tmp_path / "run" / "results.parquet").set_index("task_index")
    assert sorted(results.index) == list(range(6))
    assert list(results.loc[results["status"] == "ok"].index) == [i for i in range(6) if i not in stuck]
    for index, rank in stuck.items():
        assert results.loc[index, "error"] == (f"TaskTimeout: task exceeded timeout_s=3 (given up on; MPI rank {rank} "
                                               "was stuck in it)"), results.loc[index, "error"]
    assert rank_pids(tag) == {}
