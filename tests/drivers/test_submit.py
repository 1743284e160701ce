"""`hpcml submit` and `hpcml collect`: golden sbatch text, a fake sbatch for the submission
logic and bad input, and real submissions (pack under srun, job array + collect) on the local
Slurm whose results equal the local backend's bit for bit.

Regenerate the golden files after an intended change: HPCML_UPDATE_GOLDEN=1 pytest tests/test_submit.py
"""
from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import PYTHON, assert_same_results, hpcml_cli, small_spec
from slurm_util import read_logs, wait_done

GOLDEN = Path(__file__).parents[1] / "golden"
RUN = Path("/scratch/runs/t-boot")
WORKDIR = Path("/home/user/project")


def _job(tmp_path=None, **over):
    from hpcml.spec import load_job

    spec = small_spec(Path("/unused"), **over)
    spec["output"] = str(RUN)
    return load_job(spec)


def _check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("HPCML_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}; run with HPCML_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} differs from the golden file"


# ------------------------------------------------------------------ golden text (pure)

def test_golden_pack_script():
    from hpcml.drivers.submit import MAIN_SCRIPT, parse_options, render

    opts = parse_options(dict(mode="pack", ntasks=4, nodes=1, cpus_per_task=2, mem_gb=8, walltime_min=90,
                              partition="debug", account="proj01", gpus_per_node=1, directives=["--qos=high"],
                              setup=["module load openmpi", "source /opt/hpcml/bin/activate"],
                              python="/opt/hpcml/bin/python", pack_mode="static"))
    scripts = render(_job(), opts, RUN, WORKDIR)
    assert list(scripts) == [MAIN_SCRIPT]
    _check_golden("pack.sbatch", scripts[MAIN_SCRIPT])


def test_golden_array_scripts():
    from hpcml.drivers.submit import COLLECT_SCRIPT, MAIN_SCRIPT, parse_options, render

    opts = parse_options(dict(mode="array", elements=5, max_concurrent=2, mem_gb=1.5, walltime_min=20,
                              partition="debug", python="/opt/hpcml/bin/python"))
    scripts = render(_job(), opts, RUN, WORKDIR)
    _check_golden("array.sbatch", scripts[MAIN_SCRIPT])
    _check_golden("collect.sbatch", scripts[COLLECT_SCRIPT])


def test_dry_run_prints_the_golden_text_and_writes_nothing(tmp_path):
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(small_spec(tmp_path)))
    run_dir = tmp_path / "run"
    proc = hpcml_cli("submit", spec, "--dry-run", "--mode", "array", "--elements", "5", "--max-concurrent", "2",
                     "--mem-gb", "1.5", "--walltime-min", "20", "-p", "debug", "--python", "/opt/hpcml/bin/python",
                     "--chdir", WORKDIR, "--out", RUN)
    assert proc.returncode == 0, proc.stderr
    expected = ("# ==> hpcml.sbatch <==\n" + (GOLDEN / "array.sbatch").read_text() + "\n"
                "# ==> collect.sbatch <==\n" + (GOLDEN / "collect.sbatch").read_text())
    assert proc.stdout == expected
    assert not run_dir.exists() and not RUN.exists()


def test_launchers_in_pack_scripts():
    from hpcml.drivers.submit import MAIN_SCRIPT, parse_options, render

    def last_line(**kw):
        return render(_job(), parse_options(dict(python="/p", **kw)), RUN, WORKDIR)[MAIN_SCRIPT].strip().splitlines()[-1]

    assert last_line(launcher="mpirun", ntasks=3).startswith("mpirun -n 3 /p -m hpcml.pack ")
    assert last_line(srun_mpi="none").startswith("srun --ntasks=2 --cpus-per-task=1 /p -m hpcml.pack ")
    assert last_line(launcher="ibrun").startswith("ibrun /p -m hpcml.pack ")


# ------------------------------------------------------------------ fake sbatch: logic and bad input

