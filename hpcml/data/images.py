"""Image data sources: IDX files (MNIST / Fashion-MNIST layout) as a ``Dataset``.

The IDX format is a 4-byte magic (0, 0, dtype code, ndim), ndim big-endian uint32 dims,
then the array in big-endian C order. We check every part of that header against the file
length, so a truncated download fails loudly instead of training on garbage.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hpcml.models.base import Dataset

# IDX dtype codes -> big-endian numpy dtypes.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder(">").str: code for code, dt in IDX_DTYPES.items()}

# Standard file stems of the MNIST family; each may be gzipped or raw.
IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _read_bytes(path: Path) -> bytes:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as e:  # gzip truncation/corruption surfaces as these
        raise ValueError(f"{path}: cannot read ({e})") from e


def read_idx(path: str | os.PathLike, limit: int | None = None) -> np.ndarray:
    """Read one IDX file (``.gz`` or raw) into a native-endian array, validating the header.
    ``limit``: only the first ``limit`` entries (along the first axis); see :func:`read_idx_head`."""
    if limit is not None:
        return read_idx_head(path, limit)[0]
    return _read_whole(Path(path))


def read_idx_head(path: str | os.PathLike, limit: int | None) -> tuple[np.ndarray, int]:
    """The first ``limit`` entries of an IDX file (all with ``None``) and how many it holds.

    With a limit only the bytes those entries need are read (a gzipped file is decompressed no
    further), after the file's length is checked against its header: a raw file's size, a
    gzipped file's uncompressed size as its trailer records it. A file that fails either check,
    or cannot be read that far, is read whole, which says what is wrong in the same words as
    without a limit. (A gzipped file damaged only beyond the entries used is not noticed.)"""
    path = Path(path)
    head = None if limit is None or limit < 0 else _read_head(path, int(limit))
    if head is not None:
        return head
    arr = _read_whole(path)
    return (arr if limit is None else arr[:limit]), arr.shape[0]


def _stored_size(path: Path, gzipped: bool) -> int:
    """A raw file's size; a gzipped file's uncompressed size mod 2**32 (its trailer's ISIZE)."""
    if not gzipped:
        return path.stat().st_size
    with open(path, "rb") as f:
        f.seek(-4, os.SEEK_END)
        return int.from_bytes(f.read(4), "little")


def _read_head(path: Path, limit: int) -> tuple[np.ndarray, int] | None:
    """The fast way of :func:`read_idx_head`, or None where it cannot vouch for the file."""
    gzipped = path.suffix == ".gz"
    try:
        size = _stored_size(path, gzipped)
        with (gzip.open if gzipped else open)(path, "rb") as f:
            magic = f.read(4)
            if len(magic) < 4 or magic[0] or magic[1] or magic[2] not in IDX_DTYPES or not magic[3]:
                return None
            ndim, dtype = magic[3], IDX_DTYPES[magic[2]]
            raw_dims = f.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                return None
            dims = tuple(int(d) for d in np.frombuffer(raw_dims, dtype=">u4"))
            expected = 4 + 4 * ndim + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
            if size != (expected % 2 ** 32 if gzipped else expected):
                return None
            n = min(limit, dims[0])
            row = int(np.prod(dims[1:], dtype=np.int64)) * dtype.itemsize
            body = f.read(n * row)
    except (OSError, EOFError, ValueError):  # unreadable, corrupt or too short: the whole read says which
        return None
    if len(body) != n * row:
        return None
    arr = np.frombuffer(body, dtype=dtype).reshape((n,) + dims[1:])
    return arr.astype(dtype.newbyteorder("=")), dims[0]


def _read_whole(path: Path) -> np.ndarray:
    buf = _read_bytes(path)
    if len(buf) < 4:
        raise ValueError(f"{path}: too short for an IDX header ({len(buf)} bytes)")
    if buf[0] != 0 or buf[1] != 0:
        raise ValueError(f"{path}: bad magic number {buf[:4].hex()} (expected 0000xxyy)")
    code, ndim = buf[2], buf[3]
    if code not in IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX dtype code 0x{code:02x}")
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise ValueError(f"{path}: truncated header ({len(buf)} bytes, need {header} for {ndim} dims)")
    dims = tuple(int(d) for d in np.frombuffer(buf, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(buf) != expected:
        what = "truncated" if len(buf) < expected else "trailing bytes"
        raise ValueError(f"{path}: {what}: {len(buf)} bytes, dims {dims} x {dtype.itemsize} B need {expected}")
    arr = np.frombuffer(buf, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file (gzipped when the name ends in ``.gz``)."""
    path = Path(path)
    arr = np.asarray(array)
    code = _CODES.get(arr.dtype.newbyteorder(">").str)
    if code is None:
        raise ValueError(f"{path}: dtype {arr.dtype} has no IDX code")
    head = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    data = head + np.ascontiguousarray(arr, dtype=IDX_DTYPES[code]).tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(data)
    return path


def _find(directory: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"{directory}: neither {stem}.gz nor {stem} found")


def load_idx_dataset(directory: str | os.PathLike, kind: str = "train", limit: int | None = None) -> Dataset:
    """Images and labels of one split (``train`` or ``t10k``) as a Dataset.

    X is float64 (n, h*w) scaled to [0, 1]; ``image_shape`` is (1, h, w); classes 0..9.
    """
    if kind not in IDX_NAMES:
        raise ValueError(f"kind must be one of {sorted(IDX_NAMES)}, got {kind!r}")
    directory = Path(directory)
    img_path, lab_path = (_find(directory, s) for s in IDX_NAMES[kind])
    # Only the first ``limit`` images are read (the files' lengths are still checked).
    (images, n_images), (labels, n_labels) = read_idx_head(img_path, limit), read_idx_head(lab_path, limit)
    if images.ndim != 3:
        raise ValueError(f"{img_path}: expected 3 dims (n, rows, cols), got {(n_images,) + images.shape[1:]}")
    if labels.ndim != 1 or n_labels != n_images:
        raise ValueError(f"{lab_path}: {n_labels} labels for {n_images} images in {img_path.name}")
    n, h, w = images.shape
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    X = np.ascontiguousarray(images.reshape(n, h * w), dtype=np.float64) / scale
    return Dataset(
        X=X,
        y=labels.astype(np.int64),
        features=[f"px{i}" for i in range(h * w)],
        target="label",
        image_shape=(1, h, w),
        classes=list(range(10)),
        meta={"source": f"idx:{directory}", "split": kind, "files": [str(img_path), str(lab_path)]},
    )


def _opt(options: Any, key: str) -> Any:
    if options is None:
        return None
    if isinstance(options, Mapping):
        return options.get(key)
    return getattr(options, key, None)


# Class names of the known IDX sets, by label. Fashion-MNIST's are those of its README.
CLASS_NAMES: dict[str, list[str]] = {
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"],
    "mnist": [str(i) for i in range(10)],
}


def class_names(directory: Path, option: Any) -> list[str] | None:
    """``class_names`` from the options (a list, or a known set's name), else Fashion-MNIST's
    when the directory's name says so (``/usr/share/datasets/fashion-mnist``), else None."""
    if isinstance(option, str):
        if option not in CLASS_NAMES:
            raise ValueError(f"class_names: unknown set {option!r}; give a list or one of {sorted(CLASS_NAMES)}")
        return CLASS_NAMES[option]
    if option is not None:
        return [str(c) for c in option]
    return CLASS_NAMES["fashion-mnist"] if "fashion" in directory.resolve().name.lower() else None


def load_image_source(source: str, options: Any = None) -> Dataset:
    """``idx:<dir>`` -> train split as X/y with the t10k split as ``.test``.

    ``options`` (mapping or object) may carry ``limit`` (first N train rows), ``test_limit``
    and ``class_names`` (``meta["class_names"]``: labels of the confusion matrix).
    ``sklearn:digits`` is handled by the core data loaders.
    """
    scheme, _, rest = source.partition(":")
    if scheme != "idx" or not rest:
        raise ValueError(f"unsupported image source {source!r} (expected idx:<directory>)")
    directory = Path(rest).expanduser()
    data = load_idx_dataset(directory, "train", limit=_opt(options, "limit"))
    try:
        data.test = load_idx_dataset(directory, "t10k", limit=_opt(options, "test_limit"))
    except FileNotFoundError:
        data.test = None  # a train-only directory is still usable
    names = class_names(directory, _opt(options, "class_names"))
    if names is not None:
        if len(names) != len(data.classes):
            raise ValueError(f"class_names: {len(names)} names for {len(data.classes)} classes")
        data.meta["class_names"] = names
    return data


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_with_checksum(url: str, dest: str | os.PathLike, sha256: str, timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``dest`` unless it is already there with the right SHA-256.

    Downloads into a temp file in dest's directory and renames only after the checksum
    matches, so a partial or tampered file never appears under ``dest``.
    """
    dest = Path(dest)
    want = sha256.lower()
    if dest.is_file() and sha256_file(dest) == want:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            shutil.copyfileobj(resp, out)
        got = sha256_file(tmp)
        if got != want:
            raise ValueError(f"{url}: checksum mismatch for {dest.name}: got sha256 {got}, expected {want}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest
