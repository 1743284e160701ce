"""``hpcml.map(out=...)`` on a run directory another user could have written.

A map's results are pickles kept in the run's chunk files: loading one runs its code. Run as
root, the test gives files to another user (uid 65534) with ``os.chown``.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hpcml
from hpcml.errors import SpecError

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"__import__('pathlib').Path({str(self.marker)!r}).touch()",))


def _plant_chunk(run: Path, marker: Path) -> Path:
    """Every chunk file replaced by one whose results are pickles that run code."""
    files = sorted((run / "chunks").glob("chunk-*.parquet"))
    table = pa.concat_tables([pq.read_table(f) for f in files])
    payload = pickle.dumps(_Payload(marker))
    table = table.set_column(table.schema.get_field_index("result"), "result",
                             pa.array([payload] * table.num_rows, type=table.schema.field("result").type))
    for f in files:
        f.unlink()
    for name in ("results.parquet", "summary.json"):
        (run / name).unlink(missing_ok=True)
    planted = run / "chunks" / "chunk-0-0123abcd.parquet"
    pq.write_table(table, planted)
    return planted


def _map(run: Path) -> list:
    return hpcml.map(abs, [-1, -2, -3, -4], out=run, workers=1)


@needs_root
def test_map_refuses_a_run_directory_another_user_owns(tmp_path):
    run = tmp_path / "run"
    assert _map(run) == [1, 2, 3, 4]
    marker = tmp_path / "payload-ran"
    _plant_chunk(run, marker)
    for dirpath, _, files in os.walk(run):
        os.chown(dirpath, NOBODY, NOBODY)
        for f in files:
            os.chown(Path(dirpath, f), NOBODY, NOBODY)
    with pytest.raises(SpecError) as err:
        _map(run)
    line = str(err.value)
    assert len(line.splitlines()) == 1 and line.startswith("out:") and "uid 65534" in line, line
    assert not marker.exists(), "a planted pickle ran"


@needs_root
def test_a_chunk_file_another_user_wrote_is_never_unpickled(tmp_path):
    run = tmp_path / "run"
    assert _map(run) == [1, 2, 3, 4]
    marker = tmp_path / "payload-ran"
    planted = _plant_chunk(run, marker)
    os.chown(planted, NOBODY, NOBODY)  # in a run directory of the user's own
    assert _map(run) == [1, 2, 3, 4]  # its tasks ran again
    assert not marker.exists(), "a planted pickle ran"


@needs_root
@pytest.mark.parametrize("field", ["function_pickle", "items"])
def test_a_function_or_items_pickle_another_user_wrote_is_never_loaded(tmp_path, field):
    marker = tmp_path / "payload-ran"
    planted = tmp_path / "planted.pkl"
    planted.write_bytes(pickle.dumps(_Payload(marker)))
    os.chown(planted, NOBODY, NOBODY)
    model = {"kind": "python", "function_pickle": str(planted)} if field == "function_pickle" else \
        {"kind": "python", "function": "builtins:abs", "items": str(planted), "result": "object"}
    spec = {"name": "planted", "data": {"source": "none"}, "model": model, "plan": {"replicate": {"n": 2}},
            "backend": {"name": "local", "workers": 1}}
    try:  # refused by the driver's checks (function), or by each task (items: loaded by workers only)
        res = hpcml.run(spec, out=tmp_path / "run", progress=False)
        assert res.n_failed == 2
        said = res.failures()["error"].iloc[0]
    except SpecError as err:
        said = str(err)
    assert not marker.exists(), "a planted pickle ran"
    assert "uid 65534" in said and f"model.{field}" in said, said