def _fake_sbatch(folder: Path) -> Path:
    """An sbatch that records its arguments, rejects --partition=nope, prints --parsable ids."""
    folder.mkdir()
    log = folder / "calls.jsonl"
    script = folder / "sbatch"
    script.write_text(f"""#!{PYTHON}
import json, sys
args = sys.argv[1:]
text = open(args[-1]).read()
if "--partition=nope" in text:
    sys.stderr.write("sbatch: error: invalid partition specified: nope\\n"); sys.exit(1)
with open({str(log)!r}, "a") as fh:
    fh.write(json.dumps(args) + "\\n")
n = sum(1 for _ in open({str(log)!r}))
print(f"{{4240 + n}};local")
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    (folder / "scancel").write_text("#!/bin/sh\nexit 0\n")
    (folder / "scancel").chmod(0o755)
    return log


def _env_with(folder: Path) -> dict:
    return {"PATH": f"{folder}:{os.environ['PATH']}"}


def test_submit_array_with_fake_sbatch(tmp_path):
    log = _fake_sbatch(tmp_path / "bin")
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(small_spec(tmp_path)))
    proc = hpcml_cli("submit", spec, "--mode", "array", "--elements", "3", env=_env_with(tmp_path / "bin"))
    assert proc.returncode == 0, proc.stderr
    run_dir = (tmp_path / "run").resolve()
    assert proc.stdout.strip() == f"submitted array job 4241 and collect job 4242 -> {run_dir}"
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls[0] == ["--parsable", str(run_dir / "submit" / "hpcml.sbatch")]
    assert calls[1] == ["--parsable", "--dependency=afterany:4241", str(run_dir / "submit" / "collect.sbatch")]
    assert json.loads((run_dir / "submit" / "jobs.json").read_text()) == {"hpcml.sbatch": "4241",
                                                                         "collect.sbatch": "4242"}
    # The run directory is prepared for the elements: the resolved spec with an absolute output.
    assert json.loads((run_dir / "spec.json").read_text())["output"] == str(run_dir)
    assert "--of 3" in (run_dir / "submit" / "hpcml.sbatch").read_text()


STUCK_IN_C = """
import ctypes
import signal


def call(task):
    if task["index"] == 2:
        # A long call into C as Python sees it: no signal handler runs until it returns.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        ctypes.CDLL(None).sleep(600)
    return task["index"]
"""


def test_an_array_element_gives_up_on_a_task_stuck_in_c(tmp_path):
    """An array element whose task sits 600 s in a call into C with ``timeout_s: 3`` records
    it as timed out within seconds, runs the rest of its share and exits 1, instead of holding
    its allocation until the walltime."""
    _fake_sbatch(tmp_path / "bin")
    (tmp_path / "funcs.py").write_text(STUCK_IN_C)
    spec = small_spec(tmp_path, data={"source": "none"}, plan={"replicate": {"n": 5}}, timeout_s=3,
                      model={"kind": "python", "file": str(tmp_path / "funcs.py"), "function": "call"})
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(spec))
    proc = hpcml_cli("submit", tmp_path / "job.yaml", "--mode", "array", "--elements", "1",
                     env=_env_with(tmp_path / "bin"))
    assert proc.returncode == 0, proc.stderr
    run_dir = (tmp_path / "run").resolve()
    t0 = time.monotonic()
    element = subprocess.run([PYTHON, "-m", "hpcml.array_task", str(run_dir / "spec.json"), "--index", "0",
                              "--of", "1"], capture_output=True, text=True, timeout=300)
    assert time.monotonic() - t0 < 200  # the call alone would take 600 s
    assert element.returncode == 1, element.stderr
    assert "4 task(s) ok, 1 failed" in element.stdout + element.stderr
    assert hpcml_cli("collect", run_dir).returncode == 1
    results = pd.read_parquet(run_dir / "results.parquet").set_index("task_index")
    assert list(results.loc[results["status"] == "ok"].index) == [0, 1, 3, 4]
    assert results.loc[2, "error"] == ("TaskTimeout: task exceeded timeout_s=3 (given up on; its call was left "
                                       "running in this process)")


@pytest.mark.parametrize("replicates, mode", [(40, "pack"), (5, "array")])
def test_submit_picks_pack_or_array_from_the_number_of_tasks_and_says_why(tmp_path, replicates, mode):
    log = _fake_sbatch(tmp_path / "bin")
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(small_spec(tmp_path, plan={"bootstrap": {"replicates": replicates}})))
    proc = hpcml_cli("submit", spec, env=_env_with(tmp_path / "bin"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith(f"mode {mode}: {replicates} task"), lines
    assert ("--mode array" if mode == "pack" else "--mode pack") in lines[-1]
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(calls) == (1 if mode == "pack" else 2)  # an array comes with its collect job
    script = (tmp_path / "run" / "submit" / "hpcml.sbatch").read_text()
    assert ("hpcml.pack" in script) == (mode == "pack") and ("hpcml.array_task" in script) == (mode == "array")


def test_an_array_element_starts_no_chunk_past_its_deadline_and_resume_finishes(tmp_path):
    """The walltime near (``--deadline-s``, which hpcml submit sets to the walltime less a
    margin): the element starts no new chunk, says how many tasks it leaves, exits 1 with
    nothing failed; the element run again (a resubmission) does only the rest."""
    _fake_sbatch(tmp_path / "bin")
    spec = small_spec(tmp_path, data={"source": "sklearn:iris"}, plan={"replicate": {"n": 12}},
                      model={"kind": "sleep", "ms": 300, "busy": False}, backend={"name": "local", "chunk_size": 1})
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(spec))
    assert hpcml_cli("submit", tmp_path / "job.yaml", "--mode", "array", "--elements", "1",
                     env=_env_with(tmp_path / "bin")).returncode == 0
    run_dir = (tmp_path / "run").resolve()
    assert "--deadline-s 3420" in (run_dir / "submit" / "hpcml.sbatch").read_text()  # 60 min less 3 min
    element = [PYTHON, "-m", "hpcml.array_task", str(run_dir / "spec.json"), "--index", "0", "--of", "1"]
    first = subprocess.run(element + ["--deadline-s", "1"], capture_output=True, text=True, timeout=300)
    assert first.returncode == 1, first.stderr
    said = re.search(r"(\d+) task\(s\) ok, 0 failed, (\d+) left for a resubmission with --resume", first.stdout)
    assert said and int(said.group(2)) > 0 and int(said.group(1)) + int(said.group(2)) == 12, first.stdout
    again = subprocess.run(element, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and f"{said.group(2)} task(s) ok, 0 failed in" in again.stdout, again.stdout
    assert hpcml_cli("collect", run_dir).returncode == 0
    assert len(pd.read_parquet(run_dir / "results.parquet")) == 12


def test_sbatch_rejection_leaves_nothing(tmp_path):
    _fake_sbatch(tmp_path / "bin")
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(small_spec(tmp_path)))
    proc = hpcml_cli("submit", spec, "-p", "nope", env=_env_with(tmp_path / "bin"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: sbatch: rejected the script: ")
    assert "invalid partition specified: nope" in lines[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, field, value", [
    (["--ntasks", "0"], "submit.ntasks", "0"),
    (["--mode", "batch"], "submit.mode", "'batch'"),
    (["--mode", "array", "--elements", "41"], "submit.elements", "41"),
    (["--launcher", "aprun"], "submit.launcher", "'aprun'"),
    (["--walltime-min", "-5"], "submit.walltime_min", "-5"),
])
def test_bad_submit_options(tmp_path, args, field, value):
    _fake_sbatch(tmp_path / "bin")
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(small_spec(tmp_path)))
    proc = hpcml_cli("submit", spec, *args, env=_env_with(tmp_path / "bin"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}: ") and lines[0].endswith(f"(got {value})"), lines
    assert not (tmp_path / "run").exists() and not (tmp_path / "bin" / "calls.jsonl").exists()


def test_bad_spec_is_reported_before_submitting(tmp_path):
    _fake_sbatch(tmp_path / "bin")
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(small_spec(tmp_path, plan={"bootstrap": {"replicates": 0}})))
    proc = hpcml_cli("submit", spec, env=_env_with(tmp_path / "bin"))
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: plan.bootstrap.replicates: ") and "(got 0)" in proc.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "bin" / "calls.jsonl").exists()


def test_collect_needs_a_run_directory(tmp_path):
    proc = hpcml_cli("collect", tmp_path / "nothing")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: run_dir: not an hpcml run directory (no spec.json) (got '{tmp_path / 'nothing'}')"


# ------------------------------------------------------------------ real Slurm

@pytest.fixture(scope="module")
def local_reference(tmp_path_factory):
    from hpcml import run

    return run(small_spec(tmp_path_factory.mktemp("ref")), progress=False).results


def _submit_real(tmp_path, *args) -> tuple[Path, list[str]]:
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(small_spec(tmp_path)))
    proc = hpcml_cli("submit", spec, *args, "--walltime-min", "5", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    words = proc.stdout.split()
    return (tmp_path / "run").resolve(), [w for w in words if w.isdigit()]


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.mpi
@pytest.mark.timeout(300)
def test_real_submit_pack_under_srun(slurm_cluster, tmp_path, local_reference):
    run_dir, ids = _submit_real(tmp_path, "--mode", "pack", "--ntasks", "2", "--pack-mode", "static")
    assert len(ids) == 1
    states = wait_done(ids[0], timeout=240, logs=run_dir / "logs")
    assert states == ["COMPLETED"], f"{states}\n{read_logs(run_dir / 'logs')}"
    log = read_logs(run_dir / "logs")
    assert "40/40 tasks ok" in log
    # Both ranks worked: static packing (cyclic layout) gives rank 0 the even and rank 1 the
    # odd task indices, each rank writing chunk files of its own share.
    shares = {frozenset(pd.read_parquet(p)["task_index"] % 2) for p in (run_dir / "chunks").glob("chunk-*.parquet")}
    assert shares == {frozenset({0}), frozenset({1})}, shares
    assert_same_results(local_reference, pd.read_parquet(run_dir / "results.parquet"))


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.timeout(300)
def test_real_submit_array_and_collect(slurm_cluster, tmp_path, local_reference):
    run_dir, ids = _submit_real(tmp_path, "--mode", "array", "--elements", "3")
    assert len(ids) == 2
    array_id, collect_id = ids
    assert wait_done(array_id, timeout=240, logs=run_dir / "logs") == ["COMPLETED"] * 3
    assert wait_done(collect_id, timeout=120, logs=run_dir / "logs") == ["COMPLETED"], read_logs(run_dir / "logs")
    logs = sorted(p.name for p in (run_dir / "logs").iterdir())
    assert [n for n in logs if n.startswith(f"slurm-{array_id}_")] == [f"slurm-{array_id}_{i}.out" for i in range(3)]
    assert "40/40 tasks ok" in (run_dir / "logs" / f"slurm-collect-{collect_id}.out").read_text()
    assert_same_results(local_reference, pd.read_parquet(run_dir / "results.parquet"))
    assert json.loads((run_dir / "summary.json").read_text())["run"]["failed"] == 0


R_HYBRID = Path(__file__).parents[2] / "docs" / "examples" / "r-doparallel.yaml"


def test_the_notes_hybrid_pattern_in_dynamic_mode_is_refused_before_submitting(tmp_path):
    """doParallel inside each task in a dynamic pack would hang on the compute node until its
    walltime: refused here, in one line, with nothing written and nothing submitted."""
    proc = hpcml_cli("submit", R_HYBRID, "--ntasks", "1", "--cpus-per-task", "2", "--pack-mode", "dynamic",
                     "--out", tmp_path / "run", "--walltime-min", "5", cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --pack-mode:") and "--pack-mode static" in lines[0], lines
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.mpi
@pytest.mark.timeout(300)
def test_real_submit_of_the_notes_hybrid_pattern(slurm_cluster, tmp_path):
    """One rank with doParallel on 2 cores inside each task, under srun in static mode: every
    task ends, with the local backend's numbers, and the job leaves Slurm COMPLETED."""
    pytest.importorskip("rpy2")
    from hpcml import run

    proc = hpcml_cli("submit", R_HYBRID, "--ntasks", "1", "--cpus-per-task", "2", "--pack-mode", "static",
                     "--out", tmp_path / "run", "--walltime-min", "5", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run_dir = (tmp_path / "run").resolve()
    ids = [w for w in proc.stdout.split() if w.isdigit()]
    states = wait_done(ids[0], timeout=240, logs=run_dir / "logs")
    assert states == ["COMPLETED"], f"{states}\n{read_logs(run_dir / 'logs')}"
    results = pd.read_parquet(run_dir / "results.parquet")
    assert len(results) == 4 and (results["status"] == "ok").all() and (results["cores"] == 2).all()
    spec = yaml.safe_load(R_HYBRID.read_text())
    local = run({**spec, "output": str(tmp_path / "local")}, progress=False)
    assert_same_results(local.results, results)
