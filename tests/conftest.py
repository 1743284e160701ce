"""Shared fixtures: small jobs, result comparison, and real services started on demand.

Service fixtures start Slurm / a Spark standalone master through the project's scripts and
stop them at the end of the session only if this session started them (by pid, in the scripts).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
PYTHON = sys.executable


def small_spec(tmp_path: Path, **over) -> dict:
    """A bootstrap of OLS on diabetes, small enough for a unit test."""
    spec = {
        "name": "t-boot", "seed": 7,
        "data": {"source": "sklearn:diabetes", "target": "target"},
        "model": {"kind": "ols", "features": ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]},
        "plan": {"bootstrap": {"replicates": 40}},
        "backend": {"name": "local", "workers": 2},
        "output": str(tmp_path / "run"),
    }
    for key, value in over.items():
        spec[key] = value
    return spec


def linear_frame(n: int, features: list[str], seed: int = 0) -> pd.DataFrame:
    """Normal features and y = X @ (1, 2, ...) + noise: the data of the memory and Parquet-set tests."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, len(features))), columns=features)
    frame["y"] = frame.to_numpy() @ np.arange(1.0, len(features) + 1.0) + rng.normal(size=n)
    return frame


def assert_same_results(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Bit-for-bit equality of task outputs (timings and attempts aside)."""
    drop = ["seconds", "attempt", "traceback"]
    a = a.drop(columns=[c for c in drop if c in a]).sort_values("task_index").reset_index(drop=True)
    b = b.drop(columns=[c for c in drop if c in b]).sort_values("task_index").reset_index(drop=True)
    assert list(a.columns) == list(b.columns)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def hpcml_cli(*args: str, cwd: Path | None = None, timeout: float = 300, env: dict | None = None):
    """Run the real `hpcml` command line in a subprocess."""
    return subprocess.run([PYTHON, "-m", "hpcml.cli", *map(str, args)], cwd=cwd or ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def _service(start: str, stop: str, binary: str):
    if shutil.which(binary) is None and not Path(binary).exists():
        pytest.skip(f"{binary} not installed (make test installs it)")
    proc = subprocess.run(["bash", str(SCRIPTS / start)], capture_output=True, text=True, timeout=240)
    if proc.returncode != 0:
        pytest.fail(f"{start} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def slurm_cluster():
    """A one-node Slurm on this machine (munge, slurmctld, slurmd); yields the start script's run.

    Stopped at the end only if this session started it and no other live test session
    holds a lease on it (a file named after its pid in /run/hpcml-slurm/leases)."""
    already = subprocess.run(["scontrol", "ping"], capture_output=True, text=True).returncode == 0 \
        if shutil.which("scontrol") else False
    for binary in ("slurmd", "munged", "sbatch"):
        if shutil.which(binary) is None:
            pytest.skip(f"{binary} not installed (scripts/install_system.sh installs Slurm + munge)")
    proc = _service("slurm_start.sh", "slurm_stop.sh", "slurmctld")
    leases = Path("/run/hpcml-slurm/leases")
    leases.mkdir(parents=True, exist_ok=True)
    mine = leases / str(os.getpid())
    mine.touch()
    yield proc  # the start script's output ("slurm is up ...")
    mine.unlink(missing_ok=True)
    others = [p for p in leases.iterdir() if p.name.isdigit() and Path("/proc", p.name).exists()]
    if not already and not others:
        subprocess.run(["bash", str(SCRIPTS / "slurm_stop.sh")], capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def spark_master():
    """A Spark standalone master + one worker on 127.0.0.1; yields the master URL."""
    pytest.importorskip("pyspark")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("java not installed (Spark needs Java 17+; make test installs it)")
    # The daemons run this interpreter's pyspark jars, wherever the checkout lives.
    env = {**os.environ, "HPCML_VENV": str(Path(PYTHON).parent.parent)}
    proc = subprocess.run(["bash", str(SCRIPTS / "spark_start.sh")], capture_output=True, text=True, timeout=240,
                          env=env)
    if proc.returncode != 0:
        pytest.fail(f"spark_start.sh failed:\n{proc.stdout}\n{proc.stderr}")
    already = "already running" in proc.stderr  # spark_start.sh prints only the URL on stdout
    yield proc.stdout.strip().splitlines()[-1]
    if not already:
        subprocess.run(["bash", str(SCRIPTS / "spark_stop.sh")], capture_output=True, timeout=120, env=env)


def ctrl_c(driver: subprocess.Popen, ready, timeout: float = 180) -> tuple[int, list[str]]:
    """Once ``ready()`` holds (work under way), Ctrl-C as a terminal sends it (SIGINT to the
    driver's whole process group, started with ``start_new_session``); the driver's exit
    status and its non-blank stderr lines. A driver that does not exit is killed."""
    try:
        deadline = time.monotonic() + timeout
        while not ready() and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready(), driver.communicate()[1]
        os.killpg(driver.pid, signal.SIGINT)
        _, err = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    return driver.returncode, [line for line in err.splitlines() if line.strip()]
