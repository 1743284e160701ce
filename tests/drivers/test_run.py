"""The run loop on the local backend: reproducibility, durability, failures, status, API."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import yaml

import hpcml
from hpcml.rundir.store import RunStore

from conftest import ROOT, assert_same_results, hpcml_cli, small_spec


def run_spec(spec, **kw):
    return hpcml.run(spec, progress=False, **kw)


def test_bootstrap_identical_for_any_workers_and_chunking(tmp_path):
    spec = small_spec(tmp_path)
    a = run_spec(spec, workers=1, chunk_size=1, out=tmp_path / "a")
    b = run_spec(spec, workers=2, chunk_size=7, out=tmp_path / "b")
    c = run_spec(spec, workers=2, out=tmp_path / "c")
    assert a.ok and b.ok and c.ok and len(a.results) == 40
    assert_same_results(a.results, b.results)
    assert_same_results(a.results, c.results)
    assert a.summary["table"] == b.summary["table"]


def test_kmeans_replicates_identical_across_workers(tmp_path):
    spec = small_spec(tmp_path, data={"source": "sklearn:iris", "target": "target"},
                      model={"kind": "kmeans", "k": 3, "n_init": 2}, plan={"replicate": {"n": 12}})
    a = run_spec(spec, workers=1, chunk_size=5, out=tmp_path / "a")
    b = run_spec(spec, workers=2, chunk_size=1, out=tmp_path / "b")
    assert_same_results(a.results, b.results)
    assert "center_1_sepal length (cm)" in a.results and "center_3_petal width (cm)" in a.results


def test_bootstrap_replicate_is_a_weighted_fit_of_the_resample(tmp_path):
    """Task i's coefficients equal lstsq on the rows its seed draws (the reference fit)."""
    from sklearn.datasets import load_diabetes

    res = run_spec(small_spec(tmp_path, plan={"bootstrap": {"replicates": 3}}), workers=1)
    X, y = load_diabetes(return_X_y=True)
    for i in range(3):
        rng = np.random.default_rng(np.random.SeedSequence(7, spawn_key=(i,)))
        rows = rng.integers(0, len(y), len(y))
        A = np.column_stack([np.ones(len(rows)), X[rows]])
        ref = np.linalg.lstsq(A, y[rows], rcond=None)[0]
        row = res.results.iloc[i]
        got = np.array([row["coef_(Intercept)"]] + [row[f"coef_{f}"] for f in load_diabetes().feature_names])
        np.testing.assert_allclose(got, ref, rtol=1e-8, atol=1e-8)


def test_run_directory_contents(tmp_path):
    res = run_spec(small_spec(tmp_path), workers=2)
    run = tmp_path / "run"
    for name in ("results.parquet", "summary.json", "spec.json", "versions.json", "plots/bootstrap.png"):
        assert (run / name).exists(), name
    frame = pd.read_parquet(run / "results.parquet")
    assert list(frame.columns[:3]) == ["task_id", "task_index", "status"]
    assert frame["task_id"].tolist() == [f"bootstrap/{i:06d}" for i in range(40)]
    row = next(r for r in res.summary["table"] if r["output"] == "coef_bmi")
    assert row["pct_low"] < row["estimate"] < row["pct_high"] and row["bca_low"] < row["bca_high"] and row["se"] > 0


def test_failed_tasks_are_recorded_others_finish_exit_1(tmp_path):
    spec = small_spec(tmp_path, data={"source": "sklearn:iris"}, model={"kind": "sleep", "ms": 1, "fail_every": 5},
                      plan={"replicate": {"n": 20}})
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    proc = hpcml_cli("run", path, "--quiet")
    assert proc.returncode == 1, proc.stderr
    assert "4 task(s) failed" in proc.stderr and "failed on purpose" in proc.stderr
    frame = pd.read_parquet(tmp_path / "run" / "results.parquet")
    failed = frame.loc[frame["status"] == "failed"]
    assert failed["task_index"].tolist() == [0, 5, 10, 15]
    assert failed["traceback"].str.contains("RuntimeError").all()
    assert (frame["status"] == "ok").sum() == 16
    status = hpcml_cli("status", tmp_path / "run")
    assert status.returncode == 1 and "16 done, 4 failed, 0 missing" in status.stdout
    assert "replicate/000005" in status.stdout and "failed on purpose" in status.stdout


