"""``hpcml status --watch RUN`` from another terminal: a line every --every seconds with done,
failed, who runs it, throughput and time left, until the run ends; at once for a finished run."""
from __future__ import annotations

import re
import subprocess
import sys

import yaml

from conftest import ROOT, hpcml_cli


def _spec(tmp_path, n: int = 12) -> dict:
    return {"name": "slow", "data": {"source": "sklearn:iris"}, "model": {"kind": "sleep", "ms": 300, "busy": False},
            "plan": {"replicate": {"n": n}}, "backend": {"name": "local", "workers": 2, "chunk_size": 1},
            "output": str(tmp_path / "run")}


def test_watch_follows_a_run_until_it_ends(tmp_path):
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(_spec(tmp_path)))
    run = subprocess.Popen([sys.executable, "-m", "hpcml.cli", "run", str(tmp_path / "job.yaml"), "-q"], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):  # the driver holds the run directory once it has made it
            if (tmp_path / "run" / ".hpcml.lock").exists():
                break
            subprocess.run(["sleep", "0.05"])
        proc = hpcml_cli("status", "--watch", "--every", "0.3", tmp_path / "run", timeout=240)
    finally:
        run.wait(240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    watched = [line for line in lines if " to go" in line]
    assert any(f"running (pid {run.pid} on " in line for line in watched), lines
    done = [int(re.match(r"slow: (\d+)/12 done", line).group(1)) for line in watched]
    assert done == sorted(done) and done[-1] == 12, lines
    assert any("tasks/s" in line for line in watched), lines
    assert lines[-1] == "slow: 12 tasks: 12 done, 0 failed, 0 missing"


def test_watch_of_a_finished_run_is_one_line_and_exits(tmp_path):
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(_spec(tmp_path, n=2)))
    assert hpcml_cli("run", tmp_path / "job.yaml", "-q").returncode == 0
    proc = hpcml_cli("status", "--watch", tmp_path / "run", timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.strip().splitlines() == ["slow: 2/2 done, 0 failed, 0 to go; finished",
                                                "slow: 2 tasks: 2 done, 0 failed, 0 missing"]
    assert hpcml_cli("status", "--watch", tmp_path / "nothing").returncode == 2
