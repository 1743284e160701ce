"""Directories other users can write: a shared map directory, cached copies of private data.

Run as root (as the test machine does), a file can be given to another user (uid 65534) with
``os.chown``: what another user planted is never read, and a pickle in it never runs.
"""
from __future__ import annotations

import json
import os
import pickle
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hpcml
from hpcml.data.mapped import dataset_key
from hpcml.data.sources import full_load
from hpcml.spec import DataSpec
from tests.conftest import linear_frame

NOBODY = 65534
FEATURES = ["x0", "x1", "x2"]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")


class _Payload:
    """A pickle that touches ``marker`` when loaded, then returns the attacker's description."""

    def __init__(self, marker: Path, info: dict):
        self.marker, self.info = marker, info

    def __reduce__(self):
        code = f"__import__('pathlib').Path({str(self.marker)!r}).touch() or {self.info!r}"
        return (eval, (code,))


def _chown_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        os.chown(dirpath, NOBODY, NOBODY)
        for f in files:
            os.chown(Path(dirpath, f), NOBODY, NOBODY)


def _plant(entry: Path, marker: Path, n: int) -> None:
    """Another user's entry: other numbers, a pickle that runs code, and a JSON description
    that passes every check but the owner's."""
    entry.mkdir(parents=True)
    X = np.full((n, len(FEATURES)), 7.0)
    np.save(entry / "X.npy", X)
    np.save(entry / "y.npy", np.ones(n))
    info = {"features": FEATURES, "target": "y", "image_shape": None, "classes": None, "meta": {}}
    (entry / "dataset.pkl").write_bytes(pickle.dumps(_Payload(marker, info)))
    import hashlib

    check = {"key": entry.name, "x_bytes": (entry / "X.npy").stat().st_size,
             "y_sha256": hashlib.sha256((entry / "y.npy").read_bytes()).hexdigest()}
    (entry / "dataset.json").write_text(json.dumps({**info, "check": check}))
    _chown_tree(entry)


@pytest.fixture
def shared_map(tmp_path, monkeypatch):
    """A site's map directory all may write (mode 1777), small data shared, and a data file."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    monkeypatch.setenv("HPCML_MAP_DIR", str(shared))
    monkeypatch.setenv("HPCML_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HPCML_MAP_MIN_BYTES", "0")
    path = tmp_path / "d.parquet"
    linear_frame(300, FEATURES).to_parquet(path)
    return shared, path


@needs_root
@pytest.mark.parametrize("where", ["root", "user-dir"])
def test_an_entry_planted_in_a_shared_map_dir_is_never_read(tmp_path, shared_map, where):
    shared, path = shared_map
    spec = DataSpec(source=str(path), target="y")
    key = dataset_key(spec, None, True)  # computable by anyone who can read the data
    marker = tmp_path / "payload-ran"
    target = shared if where == "root" else shared / f"user-{os.geteuid()}"
    _plant(target / key, marker, 300)
    if where == "user-dir":
        os.chown(target, NOBODY, NOBODY)
    data = full_load(spec, None, True, keep=False)
    frame = pd.read_parquet(path)
    assert not marker.exists(), "a planted pickle ran"
    assert np.asarray(data.X).tobytes() == frame[FEATURES].to_numpy(dtype=np.float64).tobytes()
    # a whole run fits the real data too
    job = {"name": "planted", "data": {"source": str(path), "target": "y"}, "model": {"kind": "ols"},
           "plan": {"fit": {}}, "backend": {"name": "local", "workers": 1}}
    res = hpcml.run(job, out=tmp_path / "run", progress=False)
    coef = np.linalg.lstsq(np.column_stack([np.ones(300), frame[FEATURES]]), frame["y"], rcond=None)[0]
    got = res.results.iloc[0]
    assert not marker.exists()
    assert np.allclose([got["coef_(Intercept)"], *[got[f"coef_{f}"] for f in FEATURES]], coef, rtol=1e-10)


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]}


def test_cached_copies_are_as_private_as_their_source(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCML_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("HPCML_MAP_DIR", raising=False)
    monkeypatch.setenv("HPCML_MAP_MIN_BYTES", "0")
    monkeypatch.setattr(os, "umask", os.umask)  # restored below either way
    old = os.umask(0o022)
    try:
        path = tmp_path / "secret.csv"
        linear_frame(200, FEATURES).to_csv(path, index=False)
        path.chmod(0o600)
        data = full_load(DataSpec(source=str(path), target="y"), None, True, keep=False)
        assert isinstance(data.X, np.memmap)  # a mapped copy was written
        from hpcml.data.frames import frame_source

        frame_source(linear_frame(50, FEATURES))
    finally:
        os.umask(old)
    modes = _modes(tmp_path / "cache")
    assert any(name.endswith("X.npy") for name in modes) and any(name.endswith(".parquet") for name in modes)
    loose = {name: oct(mode) for name, mode in modes.items() if mode & 0o077}
    assert not loose, f"cached copies of a 0600 file readable by others: {loose}"


@pytest.mark.parametrize("built", [False, True], ids=["next build", "entry already built"])
def test_a_builder_that_died_leaves_no_temporary_directory_for_good(tmp_path, monkeypatch, built):
    """A node that crashed while it wrote the shared copy leaves ``<key>.<pid>.<id>.tmp`` in the
    map directory; the next process that builds the key, or maps it while no build is at
    work, removes it. The data read are the file's."""
    monkeypatch.setenv("HPCML_MAP_DIR", str(tmp_path / "map"))
    monkeypatch.setenv("HPCML_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HPCML_MAP_MIN_BYTES", "0")
    path = tmp_path / "d.parquet"
    linear_frame(300, FEATURES).to_parquet(path)
    spec = DataSpec(source=str(path), target="y")
    if built:
        full_load(spec, None, True, keep=False)
    root = tmp_path / "map" / f"user-{os.geteuid()}" if (tmp_path / "map" / f"user-{os.geteuid()}").exists() \
        else tmp_path / "map"
    key = dataset_key(spec, None, True)
    root.mkdir(parents=True, exist_ok=True)
    left = root / f"{key}.4242.deadbeef.tmp"
    left.mkdir()
    (left / "X.npy").write_bytes(b"\0" * 1_000_000)
    data = full_load(spec, None, True, keep=False)
    assert not left.exists()
    assert np.asarray(data.X).tobytes() == pd.read_parquet(path)[FEATURES].to_numpy(dtype=np.float64).tobytes()
    assert [p.name for p in root.iterdir() if p.name.endswith(".tmp")] == []
