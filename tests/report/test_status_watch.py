"""``hpcml status --watch RUN`` from another terminal: a line every --every seconds with done,
failed, running, who runs it, throughput and time left, until the run ends; at once for a
finished run. ``hpcml status RUN``: the chunks running now, from the workers' markers."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time

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


def _wait_spec(tmp_path, release, n: int = 3, chunk_size: int = 1) -> dict:
    """Tasks that wait for the file ``release``: running until the test lets them end."""
    return {"name": "held", "data": {"source": "none"},
            "model": {"kind": "python", "file": str(ROOT / "tests" / "user_code_funcs.py"), "function": "wait_for",
                      "args": {"path": str(release)}},
            "plan": {"replicate": {"n": n}}, "backend": {"name": "local", "workers": 2, "chunk_size": chunk_size},
            "output": str(tmp_path / "run")}


def _poll(check, timeout_s: float = 240.0):
    """``check()``'s first true value, asked every 0.1 s for up to ``timeout_s``."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    return check()


def test_status_shows_the_chunks_running_now_and_none_once_the_run_ended(tmp_path):
    """Workers mark each chunk they run under the run directory: ``hpcml status`` of a run
    whose tasks are held (they wait for a file) shows them running, with the oldest's age;
    once the run ended, none."""
    from hpcml.report.status import run_status

    release = tmp_path / "release"
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(_wait_spec(tmp_path, release)))
    run = subprocess.Popen([sys.executable, "-m", "hpcml.cli", "run", str(tmp_path / "job.yaml"), "-q"], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def seen():
            try:
                return run.poll() is None and run_status(tmp_path / "run")["running"] > 0
            except Exception:  # the run directory being made
                return False

        assert _poll(seen), "no chunk was ever seen running"
        st = run_status(tmp_path / "run")
        assert 1 <= st["running"] <= 2 and st["running_tasks"] == st["running"] and st["oldest_running_s"] >= 0
        assert st["done"] + st["failed"] < 3
        proc = hpcml_cli("status", tmp_path / "run", timeout=120)
        assert proc.returncode == 1
        assert re.search(r"held: 3 tasks: \d done, 0 failed, \d missing \([12] running, the oldest for \d+ s\)",
                         proc.stdout), proc.stdout
    finally:
        release.write_text("")
        _, err = run.communicate(timeout=240)
    assert run.returncode == 0, err
    st = run_status(tmp_path / "run")
    assert (st["done"], st["running"], st["oldest_running_s"]) == (3, 0, None)
    assert not (tmp_path / "run" / "running").exists()
    proc = hpcml_cli("status", tmp_path / "run", timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "held: 3 tasks: 3 done, 0 failed, 0 missing"


def test_a_marker_left_by_a_dead_process_or_an_earlier_session_is_not_running(tmp_path):
    """Markers of a process of this host that is gone, and markers older than the run's
    current session, are not running; a live process's marker and a marker of another node
    made in this session are."""
    from hpcml.report.status import run_status, status_line

    (tmp_path / "job.yaml").write_text(yaml.safe_dump(_spec(tmp_path, n=2)))
    assert hpcml_cli("run", tmp_path / "job.yaml", "-q").returncode == 0
    folder = tmp_path / "run" / "running"
    assert not folder.exists()  # the finished run left none
    folder.mkdir()
    here = socket.gethostname()
    dead = subprocess.Popen(["true"])
    dead.wait()
    alive = os.getpid()
    for name in (f"0000000-{dead.pid}-{here}.json", f"0000001-{alive}-{here}.json", f"0000002-{alive}-{here}.json",
                 "0000003-12345-node-b.example.org.json", "0000004-12346-node-b.example.org.json"):
        (folder / name).write_text(json.dumps({"tasks": 1}))
    session = (tmp_path / "run" / "sessions.json").stat().st_mtime
    for old in ("0000002", "0000004"):  # made before the current session began
        path = next(folder.glob(f"{old}-*"))
        os.utime(path, (session - 60, session - 60))
    st = run_status(tmp_path / "run")
    assert st["running"] == 2 and st["running_tasks"] == 2  # this process's, and node-b's current one
    assert "(2 running, the oldest for" in status_line(st)


def test_the_lines_name_the_chunks_running_and_the_oldests_age():
    from hpcml.report.status import status_line, watch_line

    st = {"name": "job", "total": 100, "done": 40, "failed": 2, "missing": 58, "finished": False,
          "running": 2, "running_tasks": 2, "oldest_running_s": 75.0}
    assert status_line(st) == "job: 100 tasks: 40 done, 2 failed, 58 missing (2 running, the oldest for 75 s)"
    assert watch_line(st, "pid 7 on n1", None) == \
        "job: 40/100 done, 2 failed, 58 to go (2 running, the oldest for 75 s); running (pid 7 on n1)"
    chunks = {**st, "running_tasks": 16, "oldest_running_s": 600.0}
    assert status_line(chunks).endswith("58 missing (2 chunks running: 16 tasks, the oldest for 10 min)")
    idle = {**st, "running": 0, "running_tasks": 0, "oldest_running_s": None}
    assert status_line(idle) == "job: 100 tasks: 40 done, 2 failed, 58 missing"
