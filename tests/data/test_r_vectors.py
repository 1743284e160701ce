"""Large R vectors once per machine (hpcml.data.r_vectors): the file of a vector's values,
written once, named by its content, read-only, and removed after a loop unless another session
holds it. The R side (mapping the file in each worker) is tested in tests/r/test_r_shared.py and
R/tests/testthat/test-shared.R."""
from __future__ import annotations

import fcntl
import hashlib
import os
import stat

import numpy as np
import pytest

from hpcml.data import r_vectors

pytestmark = pytest.mark.skipif(os.name != "posix", reason="R vectors are mapped on POSIX systems")


@pytest.fixture
def map_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCML_MAP_DIR", str(tmp_path / "mapped"))
    monkeypatch.setenv("HPCML_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "mapped"


def _address(a: np.ndarray) -> str:
    return hex(a.ctypes.data)


def test_a_vector_is_written_once_named_by_its_content_and_read_only(map_dir):
    a = np.random.default_rng(0).normal(size=100_000)
    path = r_vectors.publish(_address(a), a.nbytes)
    assert path == str(map_dir / f"r-{hashlib.sha256(a.tobytes()).hexdigest()}.bin")
    assert np.array_equal(np.fromfile(path), a)
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o400
    # The same content again (another copy of it): the same file, not written again.
    copy = a.copy()  # alive during the call, as the R session's vector is
    again = r_vectors.publish(_address(copy), copy.nbytes)
    assert again == path and os.stat(path).st_ino == st.st_ino
    assert not [p for p in map_dir.iterdir() if p.name.endswith(".tmp")]
    # Other content: another file.
    b = a.copy()
    b[7] += 1
    assert r_vectors.publish(_address(b), b.nbytes) != path
    r_vectors.release([path], remove=True)
    assert not os.path.exists(path)


def test_a_file_another_session_holds_is_not_removed(map_dir):
    a = np.arange(50_000, dtype=np.float64)
    path = r_vectors.publish(_address(a), a.nbytes)
    other = os.open(path, os.O_RDONLY)  # another session's hold: its own shared lock
    fcntl.flock(other, fcntl.LOCK_SH)
    try:
        r_vectors.release([path], remove=True)
        assert os.path.exists(path)
    finally:
        os.close(other)
    # A kept run's file stays; the next session that uses the vector finds it.
    assert r_vectors.publish(_address(a), a.nbytes) == path
    r_vectors.release([path], remove=False)
    assert os.path.exists(path)


def test_a_wrong_file_under_the_name_is_replaced_by_the_right_content(map_dir):
    a = np.arange(10_000, dtype=np.float64)
    name = f"r-{hashlib.sha256(a.tobytes()).hexdigest()}.bin"
    map_dir.mkdir(mode=0o700)
    (map_dir / name).write_bytes(b"short")  # a size that is not the vector's: never used
    path = r_vectors.publish(_address(a), a.nbytes)
    assert path == str(map_dir / name) and np.array_equal(np.fromfile(path), a)


def test_no_directory_of_this_users_own_means_no_file(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    monkeypatch.setenv("HPCML_MAP_DIR", str(blocked / "mapped"))
    a = np.ones(1000)
    assert r_vectors.publish(_address(a), a.nbytes) is None
