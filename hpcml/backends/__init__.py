"""Backends by name, imported only when used (their extras may be absent).

A backend is one :class:`~hpcml.backends.base.Backend` subclass; built-in ones are listed in
``_BACKENDS`` (module, class, extra), others are added with :func:`register_backend`.
"""
from __future__ import annotations

import importlib
from typing import Any

from hpcml.errors import SpecError

_BACKENDS: dict[str, tuple[str, str, str | None]] = {
    "local": ("hpcml.backends.local", "LocalBackend", None),
    "dask": ("hpcml.backends.dask", "DaskBackend", "dask"),
    "mpi": ("hpcml.backends.mpi.backend", "MPIBackend", "mpi"),
    "spark": ("hpcml.backends.spark", "SparkBackend", "spark"),
}
_REGISTERED: dict[str, type] = {}


def register_backend(cls: type) -> type:
    """Make a Backend subclass available as ``backend: {name: <cls.name>}`` (usable as a decorator)."""
    _REGISTERED[cls.name] = cls
    return cls


def backend_names() -> list[str]:
    return [*_BACKENDS, *(n for n in _REGISTERED if n not in _BACKENDS)]


def get_backend_class(name: str):
    """The backend's class; a missing optional dependency is bad input naming the extra."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    module, cls, _ = _BACKENDS[name]
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError as err:
        raise missing_extra(name, err) from None


def make_backend(name: str, workers: int | None, options: dict[str, Any] | None):
    if name not in backend_names():
        raise SpecError.one("backend.name", name, f"unknown backend; choose one of {', '.join(backend_names())}")
    return get_backend_class(name)(workers=workers, options=options)


def missing_extra(name: str, err: ImportError) -> SpecError:
    extra = _BACKENDS[name][2]
    return SpecError.one("backend.name", name, f"needs the '{extra}' extra: pip install 'hpcml[{extra}]' ({err})")
