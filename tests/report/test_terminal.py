"""What reaches a terminal and what reaches a log: styles only for a person's terminal; plain
text with ``NO_COLOR`` set and under an MPI launcher, whose ranks write to a pseudo-terminal
even when ``mpirun ... > log`` sends the job's output to a file."""
from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, small_spec

ESC = b"\x1b["


def _on_a_pty(tmp_path, env: dict) -> bytes:
    """``hpcml run`` of a small bootstrap with its stdout and stderr on a pseudo-terminal."""
    spec = small_spec(tmp_path, backend={"name": "local", "workers": 1})
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    leader, follower = pty.openpty()
    base = {k: v for k, v in os.environ.items() if k != "NO_COLOR" and not k.startswith(("OMPI_", "PMI_", "SLURM_"))}
    proc = subprocess.Popen([sys.executable, "-m", "hpcml.cli", "run", str(path), "--overwrite", "--no-plots"],
                            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower,
                            env={**base, "TERM": "xterm-256color", "COLUMNS": "200", **env})
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert proc.wait(timeout=120) == 0, out.decode(errors="replace")
    return out


def test_a_terminal_gets_styles(tmp_path):
    out = _on_a_pty(tmp_path, {})
    assert ESC in out and b"tasks ok" in out


@pytest.mark.parametrize("env", [{"NO_COLOR": "1"}, {"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "1"}],
                         ids=["NO_COLOR", "under mpirun"])
def test_plain_text_without_escape_codes(tmp_path, env):
    out = _on_a_pty(tmp_path, env)
    assert b"tasks ok" in out and b"coef_bmi" in out, out
    assert ESC not in out, out[:400]
