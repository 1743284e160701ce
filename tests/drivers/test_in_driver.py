"""A job of one chunk of a built-in kind runs in the driver process (local backend, ``in_driver``):
the same results and run directory as a worker's run, with its deadlines, retries, Ctrl-C and
resume; other kinds, and ``in_driver: false``, use workers. Its plots are drawn without pyplot."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

import hpcml
from hpcml.rundir.store import RunStore
from hpcml.backends.local import LocalBackend
from hpcml.models.ols import OLSKind
from hpcml.rundir.lock import LOCK_NAME

from conftest import ROOT, assert_same_results, ctrl_c, small_spec

FITS = {
    "ols": ({"source": "sklearn:diabetes", "target": "target"}, {"kind": "ols"}),
    "logistic": ({"source": "sklearn:breast_cancer", "target": "target"}, {"kind": "logistic"}),
    "kmeans": ({"source": "sklearn:iris", "target": "target"}, {"kind": "kmeans", "k": 3, "n_init": 2}),
    "pca": ({"source": "sklearn:digits", "target": "target"}, {"kind": "pca"}),
    "svd": ({"source": "sklearn:digits", "target": "target"}, {"kind": "svd", "k": 5}),
}


def run(spec, **kw):
    return hpcml.run(spec, progress=False, **kw)


def no_workers(monkeypatch):
    """Starting a worker pool fails: a run that finishes ran in this process."""
    def refuse(self, job_json, log_dir):
        raise AssertionError("a worker pool was started")

    monkeypatch.setattr(LocalBackend, "start", refuse)


def _summary(res):
    summary = RunStore(res.run_dir).read_summary()  # None unless it summarizes the results there
    summary["run"].pop("seconds")
    return summary


def _files(run_dir):
    """The run directory's files (a chunk file's name ends in a token unique to its writer)."""
    return sorted(Path(re.sub(r"-[0-9a-f]+\.parquet$", ".parquet", str(p.relative_to(run_dir))))
                  for p in run_dir.rglob("*") if p.is_file())


@pytest.mark.parametrize("kind", sorted(FITS))
def test_a_one_task_fit_in_the_driver_is_bit_identical_to_a_worker_run(tmp_path, kind):
    data, model = FITS[kind]
    spec = small_spec(tmp_path, name=f"t-{kind}", data=data, model=model, plan={"fit": {}})
    workers = run(spec, out=tmp_path / "workers", in_driver=False)
    here = run(spec, out=tmp_path / "here")
    assert workers.ok and here.ok
    assert_same_results(workers.results, here.results)
    assert _summary(workers) == _summary(here)
    files = _files(workers.run_dir)
    assert files == _files(here.run_dir)
    for artifact in (p for p in files if p.parts[0] == "artifacts" and p.suffix == ".parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(workers.run_dir / artifact), pd.read_parquet(here.run_dir / artifact),
                                      check_exact=True)


def test_one_chunk_of_several_tasks_runs_in_the_driver_with_the_same_results(tmp_path, monkeypatch):
    spec = small_spec(tmp_path, plan={"bootstrap": {"replicates": 12}})
    workers = run(spec, out=tmp_path / "workers", chunk_size=5)  # three chunks: workers
    no_workers(monkeypatch)
    here = run(spec, out=tmp_path / "here", chunk_size=12)
    assert here.ok and len(here.results) == 12
    assert_same_results(workers.results, here.results)
    assert workers.summary["table"] == here.summary["table"]


def test_in_driver_false_and_other_kinds_use_workers(tmp_path, monkeypatch):
    spec = small_spec(tmp_path, plan={"fit": {}})
    no_workers(monkeypatch)
    assert run(spec, out=tmp_path / "here").ok
    with pytest.raises(AssertionError, match="worker pool"):
        run(spec, out=tmp_path / "forced", in_driver=False)
    sleep = small_spec(tmp_path, data={"source": "none"}, model={"kind": "sleep", "ms": 0}, plan={"fit": {}})
    with pytest.raises(AssertionError, match="worker pool"):
        run(sleep, out=tmp_path / "sleep")


def test_data_is_loaded_once_for_a_run_in_the_driver(tmp_path, monkeypatch):
    from sklearn.datasets import load_diabetes

    import hpcml.data.sources as sources

    path = tmp_path / "diabetes.csv"
    load_diabetes(as_frame=True).frame.to_csv(path, index=False)
    no_workers(monkeypatch)
    builds = []
    real = sources.build_dataset
    monkeypatch.setattr(sources, "build_dataset", lambda *a, **k: builds.append(1) or real(*a, **k))
    res = run(small_spec(tmp_path, data={"source": str(path), "target": "target"}, plan={"fit": {}}),
              out=tmp_path / "run")
    assert res.ok and len(builds) == 1


def _slow_fit(seconds):
    real = OLSKind.fit

    def fit(self, params, data, weights, ctx):
        time.sleep(seconds)
        return real(self, params, data, weights, ctx)

    return fit


def test_timeout_s_stops_a_task_in_the_driver(tmp_path, monkeypatch):
    no_workers(monkeypatch)
    monkeypatch.setattr(OLSKind, "fit", _slow_fit(30))
    spec = small_spec(tmp_path, plan={"fit": {}}, timeout_s=0.5, retries=1)
    res = run(spec, out=tmp_path / "run")
    assert res.n_failed == 1
    row = res.results.iloc[0]
    assert row["status"] == "failed" and "exceeded timeout_s=0.5" in row["error"] and row["attempt"] == 1


def test_timeout_s_off_the_main_thread_uses_workers(tmp_path):
    from hpcml.backends import make_backend
    from hpcml.drivers.run import may_run_in_driver
    from hpcml.spec import load_job

    job = load_job(small_spec(tmp_path, plan={"fit": {}}, timeout_s=5))
    backend = make_backend("local", 1, {})
    seen = {}
    thread = threading.Thread(target=lambda: seen.update(other=may_run_in_driver(job, backend)))
    thread.start()
    thread.join()
    assert may_run_in_driver(job, backend) is True and seen["other"] is False
    untimed = load_job(small_spec(tmp_path, plan={"fit": {}}))
    thread = threading.Thread(target=lambda: seen.update(untimed=may_run_in_driver(untimed, backend)))
    thread.start()
    thread.join()
    assert seen["untimed"] is True


def test_retries_and_resume_in_the_driver(tmp_path, monkeypatch):
    spec = small_spec(tmp_path, plan={"cv": {"folds": 4}}, retries=1)
    clean = run(spec, out=tmp_path / "clean", chunk_size=4, in_driver=False)
    no_workers(monkeypatch)
    real, calls = OLSKind.fit, []

    def flaky(self, params, data, weights, ctx):  # task 1 fails on its first attempt only
        calls.append(ctx.task_index)
        if ctx.task_index == 1 and calls.count(1) == 1:
            raise RuntimeError("first attempt fails")
        return real(self, params, data, weights, ctx)

    monkeypatch.setattr(OLSKind, "fit", flaky)
    retried = run(spec, out=tmp_path / "retried", chunk_size=4)
    assert retried.ok and calls.count(1) == 2
    assert_same_results(clean.results, retried.results)

    def broken(self, params, data, weights, ctx):  # task 2 always fails: resume reruns only it
        calls.append(ctx.task_index)
        if ctx.task_index == 2:
            raise RuntimeError("fails")
        return real(self, params, data, weights, ctx)

    monkeypatch.setattr(OLSKind, "fit", broken)
    assert run({**spec, "retries": 0}, out=tmp_path / "resumed", chunk_size=4).n_failed == 1
    monkeypatch.setattr(OLSKind, "fit", real)
    calls.clear()
    resumed = run(spec, out=tmp_path / "resumed", chunk_size=4, resume=True)
    assert resumed.ok
    assert_same_results(clean.results, resumed.results)


DRIVER = """
import sys, time
from pathlib import Path
from hpcml.models.ols import OLSKind

