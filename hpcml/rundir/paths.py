"""What hpcml may do with an output path: write a run there, and delete only its own runs.

``--overwrite`` deletes a directory only when it holds an hpcml run (its ``spec.json``) and is
neither the working directory, nor one of its parents, nor the home directory. A directory
holding anything else is never touched, whatever the flags.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from hpcml.errors import SpecError

# Written by hpcml; a directory holding only these is an empty (or abandoned) run.
RUN_FILES = frozenset({"spec.json", "versions.json", "data.json", "chunks", "logs", "artifacts", "results.parquet",
                       "summary.json", "plots", "report.html", "sessions.json", "damaged", "submit",
                       "running", ".hpcml.lock"})
SYSTEM_ROOTS = ("/proc", "/sys", "/dev")


def task_folder(task_id: str) -> str:
    """Where a task's files go (its artifacts), relative to the run directory."""
    return f"artifacts/{task_id.replace('/', '-')}"


def check_output(path: Path) -> None:
    """Bad output paths, before anything is written."""
    text = str(path)
    if "\x00" in text:
        raise SpecError.one("output", text, "a path cannot contain a NUL byte")
    if any(len(part.encode()) > 255 for part in path.parts):
        raise SpecError.one("output", text, "a path component is longer than 255 bytes")
    resolved = path.resolve()
    if any(resolved == Path(r) or Path(r) in resolved.parents for r in SYSTEM_ROOTS):
        raise SpecError.one("output", text, "is under a system directory; choose a directory of your own")
    if path.exists() and not path.is_dir():
        raise SpecError.one("output", text, "exists and is not a directory; choose another --out")


def _is_run_file(name: str) -> bool:
    """One of a run's own entries, or the temporary file of one left by a crash mid-write
    (``.<name>.<random>.tmp``, see ``store.atomic_write_bytes``)."""
    if name in RUN_FILES:
        return True
    return name.endswith(".tmp") and any(name.startswith(f".{f}.") for f in RUN_FILES)


def check_no_links(path: Path) -> None:
    """A run directory's own entries are never symbolic links: writing through one (chunks,
    artifacts, plots, logs) would write out of the run directory, wherever the link points."""
    if not path.is_dir():
        return
    link = next((path / name for name in sorted(RUN_FILES) if (path / name).is_symlink()), None)
    if link is not None:
        raise SpecError.one("output", str(link), "is a symbolic link; hpcml never writes through one out of a "
                            "run directory: remove it, or choose another --out")


def foreign_entries(path: Path) -> list[str]:
    """Entries of ``path`` that hpcml did not write."""
    if not path.is_dir():
        return []
    return sorted(e.name for e in path.iterdir() if not _is_run_file(e.name))


def holds_orphan_run(path: Path) -> bool:
    """Whether ``path`` holds a run's results but no ``spec.json`` (lost or deleted): nothing
    says which spec and data made them, so they can be neither resumed nor deleted."""
    if not path.is_dir() or (path / "spec.json").exists():
        return False
    chunks = path / "chunks"
    return (path / "results.parquet").exists() or (path / "summary.json").exists() or \
        (chunks.is_dir() and any(chunks.iterdir()))


def check_deletable(path: Path) -> None:
    """Refuse to delete anything but an hpcml run that is not above or at where we stand."""
    resolved = path.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise SpecError.one("output", str(path), "is the working directory or one of its parents; "
                            "hpcml never deletes it: choose a run directory below it")
    if resolved == Path.home().resolve() or resolved == Path(resolved.anchor):
        raise SpecError.one("output", str(path), "is the home or root directory; hpcml never deletes it")
    if not (path / "spec.json").is_file():
        raise SpecError.one("output", str(path), "does not hold an hpcml run (no spec.json); hpcml never deletes it")
    if foreign_entries(path):
        raise SpecError.one("output", str(path), f"holds files hpcml did not write ({', '.join(foreign_entries(path)[:3])}"
                            "); hpcml never deletes them: move them, or choose another --out")


def clear_run(path: Path, keep: str) -> None:
    """Delete an hpcml run's contents (after ``check_deletable``), keeping the entry ``keep`` (the lock)."""
    check_deletable(path)
    for entry in path.iterdir():
        if entry.name == keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def remove_new_run(path: Path) -> None:
    """Undo a run directory this process just created (bad input found after ``prepare``)."""
    try:
        check_deletable(path)
    except SpecError:
        return
    shutil.rmtree(path, ignore_errors=True)
