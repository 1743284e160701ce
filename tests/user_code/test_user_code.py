"""The user's own code as tasks: ``kind: python``, ``kind: command``, ``hpcml.map``, ``hpcml.bootstrap``.

The same numbers on every worker count and backend, by reference and by value, failures as
records, bad input as one line with exit 2 and no run directory, commands whose timeouts end
their whole process group, a file of command lines under real ``mpirun``, kill -9 and resume.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import hpcml
from hpcml.errors import RunFailed, SpecError
from hpcml.plans import task_rng
from hpcml.rundir.store import RunStore
from hpcml.user_code import function_fields

from conftest import PYTHON, ROOT, assert_same_results, hpcml_cli

FUNCS = str(ROOT / "tests" / "user_code_funcs.py")


def user_function(x):  # by reference: importable as test_user_code:user_function
    return x + 1


@pytest.fixture
def csv(tmp_path) -> str:
    rng = np.random.default_rng(5)
    x0 = rng.lognormal(size=150)
    frame = pd.DataFrame({"x0": x0, "x1": 0.5 * x0 + rng.normal(size=150)})
    path = tmp_path / "xy.csv"
    frame.to_csv(path, index=False)
    return str(path)


def spec(tmp_path, csv, function, plan=None, out="run", **model) -> dict:
    return {"name": "user", "seed": 11, "data": {"source": csv},
            "model": {"kind": "python", "file": FUNCS, "function": function, **model},
            "plan": plan or {"bootstrap": {"replicates": 30}}, "backend": {"name": "local", "workers": 2},
            "output": str(tmp_path / out)}


def run(s, **kw):
    return hpcml.run(s, progress=False, plots=False, **kw)


def write(tmp_path, s, name="job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(s))
    return path


# ---------------------------------------------------------------- python kind

@pytest.mark.parametrize("function", ["median", "trimmed_mean", "weighted_correlation"])
def test_user_statistic_same_numbers_on_1_and_2_workers(tmp_path, csv, function):
    one = run(spec(tmp_path, csv, function, out="one"), workers=1, chunk_size=7)
    two = run(spec(tmp_path, csv, function, out="two"), workers=2)
    assert one.ok and two.ok
    assert_same_results(one.results, two.results)
    table = {r["output"]: r for r in one.summary["table"]}
    name = {"median": "value", "trimmed_mean": "trimmed_mean", "weighted_correlation": "corr"}[function]
    row = table[name]
    assert row["se"] > 0 and row["pct_low"] < row["estimate"] < row["pct_high"]
    assert row["bca_low"] is not None and row["bca_low"] < row["bca_high"]


def test_copy_and_weights_give_the_replicate_of_the_resample(tmp_path, csv):
    """A replicate sees exactly the rows np.repeat(rows, bootstrap counts) of the task's generator."""
    res = run(spec(tmp_path, csv, "median"))
    x = pd.read_csv(csv, float_precision="round_trip")["x0"].to_numpy()
    for _, row in res.results.iterrows():
        counts = np.bincount(task_rng(11, int(row["task_index"])).integers(0, x.size, x.size), minlength=x.size)
        assert row["value"] == np.median(np.repeat(x, counts))
    full = {r["output"]: r for r in res.summary["table"]}["value"]
    assert full["estimate"] == np.median(x)
    # The weights form of a correlation gets whole data + counts; the BCa refits work with weights.
    corr = run(spec(tmp_path, csv, "weighted_correlation", out="corr"))
    frame = pd.read_csv(csv, float_precision="round_trip")
    assert {r["output"]: r for r in corr.summary["table"]}["corr"]["estimate"] == pytest.approx(
        np.corrcoef(frame["x0"], frame["x1"])[0, 1], rel=1e-12)


