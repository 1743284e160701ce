"""The one way a driver opens a run directory, and closes it on every exit.

``open_run`` takes the lock and prepares the directory (or checks the run it resumes); on the
way out it releases the lock, whatever ended the block (an error, Ctrl-C). A directory this
call created is removed again when the block fails before any task could have run (bad input
found after the preparation, a backend that never started): bad input leaves no run directory.
From ``run.keep()`` on (tasks are about to run, or batch jobs were handed the directory) it is
kept whatever happens, so ``--resume`` finds what finished (unless a worker reported that it
cannot see the directory before any chunk was written).
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from hpcml.errors import NotShared, SpecError
from hpcml.rundir.paths import remove_new_run
from hpcml.rundir.store import RunStore


class OpenRun:
    """A run directory this process holds: its ``store``; ``fresh`` when this call made it."""

    def __init__(self, store: RunStore, fresh: bool):
        self.store, self.fresh = store, fresh
        self.kept = not fresh

    def keep(self) -> None:
        """Tasks may run from here on: the directory stays, whatever happens next."""
        self.kept = True


@contextmanager
def open_run(job, *, resume: bool = False, overwrite: bool = False, path: str | Path | None = None) -> Iterator[OpenRun]:
    """Lock and prepare (or resume) ``path`` (default ``job.output``) for ``job``; see the module."""
    store = RunStore(job.output if path is None else path)
    fresh = not (resume and store.exists())
    store.prepare(job, resume=resume, overwrite=overwrite)
    run = OpenRun(store, fresh)
    try:
        yield run
    except BaseException as err:
        # A worker that does not see the directory (or the data) stops the run before any task
        # of it was kept: a directory made for it alone goes, as for any other bad input.
        unshared = isinstance(err, NotShared) and run.fresh and not store.chunk_files()
        if not run.kept or unshared:
            store.release()
            remove_new_run(store.path)
        raise
    finally:
        store.release()


def prepared_run(job) -> RunStore:
    """The run directory ``hpcml submit`` prepared for ``job``, taken without its lock: the
    elements of a job array write their own chunk files into it side by side."""
    store = RunStore(job.output.resolve())
    if not store.exists():
        raise SpecError.one("output", str(job.output), "no prepared run directory here (hpcml submit creates it)")
    return store
