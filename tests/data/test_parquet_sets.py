"""A directory or glob of Parquet files (what Spark writes) on every engine: the numbers of the
one file holding the same rows, the shared memory-mapped form, shards that read only their own
row groups, and a fingerprint that covers every file."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

import hpcml
from hpcml.plans.base import block_share
from hpcml.cli import app
from hpcml.data.mapped import dataset_key
from hpcml.data.lazy_rows import lazy_rows
from hpcml.data.sources import full_load
from hpcml.errors import SpecError
from hpcml.spec import DataSpec
from tests.conftest import linear_frame, assert_same_results, small_spec

FEATURES = [f"x{j}" for j in range(4)]
CUTS = [(0, 700), (700, 1500), (1500, 2400)]  # three files, 200-row groups (the last one short)


def _table(n: int = 2400, seed: int = 0) -> pd.DataFrame:
    return linear_frame(n, FEATURES, seed)


@pytest.fixture
def files(tmp_path, monkeypatch):
    """The same rows as one file and as a directory of three part files (with Spark's _SUCCESS)."""
    monkeypatch.setenv("HPCML_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HPCML_MAP_MIN_BYTES", "0")  # every data set shared, however small
    frame = _table()
    one = tmp_path / "one.parquet"
    frame.to_parquet(one, row_group_size=200)
    parts = tmp_path / "big"
    parts.mkdir()
    for i, (a, b) in enumerate(CUTS):
        frame.iloc[a:b].to_parquet(parts / f"part-{i:05d}.parquet", row_group_size=200)
    (parts / "_SUCCESS").write_text("")
    return one, parts


def _run(tmp_path, source, name, plan, resume=False):
    backend = {"name": "local", "workers": 2, "chunk_size": 2, "start_method": "spawn", "reuse_workers": False}
    spec = small_spec(tmp_path, data={"source": str(source), "target": "y"}, model={"kind": "ols"}, plan=plan,
                      backend=backend)
    return hpcml.run(spec, out=tmp_path / name, progress=False, resume=resume)


@pytest.mark.timeout(300)
def test_a_directory_or_glob_gives_the_numbers_of_the_one_file(tmp_path, files):
    one, parts = files
    for source in (parts, f"{parts}/", f"{parts}/*.parquet"):
        data = full_load(DataSpec(source=str(source), target="y"), None, True)
        assert isinstance(data.X, np.memmap) and not data.X.flags.writeable  # the shared, mapped form
        assert data.X.tobytes() == _table()[FEATURES].to_numpy().tobytes() and data.features == FEATURES
    plan = {"bootstrap": {"replicates": 6}}
    reference = _run(tmp_path, one, "one", plan)
    for i, source in enumerate((parts, f"{parts}/*.parquet")):
        result = _run(tmp_path, source, f"set{i}", plan)
        assert result.ok and reference.ok
        assert_same_results(reference.results, result.results)


@pytest.mark.timeout(300)
def test_shards_of_a_set_read_only_their_own_row_groups(tmp_path, files, monkeypatch):
    one, parts = files
    reads: list[tuple[int, ...]] = []
    whole: list[str] = []
    real = pq.ParquetFile.read_row_groups

    def logged(self, row_groups, *args, **kwargs):
        reads.append(tuple(row_groups))
        return real(self, row_groups, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", logged)
    monkeypatch.setattr(pq.ParquetFile, "read", lambda self, *a, **k: whole.append("read") or None)
    opened: list[str] = []
    real_init = pq.ParquetFile.__init__

    def logged_init(self, source, *args, **kwargs):
        opened.append(str(source))
        real_init(self, source, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "__init__", logged_init)
    data = lazy_rows(DataSpec(source=f"{parts}/*.parquet", target="y"), None, True)
    assert data is not None and data.n == 2400
    expected = _table()[FEATURES].to_numpy()
    names = [f"part-{i:05d}.parquet" for i in range(3)]
    for shard in range(5):  # 480 rows each: shard 1 spans files 0 and 1
        rows = block_share(data.n, shard, 5)
        reads.clear()
        opened.clear()
        block = data.X[rows.start:rows.stop]
        assert block.tobytes() == expected[rows.start:rows.stop].tobytes()
        # The files opened for data, and their row groups, are exactly those holding the shard's rows.
        want: dict[str, list[int]] = {}
        for f, (a, b) in enumerate(CUTS):
            for g, first in enumerate(range(a, b, 200)):
                if first < rows.stop and min(first + 200, b) > rows.start:
                    want.setdefault(names[f], []).append(g)
        assert [p.rsplit("/", 1)[-1] for p in opened] == sorted(want), (shard, opened)
        assert reads == [tuple(want[n]) for n in sorted(want)], (shard, reads)
    assert not whole  # no file was ever read whole
    # And end to end: the shards plan on the set gives the one file's numbers.
    monkeypatch.undo()
    plan = {"shards": {"n": 5}}
    assert_same_results(_run(tmp_path, one, "one", plan).results, _run(tmp_path, parts, "set", plan).results)


def test_the_fingerprint_covers_every_file_of_the_set(tmp_path, files):
    one, parts = files
    plan = {"bootstrap": {"replicates": 2}}
    assert _run(tmp_path, parts, "run", plan).ok
    key = dataset_key(DataSpec(source=str(parts), target="y"), None, True)
    changed = _table()
    changed.loc[1000, "x1"] = 0.5  # a row of the middle file
    changed.iloc[700:1500].to_parquet(parts / "part-00001.parquet", row_group_size=200)
    assert dataset_key(DataSpec(source=str(parts), target="y"), None, True) != key  # no stale shared copy
    with pytest.raises(SpecError) as refused:
        _run(tmp_path, parts, "run", plan, resume=True)
    [(field, value, message)] = refused.value.problems
    assert (field, value) == ("data.source", str(parts / "part-00001.parquet")) and "changed" in message
    # A file added to the set is refused too.
    _table().iloc[:10].to_parquet(parts / "part-00003.parquet")
    with pytest.raises(SpecError) as refused:
        _run(tmp_path, parts, "run", plan, resume=True)
    assert refused.value.problems[0][:2] == ("data.source", str(parts / "part-00003.parquet"))
    # On the command line: one line, exit 2.
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(small_spec(tmp_path, data={"source": str(parts), "target": "y"},
                                              model={"kind": "ols"}, plan=plan, output=str(tmp_path / "run"))))
    result = CliRunner().invoke(app, ["run", str(spec), "--resume", "--quiet"])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("error: data.source: this file was not part of the run's data"), result.output