def test_every_argument_and_artifacts(tmp_path, csv):
    res = run(spec(tmp_path, csv, "everything", plan={"cv": {"folds": 5}}))
    assert res.ok, res.failures()["error"].tolist()
    r = res.results.sort_values("task_index").reset_index(drop=True)
    assert (r["n_train"] == 120).all() and (r["n_test"] == 30).all() and (r["sum_w"] == 120).all()
    assert r["index"].tolist() == list(range(5))
    assert np.load(r["array"][0]).tolist() == [0, 1, 2, 3]
    assert pd.read_parquet(r["frame"][1])["a"].tolist() == [1, 2]
    assert (Path(r["array"][2]).parent / "note.txt").read_text() == "cv/000002"
    assert {row["output"] for row in res.summary["table"]} >= {"draw", "n_test"}  # CV summary of own outputs


def test_arrays_and_series_become_columns(tmp_path, csv):
    vec = run(spec(tmp_path, csv, "vector", plan={"replicate": {"n": 2}}, out="vec"))
    assert {"value_0", "value_1"} <= set(vec.results.columns)
    ser = run(spec(tmp_path, csv, "series", plan={"fit": {}}, out="ser"))
    assert set(ser.results.columns) >= {"x0", "x1"}


def test_sweep_ranks_by_the_users_metric(tmp_path, csv):
    s = spec(tmp_path, csv, "ridge_mse", plan={"sweep": {"grid": {"alpha": [0.0, 10.0, 1000.0]}}},
             metric="mse", greater_is_better=False)
    res = run(s)
    assert res.ok
    board = res.summary["table"]
    assert res.summary["metric"] == "mse" and [r["alpha"] for r in board][0] in (0.0, 10.0)
    assert board[0]["mse_mean"] == min(r["mse_mean"] for r in board)


def test_a_function_that_raises_is_a_failure_record(tmp_path, csv):
    path = write(tmp_path, spec(tmp_path, csv, "fails", plan={"replicate": {"n": 6}}))
    proc = hpcml_cli("run", path, "-q")
    assert proc.returncode == 1, proc.stderr
    records = RunStore(tmp_path / "run").read_records()
    failed = records.loc[records["status"] == "failed"].sort_values("task_index")
    assert failed["task_index"].tolist() == [1, 4]
    assert failed["error"].tolist() == ["ValueError: bad replicate 1", "ValueError: bad replicate 4"]
    assert "raise ValueError" in failed["traceback"].iloc[0]


def test_an_unusable_return_value_fails_the_task_saying_what_came_back(tmp_path, csv):
    res = run(spec(tmp_path, csv, "returns_text", plan={"fit": {}}))
    assert res.n_failed == 1
    assert "returned a str" in res.failures()["error"].iloc[0]


BAD = [
    ("not-importable", {"function": "no_such_module_xyz:f", "file": None}, "model.function", "no_such_module_xyz"),
    ("no-colon", {"function": "numpy.median", "file": None}, "model.function", "numpy.median"),
    ("missing-attr", {"function": "numpy:no_such_function", "file": None}, "model.function", "no_such_function"),
    ("missing-file", {"file": "/nonexistent/analysis.py"}, "model.file", "/nonexistent/analysis.py"),
    ("not-in-file", {"function": "nope"}, "model.function", "nope"),
    ("unknown-parameter", {"function": "needs_unknown"}, "model.function", "needs_unknown"),
    ("args-not-taken", {"function": "median", "args": {"cut": 0.2}}, "model.args.cut", "0.2"),
    ("both-sources", {"function_pickle": "/x.pkl"}, "model", ""),
]


@pytest.mark.parametrize("edit,field,value", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_user_code_is_one_line_exit_2_no_run_dir(tmp_path, csv, edit, field, value):
    s = spec(tmp_path, csv, "median")
    s["model"].update(edit)
    s["model"] = {k: v for k, v in s["model"].items() if v is not None}
    proc = hpcml_cli("run", write(tmp_path, s), "-q")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}") and value in lines[0], lines
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- Python API

