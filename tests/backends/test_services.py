"""The service scripts against the REAL services: a one-node Slurm and a Spark standalone
cluster on this machine (scripts/slurm_start.sh, spark_start.sh and their stop scripts).

Each service is started once per session and stopped at the end only if this session
started it, so an instance a developer (or another session) already runs survives.
Tests skip only when the service's binaries are not installed.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
START_TIMEOUT = 240


def _script(name: str, env: dict | None = None, timeout: float = START_TIMEOUT) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", str(SCRIPTS / name)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _wait_for(pred, timeout: float, every: float = 0.5) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(every)
    return bool(pred())


# --------------------------------------------------------------------------- Slurm

@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.timeout(300)
def test_slurm_start_is_idempotent(slurm_cluster):
    assert "slurm is up" in slurm_cluster.stdout
    again = _script("slurm_start.sh")
    assert "already running" in again.stdout, again.stdout
    state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    assert state.stdout.split()[0] in {"idle", "mixed", "allocated", "completing"}, state.stdout


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.timeout(300)
def test_slurm_sbatch_runs_a_job(slurm_cluster, tmp_path):
    out = tmp_path / "job-%j.out"
    sub = subprocess.run(["sbatch", "--parsable", "-o", str(out), "--chdir", str(tmp_path), "--wrap", "echo hi"],
                         capture_output=True, text=True, timeout=60)
    assert sub.returncode == 0, sub.stderr
    job_id = sub.stdout.strip().split(";")[0]
    out_file = tmp_path / f"job-{job_id}.out"
    ok = _wait_for(lambda: out_file.exists() and "hi" in out_file.read_text(), timeout=120)
    if not ok:
        info = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
        pytest.fail(f"job {job_id} wrote no 'hi' to {out_file} in 120 s:\n{info}")


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.timeout(300)
def test_slurm_srun_hostname(slurm_cluster):
    proc = subprocess.run(["srun", "-n1", "hostname"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == socket.gethostname()


# --------------------------------------------------------------------------- Spark

def _spark_env(spark_dir: Path | None = None, port: int | None = None) -> dict:
    env = {"HPCML_VENV": str(Path(sys.executable).parent.parent)}
    if spark_dir is not None:
        env["HPCML_SPARK_DIR"] = str(spark_dir)
    if port is not None:
        env["HPCML_SPARK_PORT"] = str(port)
    return env


def _java_present() -> bool:
    return shutil.which("java") is not None or bool(os.environ.get("JAVA_HOME"))


@pytest.fixture(scope="session")
def spark_up():
    """Starts the default instance; yields {'url', 'dir', 'started_here'}."""
    pytest.importorskip("pyspark", reason="pyspark not installed (pip install hpcml[spark])")
    if not _java_present():
        pytest.skip("java not installed (Spark needs Java 17+)")
    proc = _script("spark_start.sh", env=_spark_env())
    info = {
        "url": proc.stdout.strip().splitlines()[-1],
        "dir": Path(os.environ.get("HPCML_SPARK_DIR", "/tmp/hpcml-spark")),
        "started_here": "already running" not in proc.stderr,
    }
    yield info
    if info["started_here"]:
        _script("spark_stop.sh", env=_spark_env(), timeout=120)


@pytest.mark.slow
@pytest.mark.spark
@pytest.mark.timeout(400)
def test_spark_standalone_runs_a_job(spark_up, monkeypatch):
    from pyspark.sql import SparkSession

    port = int(os.environ.get("HPCML_SPARK_PORT", "7077"))
    assert spark_up["url"] == f"spark://127.0.0.1:{port}"
    # Executors must run this interpreter (it has the project's packages), on loopback.
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")
    spark = (SparkSession.builder.master(spark_up["url"]).appName("hpcml-test-services")
             .config("spark.ui.enabled", "false")
             .config("spark.driver.host", "127.0.0.1")
             .config("spark.executor.memory", "1g")
             .getOrCreate())
    try:
        assert spark.sparkContext.master == spark_up["url"]
        assert spark.sparkContext.parallelize(range(100), 4).sum() == 4950
    finally:
        spark.stop()


@pytest.mark.slow
@pytest.mark.spark
@pytest.mark.timeout(400)
def test_spark_stop_kills_the_daemons(spark_up, tmp_path):
    if spark_up["started_here"]:
        # Ours: stop the session's instance (the fixture's teardown is then a no-op).
        spark_dir, env = spark_up["dir"], _spark_env()
    else:
        # Someone else's instance is running: leave it, exercise a private one on a free port.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        spark_dir = tmp_path / "spark"
        env = _spark_env(spark_dir, port)
        _script("spark_start.sh", env=env)
    pids = {name: int((spark_dir / f"{name}.pid").read_text()) for name in ("master", "worker")}
    assert all(_pid_alive(p) for p in pids.values()), pids

    again = _script("spark_start.sh", env=env)  # idempotent: same daemons, nothing new
    assert "already running" in again.stderr, again.stderr
    assert {n: int((spark_dir / f"{n}.pid").read_text()) for n in pids} == pids

    stop = _script("spark_stop.sh", env=env, timeout=120)
    assert "stopped" in stop.stdout, stop.stdout
    assert _wait_for(lambda: not any(_pid_alive(p) for p in pids.values()), timeout=30), pids
    assert not (spark_dir / "master.pid").exists() and not (spark_dir / "worker.pid").exists()
    assert "nothing to stop" in _script("spark_stop.sh", env=env).stdout  # idempotent
