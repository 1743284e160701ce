"""Starting real mpirun jobs from tests (tests/backends/test_mpi.py and the user-code tests)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from conftest import PYTHON, ROOT

MPIRUN = shutil.which("mpirun")


def _env(tag: str) -> dict[str, str]:
    # mpirun forwards output through a pseudo-terminal: no colours in what the tests read
    return {**os.environ, "HPCML_TEST_TAG": tag, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", "TERM": "dumb"}


def _command(n: int, argv: tuple[str, ...], extra: tuple[str, ...]) -> list[str]:
    exported = [a for var in ("HPCML_TEST_TAG", "NO_COLOR", "TERM") for a in ("-x", var)]
    return [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-n", str(n), *exported, *extra, PYTHON, *argv]


def mpirun(n: int, *argv: str, extra: tuple[str, ...] = (), tag: str = "", timeout: float = 120,
           cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(_command(n, argv, extra), cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=_env(tag))


def start_mpirun(n: int, *argv: str, extra: tuple[str, ...] = (), tag: str) -> subprocess.Popen:
    return subprocess.Popen(_command(n, argv, extra), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env(tag))