def test_functions_travel_by_reference_or_by_value(tmp_path):
    assert function_fields(user_function, tmp_path) == {"function": "test_user_code:user_function"}
    offset = 10
    fields = function_fields(lambda x: x + offset, tmp_path)
    assert set(fields) == {"function_pickle"} and Path(fields["function_pickle"]).is_file()
    assert hpcml.map(lambda x: x + offset, range(20), workers=2) == list(range(10, 30))
    assert hpcml.map(user_function, [1, 2, 3], workers=1) == [2, 3, 4]
    assert hpcml.map(user_function, []) == []


def test_map_keeps_order_raises_on_failure_and_resumes(tmp_path):
    def maybe_fail(x):
        if x == 7:
            raise KeyError("seven")
        return {"x": x}

    with pytest.raises(RunFailed, match="1 of 10 calls failed; first: replicate/000007: KeyError: 'seven'"):
        hpcml.map(maybe_fail, range(10), workers=2)
    out = tmp_path / "map"
    first = hpcml.map(str, range(50), workers=2, out=out, chunk_size=10)
    assert first == [str(i) for i in range(50)]
    chunks = {p.name for p in RunStore(out).chunk_files()}
    again = hpcml.map(str, range(50), workers=2, out=out, chunk_size=10)
    assert again == first and {p.name for p in RunStore(out).chunk_files()} == chunks  # nothing rerun


def test_bootstrap_api_median_matches_a_hand_written_bootstrap():
    x = np.random.default_rng(3).lognormal(size=120)
    boot = hpcml.bootstrap(np.median, x, replicates=200, workers=2, seed=4)
    expect = [np.median(x[np.repeat(np.arange(x.size), np.bincount(task_rng(4, i).integers(0, x.size, x.size),
                                                                   minlength=x.size))]) for i in range(200)]
    assert boot.replicates["value"].tolist() == expect
    assert boot.estimate == np.median(x)
    assert boot.se == pytest.approx(np.std(expect, ddof=1), rel=1e-12)
    assert boot.percentile == pytest.approx((np.quantile(expect, 0.025), np.quantile(expect, 0.975)))
    assert boot.bca[0] < boot.estimate < boot.bca[1]
    # A statistic that asks for weights; several outputs come back as Series.
    frame = pd.DataFrame({"a": x, "b": x**2})
    wboot = hpcml.bootstrap(lambda data, weights: np.average(data, axis=0, weights=weights), frame,
                            replicates=50, workers=1, level=0.9)
    assert list(wboot.estimate.index) == ["value_0", "value_1"] and wboot.level == 0.9
    assert wboot.estimate["value_0"] == pytest.approx(x.mean())


def test_bad_level_is_spec_error():
    with pytest.raises(SpecError, match="level"):
        hpcml.bootstrap(np.median, [1.0, 2.0], level=1.5)


# ---------------------------------------------------------------- command kind

def command_spec(tmp_path, model, plan=None, **over) -> dict:
    return {"name": "cmd", "seed": 3, "data": {"source": "none"}, "model": {"kind": "command", **model},
            "plan": plan or {"replicate": {"n": 4}}, "backend": {"name": "local", "workers": 2},
            "output": str(tmp_path / "run"), **over}


WRITE_JSON = ("import json, os, sys; i = int(sys.argv[1]); "
              "json.dump({'square': i * i, 'seed': int(sys.argv[2])}, open(os.path.join(sys.argv[3], 'outputs.json'), 'w')); "
              "print('hello', os.environ['HPCML_TASK_ID'])")


def test_command_outputs_placeholders_and_environment(tmp_path):
    res = run(command_spec(tmp_path, {"argv": [PYTHON, "-c", WRITE_JSON, "{task_index}", "{seed}", "{scratch}"]}))
    assert res.ok, res.failures()["error"].tolist()
    r = res.results.sort_values("task_index").reset_index(drop=True)
    assert r["square"].tolist() == [0, 1, 4, 9]
    assert r["seed"].tolist() == [float(task_rng(3, i).integers(1, 2**31 - 1)) for i in range(4)]
    assert (tmp_path / "run/artifacts/replicate-000002/stdout.txt").read_text() == "hello replicate/000002\n"
    again = run(command_spec(tmp_path, {"argv": [PYTHON, "-c", WRITE_JSON, "{task_index}", "{seed}", "{scratch}"]},
                             output=str(tmp_path / "again")), workers=1)
    assert_same_results(res.results, again.results)


