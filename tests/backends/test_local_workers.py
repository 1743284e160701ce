"""The local backend's worker processes: a dead worker costs only its own chunk, a task stuck in
C past ``timeout_s`` is stopped by ending its worker, whatever a task started ends with it, and
the driver process always exits. Each scenario runs in a process of its own, on a loaded
machine, under a generous time bound: the defects these guard against were hangs.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

BOUND_S = 300  # far above what each scenario needs, far below "forever"


@contextmanager
def load(n: int = 2):
    """Busy processes competing for the cores while the scenario runs (stopped by pid)."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in burners:
            p.kill()
            p.wait()


def run_script(tmp_path: Path, *parts: str, bound_s: float = BOUND_S) -> tuple[str, float]:
    """Run ``parts`` as a driver script; (its output, seconds until the interpreter exited)."""
    script = tmp_path / "driver.py"
    script.write_text("".join(textwrap.dedent(part) for part in parts))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=bound_s)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"the driver did not exit within {bound_s}s: {err.stdout!r} {err.stderr!r}")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip(), time.monotonic() - start


def test_a_call_that_kills_its_worker_fails_alone_and_the_process_exits(tmp_path):
    """One call of 100 ends its worker process (``os._exit(0)``): only the chunk that worker
    held is lost, the retry runs that chunk's calls one per chunk, so 99 calls succeed and the
    one that kills its worker fails naming the death; and the driver's interpreter exits."""
    with load():
        out, _ = run_script(tmp_path, """
            import os
            import hpcml

            def call(x):
                if x == 37:
                    os._exit(0)
                return 2 * x

            if __name__ == "__main__":
                try:
                    hpcml.map(call, range(100), workers=2, retries=1)
                except hpcml.RunFailed as err:
                    print(err)
                print(hpcml.map(call, [1, 2, 3], workers=2))  # the same warm pool serves on
        """)
    assert out.splitlines() == ["1 of 100 calls failed; first: replicate/000037: worker process died (exit code 0)",
                                "[2, 4, 6]"], out


STUCK = """
    import ctypes
    import signal

    def stuck_in_c(seconds):
        # What a long call into C looks like to Python: no signal handler runs until it returns
        # (the alarm of timeout_s and SIGTERM are held off; an eigvals of a large matrix, a
        # long BLAS or R call, behaves the same).
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM, signal.SIGTERM})
        ctypes.CDLL(None).sleep(seconds)
"""


def test_timeout_s_stops_a_task_stuck_in_c_on_local_workers(tmp_path):
    """A task 3 s into a 600 s call into C with ``timeout_s: 3`` fails as timed out within
    seconds (its worker is killed and replaced); the other tasks of its chunk still run, and
    the driver exits."""
    with load():
        out, seconds = run_script(tmp_path, STUCK, """
            import hpcml

            def call(x):
                if x == 2:
                    stuck_in_c(600)
                return 10 * x

            if __name__ == "__main__":
                try:
                    hpcml.map(call, range(6), workers=2, chunk_size=3, timeout_s=3)
                except hpcml.RunFailed as err:
                    print(err)
                print(hpcml.map(call, [0, 1, 3, 4, 5], workers=2, chunk_size=3))
        """)
    assert out.splitlines() == ["1 of 6 calls failed; first: replicate/000002: TaskTimeout: task exceeded "
                                "timeout_s=3 (stopped by ending its worker process)", "[0, 10, 30, 40, 50]"], out
    assert seconds < 200, seconds  # the call itself would take 600 s


def _processes_with(token: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cmdline = Path("/proc", name, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if token in cmdline:
            found.append(int(name))
    return found


SPAWNER = """
import subprocess


def spawn(task):
    # A child in a session of its own, never waited for: it would outlive the task.
    subprocess.Popen(["setsid", "sleep", "{seconds}"], stdout=None, stderr=None)
    return task["index"]
"""


@pytest.mark.parametrize("kind,backend", [("command", "local"), ("python", "local"), ("command", "dask"),
                                          ("python", "dask")])
def test_what_a_task_starts_ends_with_it(tmp_path, kind, backend):
    """A ``command`` that leaves ``sleep 45 &`` behind, and a Python task that starts a
    ``setsid`` child: ``hpcml run ... | cat`` returns long before the 45 s are up and none
    of those processes remains (a local worker, and a Dask worker of one thread, reaps and
    ends what its tasks left; the command kind also ends its own process group)."""
    if backend == "dask":
        pytest.importorskip("distributed")
    # a token no other test uses
    seconds = "45.%d%d%d" % (os.getpid(), ["local", "dask"].index(backend), ["command", "python"].index(kind))
    if kind == "command":
        model = {"kind": "command", "shell": True,
                 "command": f"sleep {seconds} & echo '{{\"value\": 1}}' > {{scratch}}/outputs.json"}
    else:
        funcs = tmp_path / "spawner.py"
        funcs.write_text(SPAWNER.replace("{seconds}", seconds))
        model = {"kind": "python", "file": str(funcs), "function": "spawn"}
    spec = {"name": f"t-children-{kind}", "data": {"source": "none"}, "model": model,
            "plan": {"replicate": {"n": 4}}, "backend": {"name": backend, "workers": 2},
            "output": str(tmp_path / "run")}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(spec))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.monotonic()
    try:
        proc = subprocess.run(f"set -o pipefail; {sys.executable} -m hpcml.cli run job.yaml -q | cat", shell=True,
                              executable="/bin/bash", cwd=tmp_path, env=env, capture_output=True, text=True, timeout=40)
        took = time.monotonic() - start
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert took < 40, took
        assert _processes_with(f"sleep {seconds}") == []
    finally:
        for pid in _processes_with(f"sleep {seconds}"):
            os.kill(pid, 9)
