"""Large data once per machine: every worker maps one read-only file instead of holding a
copy, the file is keyed by the source's content, checks stream column by column, and the
numbers are those of the in-memory path."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml

import hpcml
from hpcml.data.mapped import dataset_key, map_stats
from hpcml.data.sources import full_load
from hpcml.models.base import Dataset, FitContext, get_model
from hpcml.spec import DataSpec
from tests.conftest import linear_frame, PYTHON, ROOT, assert_same_results, small_spec

FEATURES = [f"x{j}" for j in range(6)]


def _table(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    return linear_frame(n, FEATURES, seed)


@pytest.fixture
def shared(tmp_path, monkeypatch):
    """A Parquet file, and a map directory where every data set is shared however small."""
    monkeypatch.setenv("HPCML_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HPCML_MAP_MIN_BYTES", "0")
    path = tmp_path / "d.parquet"
    _table().to_parquet(path, row_group_size=1000)
    return path


def _run(tmp_path, path, name, **over):
    # spawn, not reused: the workers see this test's environment (map directory, threshold)
    backend = {"name": "local", "workers": 2, "chunk_size": 2, "start_method": "spawn", "reuse_workers": False}
    spec = small_spec(tmp_path, data={"source": str(path), "target": "y"}, backend=backend, **over)
    spec.setdefault("model", {})
    if spec["model"].get("kind") == "ols":
        spec["model"] = {"kind": "ols"}  # every column of the file but the target
    return hpcml.run(spec, out=tmp_path / name, progress=False)


SLEEP = {"model": {"kind": "sleep", "ms": 25, "report_loads": True}, "plan": {"replicate": {"n": 24}}}


def _per_process(tmp_path, results: pd.DataFrame) -> pd.DataFrame:
    """What each process that ran tasks reports about its data, checked against the one file."""
    entries = [p for p in (tmp_path / "cache" / "mapped").iterdir() if p.is_dir() and p.name != "digests"]
    assert len(entries) == 1
    inode = os.stat(entries[0] / "X.npy").st_ino
    per = results.groupby("pid")[["data_mapped", "data_file_inode", "data_private_copies",
                                  "data_builds", "data_loads"]].max()
    assert (per["data_mapped"] == 1).all() and (per["data_file_inode"] == inode).all(), per
    assert (per["data_private_copies"] == 0).all() and (per["data_loads"] == 1).all(), per
    return per


def test_every_worker_maps_the_one_file_the_driver_built(tmp_path, shared):
    before = map_stats()
    res = _run(tmp_path, shared, "sleep", **SLEEP)
    assert res.ok
    assert map_stats()["built"] == before["built"] + 1  # the driver's checks wrote it
    per_worker = _per_process(tmp_path, res.results)
    assert 1 <= len(per_worker) <= 2 and (per_worker["data_builds"] == 0).all()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_dask_workers_map_the_one_file(tmp_path, shared):
    """A real LocalCluster on 127.0.0.1: its worker processes (which inherit this test's map
    directory) map the file the driver built; none builds or copies it."""
    pytest.importorskip("distributed")
    before = map_stats()
    spec = small_spec(tmp_path, data={"source": str(shared), "target": "y"},
                      backend={"name": "dask", "workers": 2, "chunk_size": 2}, **SLEEP)
    res = hpcml.run(spec, out=tmp_path / "dask", progress=False)
    assert res.ok
    assert map_stats()["built"] == before["built"] + 1
    per_worker = _per_process(tmp_path, res.results)
    assert len(per_worker) == 2 and os.getpid() not in per_worker.index
    assert (per_worker["data_builds"] == 0).all()


@pytest.mark.slow
@pytest.mark.mpi
@pytest.mark.timeout(240)
@pytest.mark.skipif(shutil.which("mpirun") is None or importlib.util.find_spec("mpi4py") is None,
                    reason="Open MPI or mpi4py not installed")
@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_mpi_ranks_map_the_one_file(tmp_path, shared, mode):
    """Real mpirun, 3 ranks on this node: one rank builds the file, every rank maps it."""
    spec = small_spec(tmp_path, data={"source": str(shared), "target": "y"},
                      backend={"name": "mpi", "mode": mode, "chunk_size": 2}, **SLEEP)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    proc = subprocess.run([shutil.which("mpirun"), "--allow-run-as-root", "--oversubscribe", "-n", "3", PYTHON,
                           "-m", "hpcml.cli", "run", str(path), "-q"], cwd=ROOT, capture_output=True, text=True,
                          timeout=200, env={**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    per_rank = _per_process(tmp_path, pd.read_parquet(tmp_path / "run" / "results.parquet"))
    assert len(per_rank) >= 2 and per_rank["data_builds"].sum() <= 1


def test_bootstrap_numbers_are_those_of_private_copies(tmp_path, shared, monkeypatch):
    mapped = _run(tmp_path, shared, "mapped")
    monkeypatch.setenv("HPCML_MAP_MIN_BYTES", str(1 << 40))  # nothing shared: each worker its own array
    private = _run(tmp_path, shared, "private")
    assert mapped.ok and private.ok
    assert_same_results(mapped.results, private.results)


def test_mapped_data_is_bit_identical_to_pandas_and_read_only(shared):
    data = full_load(DataSpec(source=str(shared), target="y"), None, True)
    frame = pd.read_parquet(shared)
    assert isinstance(data.X, np.memmap) and not data.X.flags.writeable and data.X.flags.c_contiguous
    assert data.X.tobytes() == frame[FEATURES].to_numpy(dtype=np.float64).tobytes()
    assert np.asarray(data.y).tobytes() == frame["y"].to_numpy().tobytes()
    assert data.features == FEATURES and np.shares_memory(np.ascontiguousarray(data.X), data.X)  # no copy


@pytest.mark.parametrize("gather_bytes", [1, 3000 * 8 * 3, 1 << 30])
def test_columns_gathered_into_the_mapped_file_are_bit_identical(tmp_path, shared, monkeypatch, gather_bytes):
    """Numeric columns are written to the mapped matrix in groups (one at a time, three, all),
    around a categorical column's dummies: the same matrix as pandas makes."""
    from hpcml.data import validate

    monkeypatch.setattr(validate, "GATHER_BYTES", gather_bytes)
    frame = _table()
    frame.insert(2, "colour", pd.Categorical(np.array(["red", "green", "blue"])[np.arange(len(frame)) % 3]))
    path = tmp_path / f"mixed-{gather_bytes}.parquet"
    frame.to_parquet(path)
    data = full_load(DataSpec(source=str(path), target="y"), None, True)
    ref = pd.get_dummies(frame.drop(columns="y"), columns=["colour"], prefix_sep="", drop_first=True, dtype=np.float64)
    ref = ref[data.features]  # the dummies where the factor stood, as R's model.matrix puts them
    assert isinstance(data.X, np.memmap) and data.X.tobytes() == ref.to_numpy(dtype=np.float64).tobytes()


