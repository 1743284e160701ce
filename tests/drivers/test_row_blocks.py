"""Fits and bootstraps over row blocks, run for real: local workers, Dask, MPI (mpirun, both
modes) and Spark give the same bits as each other, for 1 and 2 workers and two block sizes,
and the numbers of the in-memory fit; bad data is one line; a bootstrap resumes; no task
reads a row outside its block."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml

from hpcml import run
from hpcml.spec import load_job

from conftest import assert_same_results, hpcml_cli
from mpi_util import MPIRUN, mpirun

FEATURES = [f"x{i}" for i in range(4)]


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """A directory of three Parquet files with small row groups (11,000 rows in all)."""
    root = tmp_path_factory.mktemp("big") / "parts"
    root.mkdir()
    rng = np.random.default_rng(4)
    n = 11_000
    X = rng.normal(size=(n, 4)) + [1, 0, 5, -2]
    frame = pd.DataFrame(X, columns=FEATURES)
    frame["y"] = X @ [1.0, -2.0, 0.5, 3.0] + rng.normal(size=n)
    frame["label"] = np.where(X[:, 0] + X[:, 1] + rng.normal(size=n) > 1, "up", "down")
    for i, (a, b) in enumerate([(0, 4000), (4000, 7500), (7500, n)]):
        frame.iloc[a:b].to_parquet(root / f"part-{i}.parquet", row_group_size=1500)
    return root


def spec_of(tmp_path, parts, kind, backend="local", workers=2, block_rows=2048, plan=None, **model):
    target = {"ols": "y", "logistic": "label"}.get(kind)
    return {"name": f"big-{kind}", "seed": 5,
            "data": {"source": str(parts), "target": target, "blocks_above_mb": 0, "block_rows": block_rows},
            "model": {"kind": kind, "features": FEATURES, **model}, "plan": plan or {"fit": {}},
            "backend": {"name": backend, "workers": workers}, "output": str(tmp_path / f"{kind}-{backend}-{workers}-"
                                                                             f"{block_rows}")}


def test_local_fits_are_the_same_bits_for_any_workers_and_blocks_and_the_in_memory_fit(tmp_path, parts):
    for kind, tol, extra in [("logistic", 1e-8, {}), ("ols", 1e-10, {}), ("pca", 1e-10, {"scale": True}),
                             ("kmeans", None, {"k": 3})]:
        one = run(spec_of(tmp_path, parts, kind, workers=1, block_rows=2048, **extra), progress=False)
        two = run(spec_of(tmp_path, parts, kind, workers=2, block_rows=4096, **extra), progress=False)
        assert one.ok and one.summary["run"]["row_blocks"]["blocks"] == 6
        assert two.summary["run"]["row_blocks"]["blocks"] == 3
        assert_same_results(one.results, two.results)
        if tol is None:
            continue
        memory = spec_of(tmp_path, parts, kind, **extra)
        memory["data"]["blocks_above_mb"] = 1000
        memory["output"] = str(tmp_path / f"{kind}-memory")
        in_memory = run(memory, progress=False)
        assert "row_blocks" not in in_memory.summary["run"]
        columns = [c for c in in_memory.results if c.startswith(("coef_", "sv_", "evr_"))]
        assert columns
        ours, theirs = one.results[columns].iloc[0].to_numpy(float), in_memory.results[columns].iloc[0].to_numpy(float)
        assert np.allclose(ours, theirs, rtol=tol, atol=tol), kind


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["dask", "spark"])
def test_dask_and_spark_give_the_local_bits(tmp_path, parts, backend):
    for kind in ("logistic", "kmeans"):
        extra = {"k": 3} if kind == "kmeans" else {}
        local = run(spec_of(tmp_path, parts, kind, **extra), progress=False)
        other = run(spec_of(tmp_path, parts, kind, backend=backend, block_rows=4096, **extra), progress=False)
        assert other.ok and other.summary["run"]["backend"] == backend
        assert_same_results(local.results, other.results)


@pytest.mark.slow
@pytest.mark.skipif(MPIRUN is None, reason="Open MPI not installed (make test installs it)")
@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_mpi_ranks_give_the_local_bits(tmp_path, parts, mode):
    local = run(spec_of(tmp_path, parts, "logistic"), progress=False)
    spec = spec_of(tmp_path, parts, "logistic", backend="mpi", block_rows=4096)
    spec["backend"]["mode"] = mode
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    proc = mpirun(3, "-m", "hpcml.cli", "run", str(path), "-q", timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_results(local.results, pd.read_parquet(f"{spec['output']}/results.parquet"))


def test_the_poisson_bootstrap_resumes_to_the_same_bits_with_other_blocks(tmp_path, parts):
    plan = {"bootstrap": {"replicates": 150}}
    first = run(spec_of(tmp_path, parts, "ols", plan=plan, block_rows=1024), progress=False)
    assert first.ok and first.summary["weights"] == "poisson" and first.n_tasks == 150
    table = {row["output"]: row for row in first.summary["table"]}
    assert table["coef_x1"]["se"] > 0 and "bca_low" not in table["coef_x1"]
    # the estimate is the fit of all rows
    direct = np.linalg.lstsq(np.hstack([np.ones((11_000, 1)), pd.read_parquet(parts)[FEATURES].to_numpy()]),
                             pd.read_parquet(parts)["y"].to_numpy(), rcond=None)[0]
    assert table["coef_x1"]["estimate"] == pytest.approx(direct[2], rel=1e-10)
    # a lost group of replicates is all a resume recomputes, here with other blocks and workers
    spec = spec_of(tmp_path, parts, "ols", plan=plan, block_rows=8192, workers=1)
    spec["output"] = str(first.run_dir)
    chunks = sorted((first.run_dir / "chunks").glob("chunk-0000064-*.parquet"))
    assert len(chunks) == 1
    chunks[0].unlink()
    (first.run_dir / "results.parquet").unlink()
    again = run(spec, resume=True, progress=False)
    assert again.ok
    assert_same_results(first.results, again.results)


def test_nan_in_a_block_is_one_line_and_no_run_directory(tmp_path, parts):
    frame = pd.read_parquet(parts)
    frame.loc[5000, "x2"] = np.nan
    source = tmp_path / "with-nan.parquet"
    frame.to_parquet(source, row_group_size=1000)
    spec = spec_of(tmp_path, parts, "ols")
    spec["data"]["source"] = str(source)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    proc = hpcml_cli("run", path, "-q")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith(
        "error: data.source: column 'x2' is missing/NaN at row 5000 (drop or impute such rows first) (got '/"), lines
    assert not (tmp_path / "ols-local-2-2048").exists()


def test_a_logistic_poisson_bootstrap_runs_over_row_blocks(tmp_path, parts):
    result = run(spec_of(tmp_path, parts, "logistic", plan={"bootstrap": {"replicates": 70}}), progress=False)
    assert result.ok and result.n_tasks == 70 and result.summary["weights"] == "poisson"
    table = {row["output"]: row for row in result.summary["table"]}
    assert 0 < table["coef_x0"]["se"] < abs(table["coef_x0"]["estimate"])


def test_bootstrap_of_another_kind_above_the_threshold_is_refused(tmp_path, parts):
    spec = spec_of(tmp_path, parts, "kmeans", plan={"bootstrap": {"replicates": 10}}, k=2)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    proc = hpcml_cli("run", path, "-q")
    assert proc.returncode == 2 and "model.kind: plan bootstrap of data above data.blocks_above_mb" in proc.stderr


def test_no_task_reads_a_row_outside_its_block(tmp_path, parts, monkeypatch):
    from hpcml.data.parts import ParquetRows
    from hpcml.drivers.attempts import in_this_process
    from hpcml.drivers.row_blocks import RowBlocksRun
    from hpcml.models.over_row_blocks import drive, fit_for
    from hpcml.data.row_blocks import block_reader
    from hpcml.rundir.store import RunStore

    reads: list[tuple[int, int]] = []
    original = ParquetRows.read

    def spy(self, start, stop, columns):
        reads.append((start, stop))
        return original(self, start, stop, columns)

    monkeypatch.setattr(ParquetRows, "read", spy)
    job = load_job(spec_of(tmp_path, parts, "logistic", block_rows=2048))
    reader = block_reader(job.spec.data, job.spec.model.features, True)
    backend = SimpleNamespace(name="here", run=in_this_process)
    passes = RowBlocksRun(job, backend, RunStore(tmp_path / "here"), reader, 2048, progress=False)
    record, _ = drive(fit_for("logistic", job.params, reader.features, 5, reader.n), passes.run_pass)
    assert passes.count >= 4 and record["n_iter"] >= 3
    assert len(reads) == 6 * passes.count
    for start, stop in reads:
        assert start % 2048 == 0 and stop == min(11_000, start + 2048), (start, stop)


@pytest.mark.slow
def test_a_workers_memory_grows_with_its_block_not_with_the_data(tmp_path):
    """704 MB of rows as float64: a worker that read them all would peak at least that much
    higher than on a small file; a worker of 128 Ki-row blocks peaks about a block, the row
    group it decodes and Arrow's buffers above (100-115 MB here, whatever the data's size; more
    where Arrow's decoding threads leave more of malloc's arenas behind, as on a busy machine,
    hence a bound of half the data, far above that and far below reading it all)."""
    rng = np.random.default_rng(0)
    big = tmp_path / "big"
    big.mkdir()
    for i in range(16):
        X = rng.normal(size=(500_000, 10))
        frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(10)]).assign(y=X.sum(axis=1) + rng.normal(size=500_000))
        frame.to_parquet(big / f"part-{i}.parquet", row_group_size=131_072)
    small = tmp_path / "small.parquet"
    frame.iloc[:5000].to_parquet(small)
    peaks = {}
    for name, source in (("small", small), ("big", big)):
        spec = {"name": f"mem-{name}", "seed": 1, "output": str(tmp_path / f"run-{name}"),
                "data": {"source": str(source), "target": "y", "blocks_above_mb": 0, "block_rows": 131_072},
                "model": {"kind": "ols"}, "plan": {"fit": {}},
                "backend": {"name": "local", "workers": 2, "reuse_workers": False}}
        result = run(spec, progress=False, plots=False)
        assert result.ok
        peaks[name] = result.summary["run"]["row_blocks"]["worker_peak_rss_mb"]
    assert 0 < peaks["big"] - peaks["small"] < 704 / 2, peaks


def test_submit_packs_a_fit_over_row_blocks_and_refuses_an_array(tmp_path, parts):
    from hpcml.drivers.submit import choose_mode, parse_options
    from hpcml.errors import SpecError

    job = load_job(spec_of(tmp_path, parts, "ols"))
    opts, why = choose_mode(job, parse_options({}))
    assert opts.mode == "pack" and "rank 0" in why
    with pytest.raises(SpecError, match="submit.mode: a fit over row blocks"):
        choose_mode(job, parse_options({"mode": "array"}))


def test_text_features_take_the_in_memory_fit_as_before(tmp_path, parts):
    """Text features need their levels from every row: such data is read into memory (R's
    treatment dummies), never refused for its size."""
    frame = pd.read_parquet(parts).iloc[:3000]
    frame["group"] = np.where(frame["x0"] > 1, "high", "low")
    source = tmp_path / "with-text.parquet"
    frame.to_parquet(source)
    spec = spec_of(tmp_path, parts, "ols")
    spec["data"]["source"] = str(source)
    spec["model"]["features"] = FEATURES + ["group"]
    result = run(spec, progress=False)
    assert result.ok and "row_blocks" not in result.summary["run"] and "coef_grouplow" in result.results