started = Path(sys.argv[1])

def fit(self, params, data, weights, ctx):
    started.touch()
    time.sleep(120)

OLSKind.fit = fit
from hpcml.cli import main
sys.argv = ["hpcml", "run", sys.argv[2], "-q"]
main()
"""


def test_ctrl_c_of_a_task_in_the_driver_exits_130_and_resume_finishes(tmp_path):
    spec = small_spec(tmp_path, plan={"fit": {}})
    path, started = tmp_path / "spec.json", tmp_path / "started"
    path.write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(started), str(path)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    code, lines = ctrl_c(driver, started.exists)
    assert code == 130 and len(lines) == 1 and "rerun with --resume" in lines[0], lines
    run_dir = tmp_path / "run"
    assert not (run_dir / LOCK_NAME).exists() and not list((run_dir / "chunks").glob("chunk-*"))
    resumed = run(spec, resume=True)
    assert resumed.ok and len(resumed.results) == 1


PLOTS = """
import sys
import matplotlib
matplotlib.use("svg")  # the caller's own choice (a notebook's inline backend, say)
import hpcml
res = hpcml.run({"name": "p", "data": {"source": "sklearn:digits"}, "model": {"kind": "pca"}, "plan": {"fit": {}}},
                out=sys.argv[1], progress=False)