def test_key_follows_the_content_not_the_name(tmp_path, shared):
    spec = DataSpec(source=str(shared), target="y")
    key = dataset_key(spec, None, True)
    twin = tmp_path / "elsewhere.parquet"
    twin.write_bytes(shared.read_bytes())
    assert dataset_key(DataSpec(source=str(twin), target="y"), None, True) == key
    assert dataset_key(spec, FEATURES[:3], True) != key
    frame = _table()
    frame.loc[17, "x2"] = 0.5
    frame.to_parquet(shared, row_group_size=1000)
    os.utime(shared, ns=(1, 1))  # even with an old timestamp the size/inode/mtime record changes
    changed = dataset_key(spec, None, True)
    assert changed != key
    assert full_load(spec, None, True).X[17, 2] == 0.5


def test_checks_stream_column_by_column(tmp_path, shared):
    frame = _table(200)
    frame.loc[[3, 5], "x1"] = np.nan
    frame.loc[[7], "x4"] = np.nan
    frame["g"] = np.where(np.arange(200) % 3 == 0, "b", "a")
    path = tmp_path / "holes.parquet"
    frame.to_parquet(path)
    with pytest.raises(hpcml.SpecError, match="column 'x1' has 2 missing/NaN values"):
        full_load(DataSpec(source=str(path), target="y"), None, True)
    data = full_load(DataSpec(source=str(path), target="y", dropna=True), None, True)
    kept = frame.dropna()
    assert data.X.shape == (197, 7) and data.features == FEATURES + ["gb"]
    np.testing.assert_array_equal(data.X[:, :6], kept[FEATURES].to_numpy())
    np.testing.assert_array_equal(data.X[:, 6], (kept["g"] == "b").to_numpy(dtype=float))
    frame = _table(200)
    frame.loc[9, "x3"] = np.inf
    frame.to_parquet(path)
    with pytest.raises(hpcml.SpecError, match="infinite values .got .x3."):
        full_load(DataSpec(source=str(path), target="y"), None, True)


@pytest.mark.parametrize("kind, params", [("ols", {}), ("logistic", {}), ("kmeans", {"k": 3}), ("pca", {}),
                                          ("svd", {"k": 3})])
