"""Opening a run directory (``rundir/opening.py``), the one way every driver takes one: the
lock is released on every exit, and a directory this call created is removed again when the
run fails before any task could have run (bad input, a backend that never started)."""
from __future__ import annotations

from typing import Iterable

import pytest

import hpcml
from hpcml.backends import _REGISTERED
from hpcml.backends.base import Backend
from hpcml.errors import SpecError
from hpcml.rundir.lock import LOCK_NAME
from hpcml.rundir.opening import open_run, prepared_run
from hpcml.spec import load_job

from conftest import small_spec


def _job(tmp_path, **over):
    return load_job(small_spec(tmp_path, plan={"bootstrap": {"replicates": 4}},
                               backend={"name": "local", "workers": 1}, **over))


@pytest.mark.parametrize("error", [SpecError.one("data", 1, "bad"), RuntimeError("no cluster"), KeyboardInterrupt()],
                         ids=["bad-input", "crash", "ctrl-c"])
def test_a_new_run_that_fails_before_any_task_leaves_no_directory(tmp_path, error):
    job = _job(tmp_path)
    with pytest.raises(type(error)):
        with open_run(job) as run:
            assert run.fresh and (run.store.path / LOCK_NAME).exists()
            raise error
    assert not job.output.exists()


def test_a_run_whose_tasks_started_is_kept_and_unlocked_on_every_exit(tmp_path):
    job = _job(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        with open_run(job) as run:
            run.keep()
            raise KeyboardInterrupt
    assert (job.output / "spec.json").exists() and not (job.output / LOCK_NAME).exists()


def test_a_resumed_run_that_fails_early_is_kept_and_unlocked(tmp_path):
    job = _job(tmp_path)
    with open_run(job):
        pass
    with pytest.raises(SpecError):
        with open_run(job, resume=True) as run:
            assert not run.fresh
            raise SpecError.one("data", 1, "bad")
    assert (job.output / "spec.json").exists() and not (job.output / LOCK_NAME).exists()
    with open_run(job, resume=True):  # nobody holds it
        pass


def test_a_refused_opening_changes_nothing(tmp_path):
    job = _job(tmp_path)
    with open_run(job):
        pass
    before = sorted(p.name for p in job.output.iterdir())
    with pytest.raises(SpecError, match="holds an hpcml run"):
        with open_run(job):
            pytest.fail("opened a run that was there already")
    assert sorted(p.name for p in job.output.iterdir()) == before


def test_an_array_element_takes_the_prepared_run_without_its_lock(tmp_path):
    job = _job(tmp_path)
    with pytest.raises(SpecError, match="no prepared run directory"):
        prepared_run(job)
    with open_run(job):
        assert prepared_run(job).path == job.output.resolve()  # while another process holds the lock


class _NeverStarts(Backend):
    name = "t-never-starts"

    def start(self, job_json, log_dir):
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / "backend.log").write_text("starting\n")
        raise RuntimeError("the cluster did not come up")

    def run(self, orders: Iterable):
        raise AssertionError("never started")


def test_a_backend_that_cannot_start_leaves_no_new_run_directory(tmp_path, monkeypatch):
    monkeypatch.setitem(_REGISTERED, _NeverStarts.name, _NeverStarts)
    spec = small_spec(tmp_path, backend={"name": _NeverStarts.name, "workers": 1})
    with pytest.raises(RuntimeError, match="did not come up"):
        hpcml.run(spec, progress=False)
    assert not (tmp_path / "run").exists()
    # A resumed run stays (its finished tasks are kept), unlocked.
    hpcml.run(spec, backend="local", chunk_size=10, progress=False, plots=False)
    chunks = sorted((tmp_path / "run" / "chunks").iterdir())
    chunks[0].unlink()  # ten tasks to run again
    with pytest.raises(RuntimeError, match="did not come up"):
        hpcml.run(spec, resume=True, progress=False)
    assert sorted((tmp_path / "run" / "chunks").iterdir()) == chunks[1:]
    assert not (tmp_path / "run" / LOCK_NAME).exists()