print(sorted(p.name for p in (res.run_dir / "plots").glob("*.png")), "matplotlib.pyplot" in sys.modules,
      matplotlib.get_backend())
"""


def test_plots_are_drawn_without_pyplot_or_touching_the_callers_backend(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", PLOTS, str(tmp_path / "run")], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["['biplot.png',", "'scree.png']", "False", "svg"]


def _count_driver_chunks(monkeypatch, pause: float = 0.0) -> list:
    """Chunks the driver runs itself (each after ``pause`` seconds), as a list of their sizes."""
    import hpcml.drivers.run as driver_run

    ran, real = [], driver_run.execute_chunk

    def here(order):
        time.sleep(pause)
        ran.append(len(order.chunk.indices))
        return real(order)

    monkeypatch.setattr(driver_run, "execute_chunk", here)
    return ran


def test_the_driver_runs_chunks_while_a_fresh_pool_starts_then_hands_over(tmp_path, monkeypatch):
    """A fresh pool's workers take a second or more to start: the driver runs chunks meanwhile,
    one at a time, and the workers take the rest once one answers. The numbers are those of a
    run on workers alone."""
    spec = small_spec(tmp_path, plan={"bootstrap": {"replicates": 60}})
    workers = run(spec, out=tmp_path / "workers", chunk_size=1, in_driver=False)
    ran = _count_driver_chunks(monkeypatch, pause=0.5)  # 30 s of driver work at most
    helped = run(spec, out=tmp_path / "helped", chunk_size=1, reuse_workers=False)
    # the driver runs chunks from the end while the workers start on theirs, and the workers
    # take over before the driver reaches the chunks they were given first
    assert helped.ok and 1 <= len(ran) < 58, ran
    assert_same_results(workers.results, helped.results)
    assert workers.summary["table"] == helped.summary["table"]


def test_a_warm_pool_runs_every_chunk_and_a_forked_kind_never_runs_in_the_driver(tmp_path, monkeypatch):
    spec = small_spec(tmp_path, plan={"bootstrap": {"replicates": 8}})
    run(spec, out=tmp_path / "first", chunk_size=2)  # leaves the pool warm for the next job
    ran = _count_driver_chunks(monkeypatch)
    assert run(spec, out=tmp_path / "second", chunk_size=2).ok and ran == []
    sleep = small_spec(tmp_path, data={"source": "none"}, model={"kind": "sleep", "ms": 0},
                       plan={"replicate": {"n": 8}})
    assert run(sleep, out=tmp_path / "sleep", chunk_size=2, reuse_workers=False).ok and ran == []