def test_retries_rerun_failed_tasks_once(tmp_path):
    spec = small_spec(tmp_path, data={"source": "sklearn:iris"},
                      model={"kind": "sleep", "ms": 1, "flaky_dir": str(tmp_path / "flaky")},
                      plan={"replicate": {"n": 10}}, retries=1)
    res = run_spec(spec, workers=2)
    assert res.ok and (res.results["attempt"] == 1).all()
    records = RunStore(tmp_path / "run").read_records()
    assert len(records) == 20 and (records["status"] == "ok").sum() == 10  # each task: one failure, one success


def test_per_task_timeout(tmp_path):
    spec = small_spec(tmp_path, data={"source": "sklearn:iris"}, model={"kind": "sleep", "ms": 3000, "busy": True},
                      plan={"replicate": {"n": 2}}, timeout_s=0.3)
    t0 = time.perf_counter()
    res = run_spec(spec, workers=2)
    assert time.perf_counter() - t0 < 20
    assert res.n_failed == 2 and res.results["error"].str.contains("timeout_s=0.3").all()


def test_resume_reruns_only_missing_tasks(tmp_path):
    spec = small_spec(tmp_path)
    full = run_spec(spec, workers=2, out=tmp_path / "full")
    run_spec(spec, workers=2, out=tmp_path / "part", chunk_size=5)
    store = RunStore(tmp_path / "part")
    removed = store.chunk_files()[2:5]
    for f in removed:
        f.unlink()
    kept = {f.name for f in store.chunk_files()}
    res = run_spec(spec, workers=2, out=tmp_path / "part", resume=True)
    assert_same_results(full.results, res.results)
    new = {f.name for f in store.chunk_files()} - kept
    assert sum(len(pd.read_parquet(tmp_path / "part" / "chunks" / n)) for n in new) == 15