def test_models_fit_read_only_data_without_changing_numbers(shared, kind, params):
    data = full_load(DataSpec(source=str(shared), target="y"), None, True)
    assert not data.X.flags.writeable
    y = (np.asarray(data.y) > 0).astype(float) if kind == "logistic" else data.y
    ro = Dataset(X=data.X, y=y, features=data.features)
    rw = Dataset(X=np.array(data.X), y=np.array(y), features=data.features)
    model = get_model(kind)
    p = model.Params(**params)
    w = np.bincount(np.random.default_rng(3).integers(0, ro.n, ro.n), minlength=ro.n).astype(float)
    outs = [model.outputs(p, model.fit(p, d, w, FitContext(rng=np.random.default_rng(1))), d) for d in (ro, rw)]
    assert outs[0] == outs[1]


def test_csv_streams_block_by_block_with_the_types_pandas_infers(tmp_path, monkeypatch):
    """A CSV is streamed in blocks; a column whose later blocks do not fit the type of its first
    (int then a fraction, numbers then text, empty then numbers, dates) is read as pandas reads it.
    Values are parsed correctly rounded, as pandas' float_precision="round_trip" parses them."""
    import tempfile

    from hpcml.data.columns import csv_columns

    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    rng = np.random.default_rng(0)
    n = 5000
    frame = pd.DataFrame({"a": rng.standard_normal(n) * 10.0 ** rng.integers(-5, 8, n), "i": rng.integers(0, 9, n),
                          "s": rng.choice(["x", "y"], n), "b": rng.choice([True, False], n),
                          "late_float": rng.integers(0, 5, n).astype(object), "late_text": rng.standard_normal(n).astype(object),
                          "empty_first": np.nan, "when": "2024-01-02"})
    frame.loc[n - 3, "late_float"], frame.loc[n - 2, "late_text"], frame.loc[n - 5:, "empty_first"] = 2.5, "oops", 1.25
    frame.loc[5, "i"] = None
    frame.loc[[7, 9], "s"] = ["NA", "None"]  # missing, as pandas reads them
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    ref = pd.read_csv(path, float_precision="round_trip")
    cols = csv_columns(path, block_bytes=1 << 14)
    assert cols.names == list(ref.columns) and cols.n == n
    for name in cols.names:
        got = cols.column(name)  # missing text is None (as pandas reads Parquet), NaN in read_csv
        got = got.where(got.notna(), np.nan) if got.dtype == object else got
        pd.testing.assert_series_equal(got, ref[name], check_names=False)
    assert os.listdir(tmp_path / "tmp") == []  # the temporary Parquet file is unlinked once open
    data = full_load(DataSpec(source=str(path), target="a", dropna=True), ["i", "late_float", "b"], True)
    kept = ref.dropna(subset=["a", "i", "late_float", "b"])
    assert data.X.shape == (n - 1, 3) and data.features == ["i", "late_float", "bTRUE"]
    assert data.X.tobytes() == np.column_stack([kept["i"], kept["late_float"], kept["b"]]).astype(float).tobytes()
    assert np.asarray(data.y).tobytes() == kept["a"].to_numpy().tobytes()


