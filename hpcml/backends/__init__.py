"""Backends by name, imported only when used (their extras may be absent)."""
from __future__ import annotations

import importlib
from typing import Any

from hpcml.errors import SpecError

_BACKENDS = {
    "local": ("hpcml.backends.local", "LocalBackend", None),
    "dask": ("hpcml.backends.dask", "DaskBackend", "dask"),
    "mpi": ("hpcml.backends.mpi", "MPIBackend", "mpi"),
    "spark": ("hpcml.backends.spark", "SparkBackend", "spark"),
}


def backend_names() -> list[str]:
    return [name for name, (module, _, _) in _BACKENDS.items() if importlib.util.find_spec(module) is not None]


def get_backend_class(name: str):
    module, cls, _ = _BACKENDS[name]
    return getattr(importlib.import_module(module), cls)


def make_backend(name: str, workers: int | None, options: dict[str, Any] | None):
    if name not in backend_names():
        raise SpecError.one("backend.name", name, f"unknown backend; choose one of {', '.join(backend_names())}")
    return get_backend_class(name)(workers=workers, options=options)


def missing_extra(name: str, err: ImportError) -> SpecError:
    extra = _BACKENDS[name][2]
    return SpecError.one("backend.name", name, f"needs the '{extra}' extra: pip install 'hpcml[{extra}]' ({err})")
