"""Data-parallel training (hpcml.ddp): rank discovery, bad input, and real 2-rank runs.

The 2-rank runs use the real launchers: torchrun (gloo on the CPU), Open MPI's mpirun and
Slurm's srun (a one-node Slurm started by the conftest fixture), on sklearn's 8x8 digits.
One process and two ranks take the same steps (each global batch is shared out), so the
weights agree to float rounding; torchrun, mpirun and srun with the same world size agree
bit for bit.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import ROOT, assert_same_results
from hpcml.drivers.data_parallel import rendezvous
from hpcml.launchers import RankInfo, rank_from_env
from hpcml.errors import SpecError

pytestmark = pytest.mark.torch
VENV_BIN = Path(sys.executable).parent
TIMING = ["seconds_per_epoch", "world_size"]


def digits_job(tmp_path: Path, name: str, **model) -> Path:
    spec = {
        "name": name, "seed": 3,
        "data": {"source": "sklearn:digits", "target": "target"},
        "model": {"kind": "cnn", "arch": "cnn1", "epochs": 3, "batch_size": 64, "val_fraction": 0.2,
                  "device": "cpu", "plots": False, **model},
        "plan": {"fit": {}},
        "output": str(tmp_path / name),
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def launch(argv: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)  # a test run inside a launcher must not leak its rank into ours
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def results(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "results.parquet")


def model_state(run_dir: Path, name: str = "last.pt") -> dict:
    import torch

    return torch.load(run_dir / "artifacts" / "fit-000000" / "checkpoints" / name, weights_only=True)["model"]


# ---------------------------------------------------------------- rank discovery (fast)

@pytest.mark.parametrize("env, expected", [
    ({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}, RankInfo(1, 4, 1, "torchrun")),
    ({"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_LOCAL_RANK": "1"},
     RankInfo(3, 8, 1, "openmpi")),
    ({"PMI_RANK": "2", "PMI_SIZE": "3"}, RankInfo(2, 3, 2, "pmi")),
    ({"SLURM_PROCID": "5", "SLURM_NTASKS": "6", "SLURM_STEP_NUM_TASKS": "6", "SLURM_LOCALID": "0"},
     RankInfo(5, 6, 0, "slurm")),
    # a batch script's own shell (sbatch --ntasks=2, no srun): one process, not rank 0 of 2
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_LOCALID": "0"}, RankInfo(0, 1, 0, "single")),
    # torchrun inside a Slurm allocation: torchrun's own variables win
    ({"RANK": "0", "WORLD_SIZE": "2", "SLURM_PROCID": "0", "SLURM_NTASKS": "1"}, RankInfo(0, 2, 0, "torchrun")),
    ({"SLURM_PROCID": "0"}, RankInfo(0, 1, 0, "single")),  # no world size: not a launch
    ({}, RankInfo(0, 1, 0, "single")),
])
def test_rank_from_env(env, expected):
    assert rank_from_env(env) == expected


@pytest.mark.parametrize("env, field", [({"RANK": "x", "WORLD_SIZE": "2"}, "env.RANK"),
                                         ({"PMI_RANK": "4", "PMI_SIZE": "4"}, "env.PMI_RANK")])
def test_bad_rank_env_names_variable(env, field):
    with pytest.raises(SpecError) as e:
        rank_from_env(env)
    assert e.value.problems[0][0] == field


def test_rendezvous_from_env_and_slurm_port():
    info = RankInfo(1, 2, 1, "torchrun")
    assert rendezvous(info, {"MASTER_ADDR": "10.0.0.5", "MASTER_PORT": "1234"}) == ("10.0.0.5", 1234)
    # Two Slurm jobs on one node get different ports.
    slurm = RankInfo(0, 2, 0, "slurm")
    a = rendezvous(slurm, {"SLURM_JOB_ID": "17", "MASTER_ADDR": "h1"})
    b = rendezvous(slurm, {"SLURM_JOB_ID": "18", "MASTER_ADDR": "h1"})
    assert a[0] == "h1" and a[1] != b[1]
    host, port = rendezvous(RankInfo(0, 1, 0, "single"), {})
    assert host == "127.0.0.1" and 0 < port < 65536


# ---------------------------------------------------------------- bad input (exit 2, one line, no output)

@pytest.mark.timeout(120)
@pytest.mark.parametrize("model, plan, field", [
    ({"kind": "ols", "features": ["age", "bmi"]}, {"fit": {}}, "model.kind"),
    (None, {"bootstrap": {"replicates": 3}}, "plan"),
    ({"kind": "cnn", "arch": "cnn1", "lr": -1}, {"fit": {}}, "model.lr"),
])
def test_bad_spec_one_line_exit_2_no_output(tmp_path, model, plan, field):
    path = digits_job(tmp_path, "bad")
    spec = yaml.safe_load(path.read_text())
    if model is not None:
        spec["model"] = model
        if model["kind"] == "ols":
            spec["data"] = {"source": "sklearn:diabetes", "target": "target"}
    spec["plan"] = plan
    path.write_text(yaml.safe_dump(spec))
    proc = launch([sys.executable, "-m", "hpcml.ddp", str(path)])
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}"), proc.stderr
    assert not (tmp_path / "bad").exists()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("field, value", [("retries", 1), ("timeout_s", 60.0)])
def test_retries_and_timeout_are_refused_not_ignored(tmp_path, field, value):
    """One model trained across all ranks is neither retried nor timed out by hpcml: refused."""
    path = digits_job(tmp_path, "bad")
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), field: value}))
    proc = launch([sys.executable, "-m", "hpcml.ddp", str(path)])
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert lines == [f"error: {field}: data-parallel training trains one model across all ranks; hpcml does "
                     f"not {'retry it: leave retries out' if field == 'retries' else 'time it out: leave timeout_s out'}"
                     f" (got {value})"], proc.stderr
    assert not (tmp_path / "bad").exists()


# ---------------------------------------------------------------- real launches (slow)

@pytest.fixture(scope="module")
def torchrun_2(tmp_path_factory) -> Path:
    """Two ranks under the real torchrun, gloo on the CPU."""
    if shutil.which("torchrun", path=str(VENV_BIN)) is None:
        pytest.fail("torchrun is missing from the venv (it ships with torch)")
    tmp = tmp_path_factory.mktemp("ddp")
    spec = digits_job(tmp, "torchrun2")
    proc = launch([str(VENV_BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "hpcml.ddp", str(spec)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "world_size=2" in proc.stdout
    return tmp / "torchrun2"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_ranks_match_one_process(torchrun_2, tmp_path):
    from hpcml import run

    # The same job, one process, on the ordinary local backend.
    one = run(digits_job(tmp_path, "local1"), workers=1, progress=False)
    two = results(torchrun_2)
    assert two["world_size"].tolist() == [2] and two["status"].tolist() == ["ok"]
    r1, r2 = one.results.iloc[0], two.iloc[0]
    assert r1["val_accuracy"] > 0.85
    assert abs(r2["val_accuracy"] - r1["val_accuracy"]) <= 0.01
    assert abs(r2["accuracy"] - r1["accuracy"]) <= 0.01
    # Same steps: the weights differ only by float summation order, not by training noise.
    import torch

    s1, s2 = model_state(one.run_dir), model_state(torchrun_2)
    for k in s1:
        torch.testing.assert_close(s2[k], s1[k], atol=1e-5, rtol=1e-4)
    # Each rank checkpoints its own RNG state; rank 0 alone writes the shared artifacts.
    ckpts = sorted(p.name for p in (torchrun_2 / "artifacts" / "fit-000000" / "checkpoints").iterdir())
    assert ckpts == ["last.pt", "last.rank1.pt"]
    assert (torchrun_2 / "artifacts" / "fit-000000" / "history.csv").read_text().count("\n") == 4
    assert (torchrun_2 / "summary.json").exists()


@pytest.mark.slow
@pytest.mark.mpi
@pytest.mark.timeout(300)
def test_mpirun_two_ranks_bit_identical_to_torchrun(torchrun_2, tmp_path):
    if shutil.which("mpirun") is None:
        pytest.skip("Open MPI not installed (make test installs it)")
    spec = digits_job(tmp_path, "mpirun2")
    proc = launch(["mpirun", "--allow-run-as-root", "--oversubscribe", "-n", "2",
                   sys.executable, "-m", "hpcml.ddp", str(spec)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    a, b = results(tmp_path / "mpirun2"), results(torchrun_2)
    assert a["world_size"].tolist() == [2]
    assert_same_results(a.drop(columns=TIMING), b.drop(columns=TIMING))
    import torch

    for k, v in model_state(torchrun_2).items():
        assert torch.equal(model_state(tmp_path / "mpirun2")[k], v), k


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_single_process_entry_equals_local_backend(tmp_path):
    """`python -m hpcml.ddp` without a launcher is world 1: the local backend's numbers exactly."""
    from hpcml import run

    spec = digits_job(tmp_path, "single", epochs=2)
    proc = launch([sys.executable, "-m", "hpcml.ddp", str(spec)])
    assert proc.returncode == 0, proc.stderr
    local = run(spec, out=tmp_path / "local", progress=False, workers=1)
    assert_same_results(results(tmp_path / "single").drop(columns=TIMING),
                        local.results.drop(columns=["seconds_per_epoch"]))


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.timeout(400)
def test_srun_two_ranks_bit_identical_to_torchrun(slurm_cluster, torchrun_2, tmp_path):
    """Two ranks as one real Slurm job step: rank/world from SLURM_PROCID/SLURM_STEP_NUM_TASKS."""
    spec = digits_job(tmp_path, "srun2")
    proc = launch(["srun", "--ntasks=2", "--cpus-per-task=1", "--time=5", sys.executable, "-m", "hpcml.ddp",
                   str(spec)], timeout=360)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    a, b = results(tmp_path / "srun2"), results(torchrun_2)
    assert a["world_size"].tolist() == [2]
    assert_same_results(a.drop(columns=TIMING), b.drop(columns=TIMING))