@pytest.mark.timeout(120)
def test_small_data_loads_while_another_process_holds_the_map_lock(tmp_path, monkeypatch):
    """A process stopped while it holds a data set's lock (a SIGSTOPped MPI rank) must not
    block the other processes: data too small to share is built without the lock."""
    import fcntl

    from hpcml.data.mapped import map_dir

    monkeypatch.setenv("HPCML_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "small.parquet"
    _table(200).to_parquet(path)
    spec = DataSpec(source=str(path), target="y")
    key = dataset_key(spec, None, True)
    map_dir().mkdir(parents=True, exist_ok=True)
    with open(map_dir() / f"{key}.lock", "a+b") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # the stopped holder
        code = ("from hpcml.data.sources import full_load; from hpcml.spec import DataSpec; "
                f"d = full_load(DataSpec(source={str(path)!r}, target='y'), None, True); print(d.X.shape)")
        proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=90,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(200, 6)"


def _traced_peak(fn) -> tuple[object, int]:
    import tracemalloc

    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("kind, params", [("logistic", {}), ("pca", {}), ("pca", {"scale": True}), ("svd", {})])
def test_weighted_fits_and_scores_make_no_copy_of_the_rows(monkeypatch, kind, params):
    """A bootstrap replicate (counts, a third of them 0) and a CV fold's scores on a read-only
    n x p array: rows are skipped, centred and weighted block by block, so the fit allocates
    a quarter of the array at most (vectors of n floats; a resampled, centred or intercept copy would be 0.6x-1x),
    and the numbers are those of the fit on the resampled copy."""
    import hpcml.numerics.gram as gram_module

    monkeypatch.setattr(gram_module, "_BLOCK_BYTES", 1 << 18)  # 256 KB row blocks
    rng = np.random.default_rng(5)
    n, p = 30_000, 80  # 19 MB; a vector of n floats is 1/80 of it
    X = rng.standard_normal((n, p)) * np.linspace(1, 2, p) + 0.5  # well conditioned: the Gram route
    y = (X @ np.linspace(-1, 1, p) / 10 + rng.standard_normal(n) > 0).astype(float) if kind == "logistic" else None
    X.flags.writeable = False
    data = Dataset(X=X, y=y, features=[f"x{j}" for j in range(p)])
    model = get_model(kind)
    prm = model.Params(**params)
    idx = rng.integers(0, n, n)
    w = np.bincount(idx, minlength=n).astype(float)
    ctx = lambda: FitContext(rng=np.random.default_rng(1))  # noqa: E731
    fitted, peak = _traced_peak(lambda: model.fit(prm, data, w, ctx()))
    assert peak < 0.25 * X.nbytes, (peak, X.nbytes)
    test = np.arange(n) % 5 == 0
    model.score(prm, fitted, data, test)  # (imports, e.g. scikit-learn's metrics, are not the fit's)
    _, peak = _traced_peak(lambda: (model.score(prm, fitted, data, test), model.score(prm, fitted, data, ~test)))
    assert peak < 0.25 * X.nbytes, (peak, X.nbytes)
    copy = Dataset(X=X[idx], y=None if y is None else y[idx], features=data.features)
    want = model.outputs(prm, model.fit(prm, copy, None, ctx()), copy)
    got = model.outputs(prm, fitted, data)
    assert list(got) == list(want)
    np.testing.assert_allclose(list(got.values()), list(want.values()), rtol=1e-9, atol=1e-12)
    if kind == "svd":  # and NumPy's SVD of the resampled copy
        np.testing.assert_allclose(list(got.values()), np.linalg.svd(X[idx], compute_uv=False), rtol=1e-10)


def test_kmeans_copies_the_rows_once_for_scikit_learn_and_scores_none(monkeypatch):
    """scikit-learn's KMeans centres its input in place: a weighted fit hands it one copy of
    the rows with positive weight (about 0.63x for a replicate) and reads X itself for the
    rest, instead of a resampled copy plus scikit-learn's own copy of it (1.26x); scores
    read row blocks."""
    import hpcml.numerics.gram as gram_module

    monkeypatch.setattr(gram_module, "_BLOCK_BYTES", 1 << 18)  # 256 KB row blocks
    rng = np.random.default_rng(6)
    X = rng.standard_normal((60_000, 30)) + np.repeat(np.eye(3, 30) * 4, 20_000, axis=0)
    X.flags.writeable = False
    data = Dataset(X=X, y=None, features=[f"x{j}" for j in range(30)])
    model = get_model("kmeans")
    prm = model.Params(k=3, n_init=2)
    idx = rng.integers(0, X.shape[0], X.shape[0])
    w = np.bincount(idx, minlength=X.shape[0]).astype(float)
    fitted, peak = _traced_peak(lambda: model.fit(prm, data, w, FitContext(rng=np.random.default_rng(1))))
    kept = np.count_nonzero(w) / w.size
    assert peak < (kept + 0.35) * X.nbytes, (peak, kept, X.nbytes)  # + k-means++ draws: (2 + log k) x n
    copy = Dataset(X=X[w > 0], y=None, features=data.features)  # the same rows, counts as weights
    ref = model.fit(prm, copy, w[w > 0], FitContext(rng=np.random.default_rng(1)))
    np.testing.assert_allclose(fitted.centers, ref.centers, rtol=1e-12, atol=1e-13)  # sums by row blocks
    assert fitted.inertia == pytest.approx(ref.inertia, rel=1e-12)
    fitted = model.fit(prm, data, None, FitContext(rng=np.random.default_rng(1)))
    test = np.arange(X.shape[0]) % 5 == 0
    got, peak = _traced_peak(lambda: model.score(prm, fitted, data, ~test))
    assert peak < 0.25 * X.nbytes, (peak, X.nbytes)
    d2 = ((X[~test][:, None, :] - fitted.centers[None]) ** 2).sum(axis=2).min(axis=1)
    assert got["inertia"] == pytest.approx(d2.sum(), rel=1e-12)
