"""The run directory: the one place results live.

    run_dir/spec.json        the resolved job (provenance; resume checks it)
    run_dir/versions.json    library versions and host
    run_dir/chunks/*.parquet one file per finished chunk, written atomically
    run_dir/artifacts/<task> files a task wrote (checkpoints, plots)
    run_dir/results.parquet  one row per task, consolidated from the chunk files
    run_dir/summary.json     the plan's summary; run_dir/plots/*.png

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
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hpcml import rundir
from hpcml.chunks import Chunk
from hpcml.data.fingerprint import check_same_data, fingerprint
from hpcml.errors import SpecError
from hpcml.runlock import LOCK_NAME, RunLock

CHUNKS = "chunks"
DAMAGED = "damaged"  # chunk files that could not be read, kept for inspection
REQUIRED = {"task_id", "task_index", "status", "attempt"}
log = logging.getLogger("hpcml")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, until: float | None = None) -> bool:
    """Write ``data`` to ``path`` all at once or not at all. ``until``: a wall-clock time
    after which the file must not appear (checked last, just before the rename); False then."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if until is not None and time.time() > until:
            Path(tmp).unlink(missing_ok=True)
            return False
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return True


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def parquet_bytes(table: pa.Table) -> bytes:
    """The Parquet file of ``table``, in memory (the same table gives the same bytes)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def atomic_write_table(path: Path, table: pa.Table) -> None:
    atomic_write_bytes(path, parquet_bytes(table))


def write_chunk_records(run_dir: str | Path, chunk: Chunk, records: list[dict[str, Any]],
                        until: float | None = None) -> Path | None:
    """The chunk's file, or None if ``until`` (wall clock) passed before it could appear."""
    # A unique suffix: a rerun of failed tasks never overwrites the file holding their old
    # failure next to tasks that succeeded.
    path = Path(run_dir, CHUNKS, f"chunk-{chunk.id}-{uuid.uuid4().hex[:8]}.parquet")
    # pyarrow takes the columns from the first record only: a chunk that starts with a failure
    # record (no outputs) would drop the outputs of every ok record after it. Every record gets
    # every column (None where it has none).
    columns = list(dict.fromkeys(key for record in records for key in record))
    table = pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in records])
    return path if atomic_write_bytes(path, parquet_bytes(table), until) else None


# Fields a resumed run may change: where and how it runs, and where it is tracked.
NOT_IDENTITY = ("backend", "output", "retries", "timeout_s", "tracking")


