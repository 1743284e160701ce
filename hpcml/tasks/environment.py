"""The Python of a worker against the driver's: the packages that decide the numbers.

A compute node whose ``python`` has another numpy (or hpcml, scipy, ...) than the driver's
would give other numbers, or fail in confusing ways. The driver records its versions in the
run directory (``versions.json``); a worker compares its own with them before its first
chunk (once per process and run directory), and a Dask backend asks every worker as it
starts. A difference stops the run in one line naming the node, the package and both versions.
"""
from __future__ import annotations

import functools
import json
import os
import socket
import sys

from hpcml.versions import version_of

# The packages whose version may change a task's numbers (torch for the cnn kind only).
NUMBERS = ("hpcml", "numpy", "scipy", "scikit-learn", "pandas", "pyarrow")
FIELD = "backend.python"


def packages_for(model_kind: str | None) -> tuple[str, ...]:
    return NUMBERS + ("torch",) if model_kind == "cnn" else NUMBERS


def installed(package: str) -> str | None:
    """This process's version of ``package`` (hpcml: the one imported), None when missing."""
    if package == "hpcml":
        import hpcml  # the package this module belongs to: imported by the time this runs

        return hpcml.__version__
    return version_of(package)


def own_versions(packages: tuple[str, ...] = NUMBERS) -> dict[str, str | None]:
    """This process's versions of ``packages``, with its host and interpreter (what a Dask
    backend asks each worker as it starts)."""
    return {"host": socket.gethostname(), "python": sys.executable,
            "versions": {p: installed(p) for p in packages}}


def difference(driver: dict[str, str | None], worker: dict[str, str | None], node: str,
               packages: tuple[str, ...]) -> str | None:
    """The one-line reason a worker on ``node`` must not run the driver's tasks, or None."""
    for package in packages:
        want, have = driver.get(package), worker.get(package)
        if want != have:
            return (f"node {node} has {package} {have or 'not installed'}, the driver {want or 'not installed'}: "
                    "the numbers could differ; give the nodes the driver's environment "
                    "(backend.python, job_script_prologue)")
    return None


def model_kind(job_json: str) -> str | None:
    try:
        return json.loads(job_json)["model"]["kind"]
    except (ValueError, KeyError, TypeError):
        return None


@functools.lru_cache(maxsize=16)
def _against_run(run_dir: str, kind: str | None) -> tuple[str, str, str] | None:
    try:
        with open(os.path.join(run_dir, "versions.json")) as f:
            recorded = json.load(f)
    except (OSError, ValueError):
        return None  # a run directory of an older hpcml: nothing to compare with
    packages = packages_for(kind)
    mine = {p: installed(p) for p in packages}
    why = difference({p: recorded.get(p) for p in packages}, mine, socket.gethostname(), packages)
    return None if why is None else (FIELD, sys.executable, why)


def against_run(run_dir: str, job_json: str) -> tuple[str, str, str] | None:
    """(field, value, why) when this process's versions differ from those the driver recorded in
    ``run_dir``; once per process, run directory and model kind."""
    return _against_run(run_dir, model_kind(job_json))