def test_command_failures_carry_exit_code_and_stderr_tail(tmp_path):
    line = "echo first >&2; echo 'it broke' >&2; exit $((HPCML_TASK_INDEX + 2))"
    res = run(command_spec(tmp_path, {"command": line, "shell": True}, plan={"replicate": {"n": 2}}))
    errors = res.failures().sort_values("task_index")["error"].tolist()
    assert errors == ["RuntimeError: command exited 2: first | it broke", "RuntimeError: command exited 3: first | it broke"]


def test_command_timeout_ends_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "child.pid"
    line = f"sleep 120 & echo $! > {pidfile}; wait"
    res = run(command_spec(tmp_path, {"command": line, "shell": True}, plan={"fit": {}}, timeout_s=1.5))
    assert res.n_failed == 1 and "timeout_s=1.5" in res.failures()["error"].iloc[0]
    child = int(pidfile.read_text())
    for _ in range(100):  # the group was sent SIGKILL; give the kernel a moment to reap
        if not _alive(child):
            break
        time.sleep(0.05)
    assert not _alive(child), "the command's background child outlived the timeout"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sweep_fills_params_placeholders(tmp_path):
    script = "import json, sys; json.dump({'score': -abs(float(sys.argv[1]) - 2)}, open(sys.argv[2] + '/outputs.json', 'w'))"
    s = command_spec(tmp_path, {"argv": [PYTHON, "-c", script, "{params.lr}", "{scratch}"], "metric": "score"},
                     plan={"sweep": {"grid": {"lr": [1, 2, 5]}}})
    res = run(s)
    assert res.ok and res.summary["best"]["lr"] == 2


COMMAND_BAD = [
    ("argv-not-on-path", {"argv": ["no-such-program-xyz", "a"]}, None, "model.argv", "no-such-program-xyz"),
    ("command-not-on-path", {"command": "no-such-program-xyz --flag"}, None, "model.command", "no-such-program-xyz"),
    ("lines-count", {"commands": "LINES"}, {"replicate": {"n": 5}}, "plan.replicate.n", "5"),
    ("lines-plan", {"commands": "LINES"}, {"fit": {}}, "plan", "fit"),
    ("lines-program", {"commands": "BADLINES"}, {"replicate": {"n": 2}}, "model.commands", "nope-xyz"),
    ("no-file", {"commands": "/nonexistent.txt"}, {"replicate": {"n": 2}}, "model.commands", "/nonexistent.txt"),
]


@pytest.mark.parametrize("model,plan,field,value", [c[1:] for c in COMMAND_BAD], ids=[c[0] for c in COMMAND_BAD])
def test_bad_command_is_one_line_exit_2_no_run_dir(tmp_path, model, plan, field, value):
    (tmp_path / "lines.txt").write_text("# two tasks\ntrue\n\nfalse\n")
    (tmp_path / "bad.txt").write_text("true\nnope-xyz arg\n")
    files = {"LINES": str(tmp_path / "lines.txt"), "BADLINES": str(tmp_path / "bad.txt")}
    model = {k: files.get(v, v) if isinstance(v, str) else v for k, v in model.items()}
    proc = hpcml_cli("run", write(tmp_path, command_spec(tmp_path, model, plan)), "-q")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}") and value in lines[0], lines
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- slow: other backends, kills

