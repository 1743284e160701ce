"""Installed versions of packages, as ``importlib.metadata.version`` gives them, read from the
headers of each distribution's metadata only: parsing the whole file (a long description
included), as ``importlib.metadata`` does, took most of the time of recording a run's
``versions.json`` and of a worker's check against it."""
from __future__ import annotations


def version_of(package: str) -> str | None:
    """``package``'s installed version, None when it is not installed."""
    import importlib.metadata as md  # with the first version asked for: a map's first call asks none

    try:
        dist = md.distribution(package)
    except md.PackageNotFoundError:
        return None
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    for line in text.splitlines():
        if not line:  # the headers end at the first empty line
            break
        if line.startswith("Version:"):
            return line[len("Version:"):].strip()
    return dist.version  # metadata laid out otherwise: importlib's own reading
