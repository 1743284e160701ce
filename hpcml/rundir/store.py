"""The run directory: the one place results live.

    run_dir/spec.json        the resolved job (provenance; resume checks it)
    run_dir/versions.json    library versions and host
    run_dir/chunks/*.parquet one file per finished chunk, written atomically
    run_dir/artifacts/<task> files a task wrote (checkpoints, plots)
    run_dir/results.parquet  one row per task, consolidated from the chunk files
    run_dir/summary.json     the plan's summary; run_dir/plots/*.png
    run_dir/report.html      all of it on one page (``report/html.py``)
    run_dir/sessions.json    when each run or resume of the directory began

A chunk file exists only once complete (temp file + fsync + rename), so its presence is the
proof the work is done: any process (a worker, an MPI rank) may write one without a
coordinator, and ``--resume`` reruns exactly the tasks with no ``ok`` record.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import platform
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:  # pandas and pyarrow are imported where a table is read or written, not with Chunk
    import pandas as pd
    import pyarrow as pa

from hpcml.rundir import paths as rundir, records, running
from hpcml.rundir.running import SESSIONS
from hpcml.data.fingerprint import check_same_data, fingerprint
from hpcml.errors import SpecError
from hpcml.files import atomic_write_bytes, atomic_write_json, atomic_write_table, parquet_bytes
from hpcml.rundir.lock import LOCK_NAME, RunLock
from hpcml.trust import why_not_my_run_dir, written_by_me
from hpcml.versions import version_of

CHUNKS = "chunks"
RESULTS = "results.parquet"
DAMAGED = "damaged"  # chunk files that could not be read, kept for inspection
SUMMARY_STAMP = "results_mtime_ns"  # in summary.json's "run": the results.parquet it was made from
log = logging.getLogger("hpcml")


@dataclass(frozen=True)
class Chunk:
    """Tasks sent to a worker together and written as one chunk file (the unit of durability)."""

    indices: Sequence[int]  # a tuple, or a range of consecutive tasks

    @property
    def id(self) -> str:
        return f"{self.indices[0]:07d}-{self.indices[-1]:07d}"

    def __len__(self) -> int:
        return len(self.indices)


def write_chunk_records(run_dir: str | Path, chunk: Chunk, records: list[dict[str, Any]],
                        until: float | None = None) -> Path | None:
    """The chunk's file, or None if ``until`` (wall clock) passed before it could appear."""
    # A unique suffix: a rerun of failed tasks never overwrites the file holding their old
    # failure next to tasks that succeeded.
    path = Path(run_dir, CHUNKS, f"chunk-{chunk.id}-{uuid.uuid4().hex[:8]}.parquet")
    # pyarrow takes the columns from the first record only: a chunk that starts with a failure
    # record (no outputs) would drop the outputs of every ok record after it. Every record gets
    # every column (None where it has none).
    import pyarrow as pa  # a map's first call imports this module for Chunk; only a run directory needs Arrow

    columns = list(dict.fromkeys(key for record in records for key in record))
    table = pa.table({c: [r.get(c) for r in records] for c in columns})  # by column: 2-3x faster than by row
    return path if atomic_write_bytes(path, parquet_bytes(table), until) else None


# Fields a resumed run may change: where and how it runs, and where it is tracked.
NOT_IDENTITY = ("backend", "output", "retries", "timeout_s", "tracking")


def _identity(spec: dict) -> dict:
    """The part of a spec that decides the numbers (not where or how it runs; nor the row
    blocks of a fit over them, whose answer is the same bits for any block size)."""
    kept = {k: v for k, v in spec.items() if k not in NOT_IDENTITY}
    if isinstance(kept.get("data"), dict):
        kept["data"] = {k: v for k, v in kept["data"].items() if k != "block_rows"}
    return kept


class RunStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.lock = RunLock(self.path)

    @property
    def chunks_dir(self) -> Path:
        return self.path / CHUNKS

    @property
    def spec_path(self) -> Path:
        return self.path / "spec.json"

    @property
    def log_dir(self) -> Path:
        """Where backends and engines put their own logs."""
        return self.path / "logs"

    def exists(self) -> bool:
        return self.spec_path.exists()

    def read_spec(self) -> dict:
        """The run's spec.json, or one line saying it is missing or damaged."""
        try:
            spec = json.loads(self.spec_path.read_text())
        except FileNotFoundError:
            raise SpecError.one("run_dir", str(self.path), "not an hpcml run directory (no spec.json)") from None
        except (OSError, ValueError) as err:
            raise SpecError.one("run_dir", str(self.spec_path), f"spec.json is damaged ({type(err).__name__}); "
                                "this run cannot be resumed: start a new one with another --out") from None
        if not isinstance(spec, dict) or not {"name", "data", "model", "plan"} <= set(spec):
            raise SpecError.one("run_dir", str(self.spec_path), "spec.json is damaged (not a job spec); "
                                "this run cannot be resumed: start a new one with another --out")
        return spec

    def prepare(self, job, *, resume: bool, overwrite: bool = False) -> None:
        """Lock the run directory and create it, or check that a resumed one belongs to this
        spec and its data. ``overwrite`` deletes only an hpcml run (see ``rundir``)."""
        spec = json.loads(job.to_json())
        rundir.check_output(self.path)
        why = why_not_my_run_dir(self.path)
        if why is not None:  # its chunk files would be read back as this run's results
            raise SpecError.one("output", str(self.path), f"{why}; hpcml writes and resumes only a run directory "
                                "of your own: choose another --out")
        rundir.check_no_links(self.path)
        is_run = self.spec_path.exists()
        if rundir.holds_orphan_run(self.path):
            raise SpecError.one("output", str(self.path), "holds results of an hpcml run whose spec.json is gone, so "
                                "nothing says which spec and data made them; hpcml neither resumes nor deletes it: "
                                "remove it yourself or choose another --out")
        if not is_run and rundir.foreign_entries(self.path):
            raise SpecError.one("output", str(self.path), "exists and holds files that are not an hpcml run; "
                                "choose another --out (hpcml never deletes them)")
        if is_run and not (resume or overwrite):
            raise SpecError.one("output", str(self.path), "holds an hpcml run; pass --resume to continue it "
                                "or --overwrite to start over")
        if is_run and overwrite and not resume:
            rundir.check_deletable(self.path)
        self.lock.acquire()
        try:
            if is_run and resume:
                self._check_resume(job, spec)
            else:
                if is_run:
                    rundir.clear_run(self.path, keep=LOCK_NAME)
                self.chunks_dir.mkdir(parents=True, exist_ok=True)
                atomic_write_json(self.path / "data.json", fingerprint(job.spec.data.source))
            self.chunks_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.spec_path, spec)
            running.clear(self.path)  # markers of an earlier session: none of its chunks runs now
            self._note_session()
            atomic_write_json(self.path / "versions.json", versions())
        except BaseException:
            self.lock.release()
            raise

    def _check_resume(self, job, spec: dict) -> None:
        # The recorded spec read as this driver reads paths (a run recorded with relative paths),
        # both with every model parameter's default filled in: a resume that only spells out a
        # default (fit_intercept: true) is the same run.
        old = job.normalized(job.absolute_paths(self.read_spec()))
        spec = job.normalized(spec)
        source = job.spec.data.source
        if _identity(old) != _identity(spec):
            old_id, new_id = _identity(old), _identity(spec)
            changed = sorted(k for k in set(old_id) | set(new_id) if old_id.get(k) != new_id.get(k))
            raise SpecError.one("output", str(self.path), f"holds a run of a different spec (fields differ: {', '.join(changed)}); use another --out")
        data_file = self.path / "data.json"
        if data_file.exists():  # runs made before data fingerprints have none
            try:
                recorded = json.loads(data_file.read_text())
            except ValueError:
                raise SpecError.one("run_dir", str(data_file), "data.json is damaged; the run's data cannot be "
                                    "checked: start a new run with another --out") from None
            check_same_data(recorded, source)

    def release(self) -> None:
        """Let another process use the run directory (also done at exit)."""
        self.lock.release()

    def write_records(self, chunk: Chunk, records: list[dict[str, Any]]) -> None:
        """A chunk file of records that came back from a worker (or were made here)."""
        write_chunk_records(self.path, chunk, records)

    def chunk_files(self) -> list[Path]:
        """The run's chunk files: only those this user wrote (another user's file is never read
        back, as a result nor as a pickle; a warning names the first)."""
        if not self.chunks_dir.exists():
            return []
        files = sorted(self.chunks_dir.glob("chunk-*.parquet"))
        mine = [f for f in files if written_by_me(f)]
        if len(mine) != len(files):
            kept = set(mine)
            other = next(f for f in files if f not in kept)
            log.warning("ignored %d chunk file(s) not written by you (first: %s); their tasks run again",
                        len(files) - len(mine), other)
        return mine

    def _read_chunk(self, f: Path, columns: list[str] | None) -> pa.Table | None:
        """A chunk file's records, or None after setting a damaged file aside."""
        try:
            return records.read_chunk_table(f, columns)
        except FileNotFoundError:  # set aside by another reader this instant
            return None
        except Exception as err:
            self._set_aside(f, err)
            return None

    def _set_aside(self, f: Path, err: Exception) -> None:
        target = self.path / DAMAGED / f.name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, target)
        except FileNotFoundError:
            return
        log.warning("damaged chunk file set aside: %s (%s); its tasks will run again on --resume",
                    target, f"{type(err).__name__}: {err}".splitlines()[0][:160])

    def _read(self, columns: list[str] | None) -> tuple[pa.Table, np.ndarray, np.ndarray]:
        """Every chunk's records as one table; each file's row count and modification time."""
        parts, batch, rows, times = [], [], [], []
        for f in self.chunk_files():
            table = self._read_chunk(f, columns)
            if table is not None:
                batch.append(table)
                rows.append(table.num_rows)
                times.append(f.stat().st_mtime_ns)
            if len(batch) == 32:  # fewer, larger buffers: a million records take less memory
                parts.append(records.concat(batch).combine_chunks())
                batch = []
        parts += batch
        if not parts:
            return records.empty(), np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        return records.concat(parts), np.array(rows, dtype=np.int64), np.array(times, dtype=np.int64)

    def read_table(self, columns: list[str] | None = None) -> pa.Table:
        """Every record of every chunk file (a task retried has several), as Arrow."""
        return self._read(columns)[0]

    def read_records(self, columns: list[str] | None = None) -> pd.DataFrame:
        return self.read_table(columns).to_pandas()

    def latest_table(self, columns: list[str] | None = None) -> pa.Table:
        """One record per task, as Arrow: an ``ok`` record if any exists, else its latest failure.

        While a finished run's results.parquet holds exactly its chunk files, it is read
        instead of every chunk file.
        """
        need = None if columns is None else list(dict.fromkeys([*columns, "task_index", "status"]))
        table = self.consolidated(need)
        if table is None:
            table = records.tidy(records.latest(*self._read(need)))
        return table if columns is None else table.select([c for c in columns if c in table.column_names])

    def latest_records(self, columns: list[str] | None = None) -> pd.DataFrame:
        """One row per task: an ``ok`` record if any exists, else its latest failure.

        A run whose failures were all retried or resumed reads like a run without failures:
        no all-empty ``error``/``traceback`` columns, outputs in the type the tasks wrote.
        """
        return self.latest_table(columns).to_pandas()

    def completed(self) -> set[int]:
        return set(self.done_indices().tolist())

    def done_indices(self) -> np.ndarray:
        """The tasks with an ``ok`` record (sorted NumPy array; no Python object per task)."""
        return records.ok_indices(self.latest_table(["task_index", "status"]))

    def consolidated(self, columns: list[str] | None) -> pa.Table | None:
        """results.parquet, if it was consolidated from exactly the chunk files there are now
        (none added, none set aside since); else None."""
        import pyarrow as pa  # only a run directory's tables need Arrow (see write_chunk_records)
        import pyarrow.parquet as pq  # (as above)

        path = self.path / RESULTS
        if not written_by_me(path):
            return None
        try:
            meta = pq.read_schema(path).metadata or {}
            stamp = path.stat().st_mtime_ns
            files = self.chunk_files()
            if meta.get(records.CHUNK_COUNT_KEY) != str(len(files)).encode() or \
                    any(f.stat().st_mtime_ns >= stamp for f in files):
                return None
            return records.read_chunk_table(path, columns)
        except (OSError, ValueError, pa.ArrowException):
            return None

    def consolidate_table(self) -> pa.Table:
        """Write results.parquet from the chunk files (one row per task) and return it."""
        table, rows, times = self._read(None)
        table = records.tidy(records.latest(table, rows, times))
        meta = dict(table.schema.metadata or {})
        meta[records.CHUNK_COUNT_KEY] = str(len(rows)).encode()
        atomic_write_table(self.path / RESULTS, table.replace_schema_metadata(meta))
        return table

    def results(self) -> pd.DataFrame:
        if not written_by_me(self.path / RESULTS):  # not this user's: made again from this user's chunks
            return self.consolidate_table().to_pandas()
        import pandas as pd  # only a run directory's tables need pandas (see write_chunk_records)

        return pd.read_parquet(self.path / RESULTS)

    def _note_session(self) -> None:
        """sessions.json: when each run or resume of this directory began (a crashed one too)."""
        path = self.path / SESSIONS
        try:
            starts = [float(t) for t in json.loads(path.read_text())] if path.is_file() else []
        except (OSError, ValueError, TypeError):
            starts = []
        atomic_write_json(path, starts + [time.time()])

    def earlier_seconds(self) -> float:
        """Wall-clock seconds of the sessions before the latest: each from its start to the
        last chunk file written before the next one began (a session that crashed counts up
        to its last finished chunk), so a resumed run reports the time of all its parts."""
        try:
            starts = [float(t) for t in json.loads((self.path / SESSIONS).read_text())]
        except (OSError, ValueError, TypeError):
            return 0.0
        if len(starts) < 2:  # a run of one session: no chunk file need be looked at
            return 0.0
        stamps = sorted(f.stat().st_mtime for f in self.chunk_files())
        total = 0.0
        for begin, end in zip(starts, starts[1:]):
            inside = [t for t in stamps if begin <= t < end]
            total += (max(inside) - begin) if inside else 0.0
        return total

    def write_summary(self, summary: dict[str, Any]) -> None:
        """summary.json, stamped with the results.parquet it summarizes: a crash between the
        two files (or a later consolidation) leaves a stamp that no longer matches."""
        stamp = (self.path / RESULTS).stat().st_mtime_ns
        run = {**summary.get("run", {}), SUMMARY_STAMP: str(stamp)}
        # In the plan's order: a table's columns read as the console prints them (output, estimate, se...).
        atomic_write_json(self.path / "summary.json", {**summary, "run": run}, sort_keys=False)

    def read_summary(self) -> dict[str, Any] | None:
        """summary.json if it summarizes the results.parquet there is now, else None."""
        try:
            summary = json.loads((self.path / "summary.json").read_text())
            current = str((self.path / RESULTS).stat().st_mtime_ns)
        except (OSError, ValueError):
            return None
        run = summary.get("run") if isinstance(summary, dict) else None
        if not isinstance(run, dict) or run.pop(SUMMARY_STAMP, None) != current:
            return None
        return summary


@functools.lru_cache(maxsize=1)
def _versions() -> tuple[tuple[str, str], ...]:
    return tuple(_scan_versions().items())


def versions() -> dict[str, str]:
    """Provenance: Python, host and the versions of the libraries that decide the numbers
    (scanned once per process: a session running many jobs pays it once)."""
    return dict(_versions())


def _scan_versions() -> dict[str, str]:
    import hpcml  # the package itself: imported by the time a run is prepared

    # hpcml: the version imported (a checkout on PYTHONPATH may differ from an installed one);
    # workers compare theirs with these (tasks/environment.py).
    out = {"python": platform.python_version(), "host": platform.node(), "platform": platform.platform(),
           "hpcml": hpcml.__version__}
    for pkg in ("numpy", "scipy", "pandas", "scikit-learn", "pyarrow", "torch", "dask", "distributed",
                "dask-jobqueue", "mpi4py", "pyspark", "rpy2"):
        found = version_of(pkg)
        if found is not None:
            out[pkg] = found
    return out