@pytest.mark.slow
def test_user_statistics_same_numbers_on_dask_local_cluster(tmp_path, csv):
    pytest.importorskip("distributed")
    for function in ("median", "weighted_correlation"):
        local = run(spec(tmp_path, csv, function, out=f"local-{function}"))
        dask = run(spec(tmp_path, csv, function, out=f"dask-{function}"), backend="dask", workers=2, chunk_size=4)
        assert dask.ok
        assert_same_results(local.results, dask.results)
    x = np.random.default_rng(8).normal(size=80)
    offset = 0.5  # a closure, by value
    a = hpcml.bootstrap(lambda v: float(np.mean(v) + offset), x, replicates=40, workers=2)
    b = hpcml.bootstrap(lambda v: float(np.mean(v) + offset), x, replicates=40, backend="dask", workers=2)
    assert a.replicates.equals(b.replicates) and a.bca == b.bca


@pytest.mark.slow
@pytest.mark.mpi
def test_command_lines_file_of_200_tasks_under_mpirun(tmp_path):
    import shutil

    mpirun = shutil.which("mpirun")
    if mpirun is None:
        pytest.skip("Open MPI not installed")
    lines = ["# one task per line, pylauncher's format"]
    lines += [f"sh -c 'echo \"{{\\\"line\\\": {i}, \\\"index\\\": {{task_index}}}}\" > {{scratch}}/outputs.json'"
              for i in range(200)]
    (tmp_path / "commands.txt").write_text("\n".join(lines) + "\n")
    s = command_spec(tmp_path, {"commands": str(tmp_path / "commands.txt")}, plan={"replicate": {"n": 200}})
    s["backend"] = {"name": "mpi"}
    path = write(tmp_path, s)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", "TERM": "dumb"}
    proc = subprocess.run([mpirun, "--allow-run-as-root", "--oversubscribe", "-n", "3", PYTHON, "scripts/pack_tasks.py",
                           str(path), "-q"], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = pd.read_parquet(tmp_path / "run" / "results.parquet").sort_values("task_index")
    assert (results["status"] == "ok").all() and len(results) == 200
    assert results["line"].tolist() == list(range(200)) and results["index"].tolist() == list(range(200))
    assert (tmp_path / "run/artifacts/replicate-000199/outputs.json").exists()


@pytest.mark.slow
def test_kill_9_of_the_driver_then_resume(tmp_path, csv):
    s = spec(tmp_path, csv, "slow", plan={"replicate": {"n": 150}})
    s["backend"] = {"name": "local", "workers": 2, "chunk_size": 5}
    path = write(tmp_path, s)
    proc = subprocess.Popen([sys.executable, "-m", "hpcml.cli", "run", str(path), "--quiet"], cwd=ROOT,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = RunStore(tmp_path / "run")
    deadline = time.monotonic() + 120
    while len(store.chunk_files()) < 4 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    done = store.completed()
    assert 0 < len(done) < 150
    resumed = hpcml_cli("run", path, "--quiet", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    records = store.read_records()
    assert (records["status"] == "ok").sum() == 150 and records.loc[records["status"] == "ok", "task_index"].is_unique
    clean = run(spec(tmp_path, csv, "slow", plan={"replicate": {"n": 150}}, out="clean"))
    assert_same_results(clean.results, pd.read_parquet(tmp_path / "run" / "results.parquet"))


def test_sweep_over_whole_argument_mappings(tmp_path, csv):
    """`grid: {args: [{...}, {...}]}` sweeps the function's arguments as whole mappings; the
    results, the leaderboard and the report have a column per key of the mapping
    (``param_args.alpha``), in its own type, not one column of JSON text."""
    import pyarrow.parquet as pq

    s = spec(tmp_path, csv, "ridge_mse", plan={"sweep": {"grid": {"args": [{"alpha": 0}, {"alpha": 1000}]}}},
             metric="mse", greater_is_better=False)
    by_name = run(spec(tmp_path, csv, "ridge_mse", plan={"sweep": {"grid": {"alpha": [0.0, 1000.0]}}},
                       metric="mse", greater_is_better=False, out="by-name"))
    res = run(s)
    assert res.ok and by_name.ok
    mse = sorted(r["mse_mean"] for r in res.summary["table"])
    assert mse == sorted(r["mse_mean"] for r in by_name.summary["table"]) and mse[0] < mse[1]
    schema = pq.read_schema(res.run_dir / "results.parquet")
    assert "param_args" not in schema.names and str(schema.field("param_args.alpha").type) == "int64"
    assert sorted(res.results["param_args.alpha"].tolist()) == [0, 1000]
    assert res.summary["grid"] == ["args.alpha"]
    assert res.summary["best"]["args.alpha"] == 0 and type(res.summary["best"]["args.alpha"]) is int
    saved = json.loads((res.run_dir / "summary.json").read_text())
    assert [r["args.alpha"] for r in saved["table"]] == [0, 1000]
    assert ">args.alpha<" in (res.run_dir / "report.html").read_text()


def test_sweep_over_mappings_of_different_keys_keeps_each_key(tmp_path, csv):
    """Grid points whose mappings name different keys: each key a column, empty where a point
    lacks it, and each point one leaderboard row."""
    s = spec(tmp_path, csv, "ridge_mse", plan={"sweep": {"grid": {"args": [{"alpha": 1}, {"alpha": 2, "extra": {"n": 3}}]}}},
             metric="mse", greater_is_better=False)
    s["model"]["function"] = "ridge_mse_extra"
    res = run(s)
    assert res.ok, res.failures()
    names = set(res.results.columns)
    assert {"param_args.alpha", "param_args.extra.n"} <= names and "param_args" not in names
    rows = {r["args.alpha"]: r for r in res.summary["table"]}
    assert set(rows) == {1, 2} and rows[1]["args.extra.n"] is None and rows[2]["args.extra.n"] == 3
    # An integer column with empty cells: integers in the file, float with NaN in pandas.
    import pyarrow.parquet as pq

    assert str(pq.read_schema(res.run_dir / "results.parquet").field("param_args.extra.n").type) == "int64"
    by_alpha = res.results.set_index("param_args.alpha")["param_args.extra.n"]
    assert pd.isna(by_alpha[1]) and by_alpha[2] == 3


@pytest.mark.slow
@pytest.mark.mpi
@pytest.mark.spark
@pytest.mark.timeout(600)
def test_user_statistic_same_numbers_under_mpi_static_and_dynamic_and_spark(tmp_path, csv):
    """A median of the user's own, bootstrapped: bit for bit the local numbers under real
    mpirun (static and dynamic packing) and on Spark local[2]."""
    from mpi_util import MPIRUN, mpirun

    if MPIRUN is None:
        pytest.skip("Open MPI not installed (make test installs it)")
    pytest.importorskip("mpi4py")
    local = run(spec(tmp_path, csv, "median", out="local"))
    assert local.ok
    path = write(tmp_path, spec(tmp_path, csv, "median", out="unused"))
    for mode in ("static", "dynamic"):
        out = tmp_path / f"mpi-{mode}"
        proc = mpirun(2, "-m", "hpcml.pack", str(path), "--mode", mode, "--out", str(out), "-q", timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert_same_results(local.results, pd.read_parquet(out / "results.parquet"))
    pytest.importorskip("pyspark")
    spark = run(spec(tmp_path, csv, "median", out="spark"), backend="spark", workers=2, chunk_size=7)
    assert spark.ok
    assert_same_results(local.results, spark.results)


SLOW_IMPORT = '''
import time
time.sleep(3)  # a heavy import (torch, a large module) takes seconds


def double(x):
    return 2 * x
'''


def test_loading_the_users_code_is_not_charged_to_a_tasks_timeout(tmp_path, monkeypatch):
    """Each worker loads the function before arming a task's deadline: a module that takes 3 s
    to import does not fail the first task of each worker under timeout_s=2."""
    (tmp_path / "slow_module.py").write_text(SLOW_IMPORT)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.syspath_prepend(str(tmp_path))
    import slow_module

    assert hpcml.map(slow_module.double, range(6), workers=2, timeout_s=2, reuse_workers=False) == [0, 2, 4, 6, 8, 10]