@pytest.mark.slow
def test_kill_9_then_resume_loses_and_duplicates_nothing(tmp_path):
    spec = small_spec(tmp_path, data={"source": "sklearn:iris"}, model={"kind": "sleep", "ms": 40, "sigma": 0.3},
                      plan={"replicate": {"n": 200}}, backend={"name": "local", "workers": 2, "chunk_size": 5})
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    proc = subprocess.Popen([sys.executable, "-m", "hpcml.cli", "run", str(path), "--quiet"], cwd=ROOT,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = RunStore(tmp_path / "run")
    deadline = time.monotonic() + 120
    while len(store.chunk_files()) < 6 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, as when a node dies
    proc.wait(timeout=30)
    assert not (tmp_path / "run" / "results.parquet").exists()
    done_before = store.completed()
    assert 0 < len(done_before) < 200
    resumed = hpcml_cli("run", path, "--quiet", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    records = store.read_records()
    assert (records["status"] == "ok").sum() == 200 and records["task_index"].is_unique
    clean = run_spec(spec, out=tmp_path / "clean")
    assert_same_results(clean.results, pd.read_parquet(tmp_path / "run" / "results.parquet"))


def test_cv_folds_match_a_reference_split(tmp_path):
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import r2_score

    from hpcml.plans.cv import cv_folds

    spec = small_spec(tmp_path, plan={"cv": {"folds": 5, "repeats": 2}})
    res = run_spec(spec, workers=2)
    assert len(res.results) == 10 and res.ok
    X, y = load_diabetes(return_X_y=True)
    for _, row in res.results.iterrows():
        labels = cv_folds(7, len(y), 5, int(row["repeat"]))
        test = labels == row["fold"]
        ref = LinearRegression().fit(X[~test], y[~test])
        assert row["test_r2"] == pytest.approx(r2_score(y[test], ref.predict(X[test])), rel=1e-9)
    means = {r["output"]: r["mean"] for r in res.summary["table"]}
    assert 0.3 < means["test_r2"] < 0.6


def test_sweep_kmeans_leaderboard_and_elbow(tmp_path):
    spec = small_spec(tmp_path, data={"source": "sklearn:iris", "target": "target"},
                      model={"kind": "kmeans", "n_init": 3}, plan={"sweep": {"grid": {"k": [1, 2, 3, 4]}, "repeats": 2}})
    res = run_spec(spec, workers=2)
    board = res.summary["table"]
    # Largest held-out Calinski-Harabasz index first; k = 1 has none and comes last.
    scores = [r["test_calinski_harabasz_mean"] for r in board[:3]]
    assert len(board) == 4 and scores == sorted(scores, reverse=True) and board[0]["k"] != 4
    assert board[-1]["k"] == 1 and board[-1]["test_calinski_harabasz_mean"] is None
    assert [r["repeats"] for r in board] == [2, 2, 2, 2]
    assert (tmp_path / "run" / "plots" / "elbow.png").exists()
    assert (tmp_path / "run" / "plots" / "leaderboard.png").exists()


def test_fit_ols_equals_lstsq_and_pca_scree(tmp_path):
    from sklearn.datasets import load_diabetes

    res = run_spec(small_spec(tmp_path, plan={"fit": {}}), workers=1)
    X, y = load_diabetes(return_X_y=True)
    ref = np.linalg.lstsq(np.column_stack([np.ones(len(y)), X]), y, rcond=None)[0]
    row = res.results.iloc[0]
    np.testing.assert_allclose(row["coef_(Intercept)"], ref[0], rtol=1e-10)
    np.testing.assert_allclose(row["coef_s6"], ref[-1], rtol=1e-8)
    pca = run_spec(small_spec(tmp_path, model={"kind": "pca", "variance": 0.95, "features": load_diabetes().feature_names},
                              plan={"fit": {}}, data={"source": "sklearn:diabetes"}), out=tmp_path / "pca")
    th = pca.summary["variance_thresholds"]
    evr = np.linalg.svd(X - X.mean(0), compute_uv=False) ** 2
    cum = np.cumsum(evr / evr.sum())
    assert th["k_80"] == int(np.searchsorted(cum, 0.8) + 1) and th["k_95"] == int(np.searchsorted(cum, 0.95) + 1)
    assert (tmp_path / "pca" / "plots" / "scree.png").exists()
    from PIL import Image  # matplotlib's own dependency

    with Image.open(tmp_path / "pca" / "plots" / "biplot.png") as image:  # the first two components
        assert image.size[0] > 300 and image.size[1] > 300


def test_shards_plan_fits_each_block(tmp_path):
    spec = small_spec(tmp_path, plan={"shards": {"n": 4}})
    res = run_spec(spec, workers=2)
    assert res.results["rows"].tolist() == [111, 111, 110, 110]
    assert {r["output"] for r in res.summary["table"]} >= {"coef_bmi"}


def test_cli_run_prints_summary_table(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(small_spec(tmp_path)))
    proc = hpcml_cli("run", path, "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert "coef_bmi" in proc.stdout and "40/40 tasks ok" in proc.stdout


def test_data_is_loaded_once_per_worker_process(tmp_path):
    data = tmp_path / "d.csv"
    pd.DataFrame(np.random.default_rng(0).normal(size=(500, 3)), columns=["a", "b", "c"]).to_csv(data, index=False)
    spec = small_spec(tmp_path, data={"source": str(data)}, model={"kind": "sleep", "ms": 1, "report_loads": True},
                      plan={"replicate": {"n": 120}}, backend={"name": "local", "workers": 2, "chunk_size": 3})
    res = run_spec(spec)
    assert res.ok
    per_worker = res.results.groupby("pid")["data_loads"].max()
    assert 1 <= len(per_worker) <= 2 and (per_worker == 1).all(), per_worker


def test_driver_script_from_stdin_runs(tmp_path):
    """`python - <<EOF ... hpcml.run(...)`: spawned workers cannot re-import a stdin __main__."""
    script = f"import hpcml\nr = hpcml.run({small_spec(tmp_path)!r}, progress=False)\nprint('ok' if r.ok else 'failed')\n"
    proc = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_results_after_retried_failures_look_like_a_clean_run(tmp_path):
    """No leftover all-empty error column, integer plan columns stay integers."""
    spec = small_spec(tmp_path, data={"source": "sklearn:iris"}, model={"kind": "sleep", "ms": 1},
                      plan={"replicate": {"n": 10}})
    clean = run_spec(spec, workers=2, out=tmp_path / "clean")
    flaky = dict(spec, model={"kind": "sleep", "ms": 1, "flaky_dir": str(tmp_path / "flaky")})
    first = run_spec(flaky, workers=2, out=tmp_path / "flaky-run")
    assert first.n_failed == 10 and "error" in first.results
    resumed = run_spec(flaky, workers=2, out=tmp_path / "flaky-run", resume=True)
    assert resumed.ok and "error" not in resumed.results and "traceback" not in resumed.results
    assert resumed.results["replicate"].dtype == clean.results["replicate"].dtype == np.int64
    assert_same_results(clean.results, resumed.results)


def test_no_plots_option_leaves_results_and_summary(tmp_path):
    spec = small_spec(tmp_path)
    res = run_spec(spec, workers=2, plots=False)
    assert res.ok and (tmp_path / "run" / "summary.json").exists()
    assert not (tmp_path / "run" / "plots").exists()
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    proc = hpcml_cli("run", path, "--quiet", "--overwrite", "--no-plots")
    assert proc.returncode == 0 and not (tmp_path / "run" / "plots").exists(), proc.stderr


def test_task_generator_and_scratch_are_built_only_on_use(tmp_path):
    from hpcml.models.base import FitContext
    from hpcml.plans import task_rng

    calls = []

    def factory():
        calls.append(1)
        return task_rng(5, 3)

    ctx = FitContext(rng_factory=factory, scratch_factory=lambda: tmp_path / "s")
    assert calls == []  # a task that never draws never seeds
    first = ctx.rng.standard_normal(4)
    ctx.rng  # built once, then the same generator
    assert calls == [1]
    np.testing.assert_array_equal(first, task_rng(5, 3).standard_normal(4))
    assert ctx.scratch == tmp_path / "s" and not ctx.scratch.exists()
    with pytest.raises(TypeError, match="rng"):
        FitContext()


def test_in_memory_frame_as_data(tmp_path, monkeypatch):
    """hpcml.run(spec, data=frame): the same numbers as the same table from a source, and a
    resumable run (the frame is stored once, by content)."""
    from sklearn.datasets import load_diabetes

    monkeypatch.setenv("HPCML_CACHE_DIR", str(tmp_path / "cache"))
    spec = small_spec(tmp_path)
    reference = run_spec(spec, out=tmp_path / "ref")
    frame = load_diabetes(as_frame=True).frame
    from_frame = run_spec(spec, out=tmp_path / "frame", data=frame)
    assert from_frame.ok
    assert_same_results(reference.results, from_frame.results)
    stored = list((tmp_path / "cache" / "frames").glob("frame-*.parquet"))
    assert len(stored) == 1
    again = run_spec(spec, out=tmp_path / "frame", data=frame.copy(), resume=True)
    assert again.ok and len(list((tmp_path / "cache" / "frames").iterdir())) == 1
    assert_same_results(from_frame.results, again.results)
    # A NumPy array works too: columns x0, x1, ...
    arr = run_spec({**spec, "model": {"kind": "ols"}, "data": {"target": "x10"}}, out=tmp_path / "arr",
                   data=frame.to_numpy())
    np.testing.assert_allclose(arr.results.filter(like="coef_x").to_numpy(),
                               reference.results.filter(like="coef_").drop(columns="coef_(Intercept)").to_numpy())


@pytest.mark.parametrize("bad, value", [([[1, 2], [3, 4]], "list"), (np.zeros(5), "array of shape (5,)")])
def test_bad_in_memory_data_one_error_no_run_dir(tmp_path, monkeypatch, bad, value):
    monkeypatch.setenv("HPCML_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(hpcml.SpecError) as err:
        run_spec(small_spec(tmp_path), data=bad)
    assert str(err.value).startswith("data:") and value in str(err.value)
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


def test_in_memory_frames_are_named_by_their_whole_content(tmp_path, monkeypatch):
    from hpcml.data.frames import frame_source

    monkeypatch.setenv("HPCML_CACHE_DIR", str(tmp_path))
    a = pd.DataFrame({"g": pd.Categorical(["x", "y", "x"]), "v": [1.0, 2.0, 3.0]})
    b = pd.DataFrame({"g": pd.Categorical(["p", "q", "p"]), "v": [1.0, 2.0, 3.0]})  # same codes
    c = a.rename(columns={"v": "w"})
    paths = {frame_source(f) for f in (a, b, c)}
    assert len(paths) == 3
    assert frame_source(a.copy()) in paths  # the same table, the same file
    pd.testing.assert_frame_equal(pd.read_parquet(frame_source(b)), b)


def _grouped_runs_agree(tmp_path, base: dict) -> list:
    """Runs of a 150-replicate bootstrap with 1 or 2 workers and chunks of 150, 7 (across
    groups of 64) and 64, and a resume that redoes tasks from the middle of a group: the same
    numbers, bit for bit. Returns the runs."""
    runs = []
    for i, (workers, chunk) in enumerate([(1, 150), (2, 7), (2, 64)]):
        spec = {**base, "output": str(tmp_path / f"run{i}")}
        runs.append(hpcml.run(spec, workers=workers, chunk_size=chunk, progress=False, plots=False))
    for other in runs[1:]:
        assert_same_results(runs[0].results, other.results)
    store = RunStore(tmp_path / "run1")
    lost = [f for f in store.chunk_files() if "0000070-" in f.name]
    assert lost
    for f in lost:
        f.unlink()
    resumed = hpcml.run({**base, "output": str(tmp_path / "run1")}, resume=True, progress=False, plots=False)
    assert resumed.summary["run"]["tasks"] == 150
    assert_same_results(runs[0].results, resumed.results)
    return runs


def test_batched_bootstrap_is_the_same_for_any_chunking_and_equals_lstsq_on_the_copy(tmp_path):
    """OLS replicates are fitted 64 at a time (groups fixed by task index): the numbers do not
    depend on chunk size or worker count, and equal lstsq on each resampled copy."""
    import numpy as np

    from hpcml import load_job
    from hpcml.data import load_dataset
    from hpcml.plans import task_rng
    from hpcml.plans.bootstrap import resample_counts

    base = small_spec(tmp_path, plan={"bootstrap": {"replicates": 150}})
    runs = _grouped_runs_agree(tmp_path, base)
    job = load_job(base)
    data = load_dataset(job)
    res = runs[0].results.sort_values("task_index")
    for i in (0, 63, 64, 149):
        counts = resample_counts(task_rng(job.spec.seed, i), data.n).astype(int)
        rows = np.repeat(np.arange(data.n), counts)
        A = np.column_stack([np.ones(rows.size), data.X[rows]])
        ref = np.linalg.lstsq(A, data.y[rows], rcond=None)[0]
        got = res.loc[res["task_index"] == i, [f"coef_{n}" for n in ["(Intercept)", *data.features]]].to_numpy()[0]
        np.testing.assert_allclose(got, ref, rtol=1e-8, atol=1e-8 * np.abs(ref).max())


def test_batched_logistic_bootstrap_is_the_same_for_any_chunking_and_equals_irls_on_the_copy(tmp_path):
    """Logistic replicates are fitted 64 at a time too (Newton from the full fit): the numbers
    do not depend on chunk size, worker count or a resume from the middle of a group, and
    equal IRLS on each resampled copy. Labels may be strings; the summary is the plain one."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    from hpcml import load_job
    from hpcml.data import load_dataset
    from hpcml.numerics.batched_logistic import logistic_coefs_batch
    from hpcml.numerics.irls import fit_logistic
    from hpcml.plans import task_rng
    from hpcml.plans.bootstrap import resample_counts

    rng = np.random.default_rng(8)
    frame = pd.DataFrame(rng.standard_normal((1500, 3)), columns=["a", "b", "c"])
    eta = frame.to_numpy() @ np.array([0.7, -0.5, 0.2]) + 0.3
    frame["label"] = np.where(rng.random(1500) < 1 / (1 + np.exp(-eta)), "yes", "no")
    frame.to_parquet(tmp_path / "binary.parquet")
    base = small_spec(tmp_path, data={"source": str(tmp_path / "binary.parquet"), "target": "label"},
                      model={"kind": "logistic"}, plan={"bootstrap": {"replicates": 150}})
    runs = _grouped_runs_agree(tmp_path, base)
    assert "warning" not in runs[0].results and runs[0].summary["replicates"] == 150
    job = load_job(base)
    data = load_dataset(job)
    res = runs[0].results.sort_values("task_index")
    W = np.stack([resample_counts(task_rng(job.spec.seed, i), data.n) for i in range(64)])
    with threadpool_limits(1):  # as the run's tasks (threads_per_task): the same bits
        batch = logistic_coefs_batch(data.X, data.y, W)  # what the run's first group computed
    for i in (0, 63, 64, 149):
        rows = np.repeat(np.arange(data.n), resample_counts(task_rng(job.spec.seed, i), data.n).astype(int))
        ref = fit_logistic(data.X[rows], np.asarray(data.y)[rows], tol=1e-14).coef
        got = res.loc[res["task_index"] == i, [f"coef_{n}" for n in ["(Intercept)", *data.features]]].to_numpy()[0]
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max())
        if i < 64:
            assert np.array_equal(got, batch[i])


@pytest.mark.parametrize("kind", ["ols", "logistic"])
def test_a_replicate_in_the_last_group_does_not_depend_on_the_number_of_replicates(tmp_path, kind):
    """The last group of a job is padded to a full group: replicate 66 of 70 and of 100 agree."""
    import numpy as np

    data = {"source": "sklearn:diabetes", "target": "target"}
    if kind == "logistic":
        rng = np.random.default_rng(1)
        frame = pd.DataFrame(rng.standard_normal((400, 3)), columns=["a", "b", "c"])
        frame["label"] = (rng.random(400) < 1 / (1 + np.exp(-frame.to_numpy() @ [0.8, -0.5, 0.3]))).astype(int)
        frame.to_parquet(tmp_path / "d.parquet")
        data = {"source": str(tmp_path / "d.parquet"), "target": "label"}
    runs = []
    for count in (70, 100):
        spec = small_spec(tmp_path, data=data, model={"kind": kind}, output=str(tmp_path / f"r{count}"),
                          plan={"bootstrap": {"replicates": count, "bca": False}})
        res = hpcml.run(spec, workers=1, progress=False, plots=False).results
        runs.append(res[res["task_index"].between(64, 69)].drop(columns=["seconds"]).reset_index(drop=True))
    pd.testing.assert_frame_equal(runs[0], runs[1], check_exact=True)


def test_a_replicate_the_batched_path_declines_fails_on_its_own(tmp_path):
    """Replicates the batched path leaves to IRLS run one by one: one IRLS cannot fit (max_iter
    5) fails alone, and the others keep their numbers, bit for bit, for any chunking."""
    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 2))
    frame = pd.DataFrame(X, columns=["a", "b"])
    frame["label"] = (rng.random(80) < 1 / (1 + np.exp(-(X @ [1.0, -1.0])))).astype(int)
    frame.to_parquet(tmp_path / "small.parquet")
    spec = small_spec(tmp_path, seed=2, data={"source": str(tmp_path / "small.parquet"), "target": "label"},
                      model={"kind": "logistic", "max_iter": 5}, plan={"bootstrap": {"replicates": 64, "bca": False}})
    runs = [hpcml.run({**spec, "output": str(tmp_path / f"c{chunk}")}, workers=1, chunk_size=chunk, progress=False,
                      plots=False).results.sort_values("task_index").reset_index(drop=True) for chunk in (64, 8)]
    failed = [r.loc[r["status"] != "ok", "task_index"].tolist() for r in runs]
    assert failed[0] == failed[1] and 0 < len(failed[0]) < 10
    assert runs[0].loc[runs[0]["status"] != "ok", "error"].str.contains("did not converge in 5 iterations").all()
    assert_same_results(runs[0], runs[1])


def test_a_chunk_that_starts_with_a_failure_keeps_the_outputs_of_its_ok_records(tmp_path):
    from hpcml.rundir.store import Chunk
    from hpcml.rundir.store import RunStore, write_chunk_records

    (tmp_path / "chunks").mkdir()
    records = [{"task_id": "replicate/000000", "task_index": 0, "status": "failed", "attempt": 1, "error": "boom"},
               {"task_id": "replicate/000001", "task_index": 1, "status": "ok", "attempt": 1, "value": 2.5,
                "result": b"\x00\x01"}]
    write_chunk_records(tmp_path, Chunk((0, 1)), records)
    frame = RunStore(tmp_path).latest_records().set_index("task_index")
    assert frame.loc[1, "value"] == 2.5 and frame.loc[1, "result"] == b"\x00\x01"
    assert frame.loc[0, "error"] == "boom"


def test_versions_json_records_what_importlib_metadata_reads(tmp_path):
    """The versions recorded (read from each distribution's metadata headers only) are the
    versions ``importlib.metadata`` gives, for every installed distribution, and a missing
    package is None."""
    import importlib.metadata as md

    from hpcml.versions import version_of

    names = {d.metadata["Name"] for d in md.distributions()}
    assert len(names) > 10
    assert {n: version_of(n) for n in names} == {n: md.version(n) for n in names}
    assert version_of("no-such-package-anywhere") is None