def _identity(spec: dict) -> dict:
    """The part of a spec that decides the numbers (not where or how it runs)."""
    return {k: v for k, v in spec.items() if k not in NOT_IDENTITY}


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
        is_run = self.spec_path.exists()
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
                self._check_resume(spec, job.spec.data.source)
            else:
                if is_run:
                    rundir.clear_run(self.path, keep=LOCK_NAME)
                self.chunks_dir.mkdir(parents=True, exist_ok=True)
                atomic_write_json(self.path / "data.json", fingerprint(job.spec.data.source))
            self.chunks_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.spec_path, spec)
            atomic_write_json(self.path / "versions.json", versions())
        except BaseException:
            self.lock.release()
            raise

    def _check_resume(self, spec: dict, source: str) -> None:
        old = self.read_spec()
        if _identity(old) != _identity(spec):
            changed = sorted(k for k in set(old) | set(spec) if k not in NOT_IDENTITY
                             and old.get(k) != spec.get(k))
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

    def chunk_files(self) -> list[Path]:
        return sorted(self.chunks_dir.glob("chunk-*.parquet")) if self.chunks_dir.exists() else []

    def _read_chunk(self, f: Path, columns: list[str] | None) -> pd.DataFrame | None:
        """A chunk file's records, or None after setting a damaged file aside."""
        try:
            table = pq.read_table(f, columns=columns) if columns else pq.read_table(f)
            names = set(table.column_names)
            if not REQUIRED <= names and not (columns and set(columns) <= names):
                raise ValueError(f"not a chunk of records (columns: {', '.join(sorted(names)[:5])})")
            frame = table.to_pandas()
            if "task_index" in frame:
                frame["task_index"] = frame["task_index"].astype(int)
        except FileNotFoundError:  # set aside by another reader this instant
            return None
        except Exception as err:
            self._set_aside(f, err)
            return None
        frame["_file_mtime"] = f.stat().st_mtime_ns
        return frame

    def _set_aside(self, f: Path, err: Exception) -> None:
        target = self.path / DAMAGED / f.name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, target)
        except FileNotFoundError:
            return
        log.warning("damaged chunk file set aside: %s (%s); its tasks will run again on --resume",
                    target, f"{type(err).__name__}: {err}".splitlines()[0][:160])

    def read_records(self, columns: list[str] | None = None) -> pd.DataFrame:
        frames = []
        for f in self.chunk_files():
            frame = self._read_chunk(f, columns)
            if frame is not None:
                frames.append(frame)
        if not frames:
            return pd.DataFrame(columns=["task_id", "task_index", "status", "attempt"])
        frame = pd.concat(frames, ignore_index=True)
        # Failure records lack the outputs, so concat widens integer outputs to float; remember
        # the type the ok records wrote, to restore it once only ok records remain.
        frame.attrs["ok_dtypes"] = {c: t for f in frames if "status" in f and f["status"].eq("ok").all()
                                    for c, t in f.dtypes.items()}
        return frame

    def latest_records(self, columns: list[str] | None = None) -> pd.DataFrame:
        """One row per task: an ``ok`` record if any exists, else its latest failure.

        A run whose failures were all retried or resumed reads like a run without failures:
        no all-empty ``error``/``traceback`` columns, outputs in the type the tasks wrote.
        """
        frame = self.read_records(columns)
        if frame.empty:
            return frame.drop(columns="_file_mtime", errors="ignore")
        ok_dtypes = frame.attrs.pop("ok_dtypes", {})
        frame["_ok"] = frame["status"].eq("ok")
        frame = frame.sort_values(["task_index", "_ok", "_file_mtime"], kind="stable")
        frame = frame.drop_duplicates("task_index", keep="last").drop(columns=["_ok", "_file_mtime"])
        frame = frame.sort_values("task_index", kind="stable").reset_index(drop=True)
        if frame["status"].eq("ok").all():
            frame = frame.drop(columns=[c for c in ("error", "traceback") if c in frame and frame[c].isna().all()])
            frame = frame.astype({c: t for c, t in ok_dtypes.items() if c in frame and frame[c].dtype != t})
        return frame

    def completed(self) -> set[int]:
        frame = self.read_records(["task_index", "status"])
        return set(frame.loc[frame["status"] == "ok", "task_index"].astype(int))

    def consolidate(self) -> pd.DataFrame:
        frame = self.latest_records()
        ordered = ["task_id", "task_index", "status", "attempt", "seconds"]
        tail = [c for c in ("error", "traceback") if c in frame.columns]
        rest = [c for c in frame.columns if c not in ordered and c not in tail]
        frame = frame[[c for c in ordered if c in frame.columns] + rest + tail]
        atomic_write_table(self.path / "results.parquet", pa.Table.from_pandas(frame, preserve_index=False))
        return frame

    def results(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / "results.parquet")

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.path / "summary.json", summary)


@functools.lru_cache(maxsize=1)
def _versions() -> tuple[tuple[str, str], ...]:
    return tuple(_scan_versions().items())


def versions() -> dict[str, str]:
    """Provenance: Python, host and the versions of the libraries that decide the numbers
    (scanned once per process: a session running many jobs pays it once)."""
    return dict(_versions())


def _scan_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "host": platform.node(), "platform": platform.platform()}
    for pkg in ("hpcml", "numpy", "scipy", "pandas", "scikit-learn", "pyarrow", "torch", "dask", "distributed",
                "dask-jobqueue", "mpi4py", "pyspark", "rpy2"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out
