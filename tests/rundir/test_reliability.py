"""Faults and shared use: what hpcml deletes, resumes, heals and cleans up (docs/reliability.md)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from hpcml.cli import app
from hpcml.rundir.lock import LOCK_NAME
from hpcml.rundir.store import RunStore

from conftest import ROOT, assert_same_results, ctrl_c

runner = CliRunner()


def _job(tmp_path, n=6, source=None, **over):
    if source is None:
        source = tmp_path / "data.csv"
        rng = np.random.default_rng(0)
        x = rng.normal(size=(40, 2))
        pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "y": x @ [1.0, -2.0] + rng.normal(size=40)}).to_csv(source, index=False)
    spec = {"name": "t-rel", "seed": 3, "data": {"source": str(source), "target": "y"},
            "model": {"kind": "ols"}, "plan": {"bootstrap": {"replicates": n}},
            "backend": {"name": "local", "workers": 1, "chunk_size": 2}, "output": str(tmp_path / "run"), **over}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _run(*args):
    return runner.invoke(app, ["run", *map(str, args), "--quiet", "--no-plots"])


def _error_lines(output):
    return [l for l in output.splitlines() if l.startswith("error: ")]


# --- never delete what is not ours ---------------------------------------------------------

def test_overwrite_never_deletes_the_working_directory(tmp_path, monkeypatch):
    path = _job(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    result = _run(path, "--out", ".", "--overwrite")
    assert result.exit_code == 2 and len(_error_lines(result.output)) == 1, result.output
    assert "--overwrite" not in result.output and "never deletes" in result.output
    assert (tmp_path / "notes.txt").read_text() == "mine" and (tmp_path / "data.csv").exists()


def test_overwrite_refuses_a_run_that_is_the_working_directory(tmp_path, monkeypatch):
    path = _job(tmp_path)
    assert _run(path).exit_code == 0
    monkeypatch.chdir(tmp_path / "run")
    result = _run(path, "--out", ".", "--overwrite")
    assert result.exit_code == 2 and "working directory" in result.output, result.output
    assert (tmp_path / "run" / "spec.json").exists()


def test_existing_non_run_directory_is_refused_without_suggesting_overwrite(tmp_path):
    path = _job(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "thesis.tex").write_text("years of work")
    for flags in ((), ("--overwrite",), ("--resume",)):
        result = _run(path, *flags)
        assert result.exit_code == 2 and "--overwrite" not in result.output, result.output
        assert (tmp_path / "run" / "thesis.tex").read_text() == "years of work"


def test_overwrite_refuses_a_run_holding_foreign_files_and_replaces_a_clean_run(tmp_path):
    path = _job(tmp_path)
    assert _run(path).exit_code == 0
    (tmp_path / "run" / "my-notes.md").write_text("keep")
    result = _run(path, "--overwrite")
    assert result.exit_code == 2 and (tmp_path / "run" / "my-notes.md").exists(), result.output
    (tmp_path / "run" / "my-notes.md").unlink()
    assert _run(path, "--overwrite").exit_code == 0
    assert not (tmp_path / "run" / LOCK_NAME).exists()


def test_r_overwrite_defaults_to_false():
    text = (ROOT / "R" / "R" / "run.R").read_text()
    assert "overwrite = FALSE" in text and "overwrite = TRUE" not in text


# --- never mix data -------------------------------------------------------------------------

def test_resume_after_the_data_file_changed_is_refused_naming_the_file(tmp_path):
    path = _job(tmp_path)
    assert _run(path).exit_code == 0
    data = tmp_path / "data.csv"
    os.utime(data)  # touched, same content: still the same data
    assert _run(path, "--resume").exit_code == 0
    frame = pd.read_csv(data)
    frame.loc[0, "y"] += 1.0
    frame.to_csv(data, index=False)
    before = sorted(p.name for p in (tmp_path / "run" / "chunks").iterdir())
    result = _run(path, "--resume")
    lines = _error_lines(result.output)
    assert result.exit_code == 2 and len(lines) == 1 and "data.csv" in lines[0] and "changed" in lines[0]
    assert sorted(p.name for p in (tmp_path / "run" / "chunks").iterdir()) == before


def test_resume_with_another_in_memory_frame_is_refused(tmp_path):
    import hpcml
    from hpcml.errors import SpecError

    frame = pd.DataFrame({"a": np.arange(30.0), "y": np.arange(30.0) * 2 + np.sin(np.arange(30.0))})
    spec = yaml.safe_load(_job(tmp_path, source="ignored.csv").read_text())
    hpcml.run(spec, data=frame, progress=False, plots=False)
    other = frame.assign(y=frame["y"] + 1)
    with pytest.raises(SpecError, match="data"):
        hpcml.run(spec, data=other, resume=True, progress=False, plots=False)
    assert hpcml.run(spec, data=frame, resume=True, progress=False, plots=False).ok


# --- heal damaged files ---------------------------------------------------------------------

def _damage(chunks):
    files = sorted(chunks.glob("chunk-*.parquet"))
    files[0].write_bytes(files[0].read_bytes()[:40])  # truncated
    files[1].write_bytes(os.urandom(300))  # random bytes
    files[2].write_bytes(b"")  # empty
    pq.write_table(pa.table({"colour": ["blue"]}), chunks / "chunk-99-foreign.parquet")  # a foreign schema
    return {f.name for f in files[:3]} | {"chunk-99-foreign.parquet"}


def test_damaged_chunk_files_are_set_aside_and_rerun(tmp_path):
    path = _job(tmp_path, n=8)
    assert _run(path).exit_code == 0
    run = tmp_path / "run"
    reference = pd.read_parquet(run / "results.parquet")
    damaged = _damage(run / "chunks")
    status = runner.invoke(app, ["status", str(run)])
    assert status.exit_code == 1 and "Traceback" not in status.output, status.output
    assert "missing" in status.output
    assert {p.name for p in (run / "damaged").iterdir()} == damaged
    result = _run(path, "--resume")
    assert result.exit_code == 0, result.output
    assert_same_results(pd.read_parquet(run / "results.parquet"), reference)


def test_damaged_or_missing_spec_json_is_one_line(tmp_path):
    path = _job(tmp_path)
    assert _run(path).exit_code == 0
    spec_json = tmp_path / "run" / "spec.json"
    for content in (b"\x00\xff garbage", b'{"name": 3}', b"[1, 2]"):
        spec_json.write_bytes(content)
        for args in (["status", str(tmp_path / "run")], ["run", str(path), "--resume", "--quiet"]):
            result = runner.invoke(app, args)
            lines = [l for l in result.output.splitlines() if l.strip()]
            assert result.exit_code == 2 and len(lines) == 1 and "spec.json" in lines[0], (args, result.output)
    spec_json.unlink()
    result = runner.invoke(app, ["status", str(tmp_path / "run")])
    assert result.exit_code == 2 and "no spec.json" in result.output


# --- one process per run directory ----------------------------------------------------------

def test_a_run_directory_in_use_is_refused_naming_its_holder(tmp_path):
    path = _job(tmp_path)
    assert _run(path).exit_code == 0
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = tmp_path / "run" / LOCK_NAME
        lock.write_text(json.dumps({"host": socket.gethostname(), "pid": holder.pid}))
        for flags in (("--resume",), ("--overwrite",)):
            result = _run(path, *flags)
            assert result.exit_code == 2 and str(holder.pid) in result.output, result.output
            assert socket.gethostname() in result.output
        assert (tmp_path / "run" / "chunks").is_dir() and lock.exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_of_a_dead_process_is_taken_over_and_released(tmp_path):
    path = _job(tmp_path)
    assert _run(path).exit_code == 0
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = tmp_path / "run" / LOCK_NAME
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid}))
    assert _run(path, "--resume").exit_code == 0
    assert not lock.exists()


def test_a_lock_held_on_another_host_is_not_broken(tmp_path):
    path = _job(tmp_path)
    assert _run(path).exit_code == 0
    lock = tmp_path / "run" / LOCK_NAME
    lock.write_text(json.dumps({"host": "node-elsewhere-17", "pid": 1}))
    result = _run(path, "--resume")
    assert result.exit_code == 2 and "node-elsewhere-17" in result.output and LOCK_NAME in result.output


def test_a_lock_on_another_host_is_kept_while_renewed_and_taken_over_once_its_lease_ran_out(tmp_path):
    """A holder on another node that crashed stops renewing its lock: a --resume here is
    refused while the lease runs (naming the holder and the lock's age), then takes it over."""
    path = _job(tmp_path)
    assert _run(path).exit_code == 0
    lock = tmp_path / "run" / LOCK_NAME
    lock.write_text(json.dumps({"host": "node-elsewhere-17", "pid": 1, "lease_s": 30}))
    result = _run(path, "--resume")
    assert result.exit_code == 2 and "host node-elsewhere-17, pid 1, its lock renewed 0s ago: taken over when " \
        "not renewed for 30s" in " ".join(result.output.split()), result.output
    old = time.time() - 31
    os.utime(lock, (old, old))
    assert _run(path, "--resume").exit_code == 0
    assert not lock.exists() and not list(lock.parent.glob(LOCK_NAME + ".*"))


def test_a_holder_renews_its_lock_and_says_so_when_it_was_taken_over(tmp_path, monkeypatch, caplog):
    from hpcml.rundir.lock import RunLock

    monkeypatch.setenv("HPCML_LOCK_LEASE_S", "0.4")
    lock = RunLock(tmp_path / "run").acquire()
    try:
        assert json.loads(lock.path.read_text())["lease_s"] == 0.4
        os.utime(lock.path, (1.0, 1.0))
        deadline = time.monotonic() + 30
        while lock.path.stat().st_mtime == 1.0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lock.path.stat().st_mtime > 1.0  # renewed
        lock.path.write_text(json.dumps({"host": "node-elsewhere-17", "pid": 1, "lease_s": 0.4}))
        while "taken over" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "was taken over by host node-elsewhere-17, pid 1" in caplog.text
    finally:
        lock.release()
    assert lock.path.exists()  # another holder's lock is never removed by release()


def test_the_lock_is_released_after_a_failed_run_and_bad_input(tmp_path):
    path = _job(tmp_path)
    assert _run(path).exit_code == 0
    store = RunStore(tmp_path / "run")
    spec = yaml.safe_load(path.read_text())
    spec["seed"] = 4  # a different spec: refused after the lock was taken
    path.write_text(yaml.safe_dump(spec))
    assert _run(path, "--resume").exit_code == 2
    assert not (store.path / LOCK_NAME).exists()


# --- no orphans -----------------------------------------------------------------------------

def _children(pid):
    """Every descendant of ``pid`` (read from /proc)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


def _alive(pid):
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "kill-TERM"])
def test_workers_die_with_the_driver(tmp_path, sig):
    spec = {"name": "t-orphans", "data": {"source": "sklearn:iris"}, "model": {"kind": "sleep", "ms": 60000, "busy": False},
            "plan": {"replicate": {"n": 4}}, "backend": {"name": "local", "workers": 2, "chunk_size": 1},
            "output": str(tmp_path / "run")}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    driver = subprocess.Popen([sys.executable, "-m", "hpcml.cli", "run", str(path), "-q"], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # the resource tracker, the forkserver and two workers
        assert _wait(lambda: len(_children(driver.pid)) >= 4, 120), "workers never started"
        time.sleep(1.0)
        family = _children(driver.pid)
        driver.send_signal(sig)
        driver.wait(timeout=60)
        assert _wait(lambda: not any(_alive(p) for p in family), 60), \
            [open(f"/proc/{p}/cmdline").read() for p in family if _alive(p)]
    finally:
        if driver.poll() is None:
            driver.kill()


@pytest.mark.parametrize("backend", ["local", "dask"])
def test_ctrl_c_prints_one_line_and_keeps_finished_chunks(tmp_path, backend):
    if backend == "dask":
        pytest.importorskip("distributed")
    spec = {"name": "t-ctrl-c", "data": {"source": "sklearn:iris"}, "model": {"kind": "sleep", "ms": 500, "busy": False},
            "plan": {"replicate": {"n": 400}}, "backend": {"name": backend, "workers": 2, "chunk_size": 1},
            "output": str(tmp_path / "run")}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    driver = subprocess.Popen([sys.executable, "-m", "hpcml.cli", "run", str(path), "-q"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    # interrupt once work is under way: a chunk file is on disk
    code, lines = ctrl_c(driver, lambda: any((tmp_path / "run" / "chunks").glob("chunk-*.parquet")))
    assert code == 130 and len(lines) == 1 and "rerun with --resume" in lines[0], lines
    assert not (tmp_path / "run" / LOCK_NAME).exists()


@pytest.mark.parametrize("dashboard", [False, True])
def test_dask_http_server_follows_the_scheduler_host_and_never_takes_8787(tmp_path, dashboard):
    pytest.importorskip("distributed")
    import urllib.error
    import urllib.request

    from hpcml.backends import make_backend

    backend = make_backend("dask", 1, {"dashboard": dashboard})
    backend.start(json.dumps({"name": "t-dash"}), tmp_path)
    try:
        sockets = [s.getsockname() for s in backend.cluster.scheduler.http_server._sockets.values()]
        assert sockets and all(host == "127.0.0.1" and port != 8787 for host, port, *_ in sockets), sockets
        try:
            code = urllib.request.urlopen(f"http://127.0.0.1:{sockets[0][1]}/status", timeout=30).status
        except urllib.error.HTTPError as err:
            code = err.code
        assert (code == 200) == dashboard
    finally:
        backend.stop()


def test_a_chunk_past_its_write_cutoff_leaves_no_file(tmp_path):
    from hpcml.rundir.store import Chunk
    from hpcml.spec import load_job
    from hpcml.tasks.worker import TOO_LATE, WorkOrder, execute_chunk

    job = load_job({"name": "t-late", "data": {"source": "sklearn:iris"}, "model": {"kind": "sleep", "ms": 1},
                    "plan": {"replicate": {"n": 2}}})
    (tmp_path / "chunks").mkdir()
    (tmp_path / "spec.json").write_text(job.to_json())  # a run directory the worker sees
    late = execute_chunk(WorkOrder(job.to_json(), str(tmp_path), Chunk((0, 1)), write_until=time.time() - 1))
    assert late.path is None and not late.ok and set(late.failed.values()) == {TOO_LATE}
    assert not list((tmp_path / "chunks").iterdir())
    on_time = execute_chunk(WorkOrder(job.to_json(), str(tmp_path), Chunk((0, 1)), write_until=time.time() + 600))
    assert on_time.ok == [0, 1] and on_time.path is not None


# --- one spec, every backend ----------------------------------------------------------------

def test_another_backend_on_the_command_line_drops_the_specs_backend_options(tmp_path, caplog):
    from hpcml.spec import load_job

    path = _job(tmp_path, backend={"name": "spark", "workers": 1, "spark_master": "spark://nowhere:7077"})
    with caplog.at_level("WARNING", logger="hpcml"):
        job = load_job(path, **{"backend.name": "local"})
    assert job.spec.backend.name == "local" and not job.spec.backend.model_extra
    assert any("ignoring the spec's spark options: spark_master" in r.getMessage() for r in caplog.records)
    assert _run(path, "--backend", "local").exit_code == 0


@pytest.mark.timeout(300)
def test_warm_workers_follow_the_drivers_directory_and_changed_files(tmp_path, monkeypatch):
    """Two jobs in one process, started from two directories, each with its own data.csv: the
    relative data path means each directory's file, never the file the warm workers saw first;
    and a file rewritten between two jobs is read anew."""
    import hpcml

    rng = np.random.default_rng(3)
    spec = {"name": "cwd", "seed": 1, "data": {"source": "data.csv", "target": "y"},
            "model": {"kind": "ols"}, "plan": {"bootstrap": {"replicates": 4}},
            "backend": {"name": "local", "workers": 2, "reuse_workers": True}}
    results = {}
    for name, slope in (("a", 1.0), ("b", -5.0)):
        (tmp_path / name).mkdir()
        x = rng.normal(size=50)
        pd.DataFrame({"x": x, "y": slope * x + rng.normal(scale=0.01, size=50)}).to_csv(tmp_path / name / "data.csv", index=False)
        monkeypatch.chdir(tmp_path / name)
        result = hpcml.run(spec, out="run", progress=False, plots=False)
        assert result.ok and (tmp_path / name / "run" / "results.parquet").exists()
        results[name] = result.results
    assert np.allclose(results["a"]["coef_x"], 1.0, atol=0.05)
    assert np.allclose(results["b"]["coef_x"], -5.0, atol=0.05)
    # The same path rewritten between two jobs of the process: the new contents, not the cached ones.
    x = rng.normal(size=50)
    pd.DataFrame({"x": x, "y": 3.0 * x + rng.normal(scale=0.01, size=50)}).to_csv(tmp_path / "b" / "data.csv", index=False)
    result = hpcml.run(spec, out="run2", progress=False, plots=False)
    assert result.ok and np.allclose(result.results["coef_x"], 3.0, atol=0.05)


def test_a_mapping_kept_as_json_text_by_older_chunk_files_becomes_a_column_per_key(tmp_path):
    """A sweep resumed across the change to a column per key of a mapping: the chunk files of
    before (one ``param_arch_params`` column of JSON text) and those of after
    (``param_arch_params.c1``...) consolidate into one column per key, each in its type."""
    from hpcml.rundir.store import Chunk, write_chunk_records

    (tmp_path / "chunks").mkdir()
    base = {"status": "ok", "attempt": 0, "seconds": 0.1, "repeat": 0, "param_lr": 0.1, "val_accuracy": 0.9}
    write_chunk_records(tmp_path, Chunk((0, 1)), [
        {**base, "task_id": "sweep/000000", "task_index": 0, "param_arch_params": '{"c1": 8, "c2": 16}'},
        {**base, "task_id": "sweep/000001", "task_index": 1, "param_arch_params": '{"c1": 16}'}])
    write_chunk_records(tmp_path, Chunk((2,)), [
        {**base, "task_id": "sweep/000002", "task_index": 2, "param_arch_params.c1": 32, "param_arch_params.c2": 64}])
    table = RunStore(tmp_path).consolidate_table()
    assert "param_arch_params" not in table.column_names
    assert table["param_arch_params.c1"].to_pylist() == [8, 16, 32]
    assert table["param_arch_params.c2"].to_pylist() == [16, None, 64]
    assert table.schema.field("param_arch_params.c1").type == pa.int64()
    assert RunStore(tmp_path).results()["param_arch_params.c2"].tolist()[:1] == [16]
