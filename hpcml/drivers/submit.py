"""``hpcml submit``: one Slurm batch script for a whole run, submitted with ``sbatch``.

Two modes:

- ``pack``: one allocation of ``ntasks`` ranks; the script runs the MPI packing entry point
  (``python -m hpcml.pack``) under a launcher (``srun --mpi=pmix`` by default).
- ``array``: a job array; element ``i`` of ``N`` runs ``python -m hpcml.array_task`` on its
  block of tasks, and a dependent job (``afterany``, so it runs even when elements fail)
  runs ``hpcml collect`` to consolidate the results.

The run directory is prepared at submission (``spec.json``, the resolved job with an absolute
``output``), so every rank and element reads the same spec, and the scripts are saved beside
the results in ``RUN_DIR/submit/``. Scripts always ``--resume``: resubmitting one redoes only
the tasks with no result. Bad input (options, spec, data, a script sbatch rejects) leaves
nothing behind.
"""
from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hpcml.errors import SpecError, pydantic_problems
from hpcml.launchers import launch
from hpcml.drivers.row_blocks import check_over_row_blocks, uses_row_blocks
from hpcml.drivers.run import check_job
from hpcml.rundir.opening import open_run
from hpcml.backends.mpi.options import MPIOptions, check_fork_safety
from hpcml.drivers.finish import finish
from hpcml.report.status import run_job
from hpcml.rundir.store import RunStore

MAIN_SCRIPT = "hpcml.sbatch"
COLLECT_SCRIPT = "collect.sbatch"


class SubmitOptions(BaseModel):
    """What the batch job asks Slurm for, and how it starts hpcml (units in the names)."""

    model_config = ConfigDict(extra="forbid")
    mode: Literal["auto", "pack", "array"] = Field(
        "auto", description="pack: one allocation under a launcher; array: a job array plus a dependent collect "
                            "job; auto: chosen from the number of tasks (see choose_mode)")
    ntasks: int = Field(2, gt=0, description="pack: MPI ranks in the allocation")
    nodes: int | None = Field(None, gt=0, description="pack: nodes (default: Slurm's choice)")
    elements: int | None = Field(None, gt=0, description="array: array elements (default: min(tasks, 8))")
    max_concurrent: int | None = Field(None, gt=0, description="array: elements running at once (%N)")
    cpus_per_task: int | None = Field(None, gt=0, description="cores per rank/element (default: threads_per_task)")
    mem_gb: float | None = Field(None, gt=0, description="memory per node (pack) or per element (array), GB")
    walltime_min: int = Field(60, gt=0, description="time limit in minutes")
    partition: str | None = Field(None, description="partition (queue)")
    account: str | None = Field(None, description="account charged")
    gpus_per_node: int | None = Field(None, gt=0, description="GPUs per node (--gres=gpu:N)")
    directives: list[str] = Field(default_factory=list, description="extra '#SBATCH' options, e.g. --qos=high")
    setup: list[str] = Field(default_factory=list, description="shell lines run first (module load, source ...)")
    launcher: Literal["srun", "mpirun", "ibrun"] = Field("srun", description="pack: how ranks start")
    srun_mpi: str | None = Field("pmix", description="pack with srun: --mpi plugin (none: leave it to Slurm)")
    pack_mode: Literal["static", "dynamic"] | None = Field(None, description="pack: hpcml.pack --mode")
    python: str = Field(sys.executable, description="python on the compute nodes (default: this one)")
    job_name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="default hpcml-<name>")
    collect_walltime_min: int = Field(10, gt=0, description="array: time limit of the collect job")


# Up to this many tasks `auto` makes a job array: few tasks, each long enough that an
# allocation of its own (scheduled, backfilled and rerun on its own) costs nothing by comparison.
# More tasks are packed into one allocation, whose ranks take them in chunks: a job array of
# thousands of short elements costs the scheduler a job each (pylauncher's and TACC's advice).
ARRAY_MAX_TASKS = 16


def choose_mode(job, opts: SubmitOptions) -> tuple[SubmitOptions, str | None]:
    """``opts`` with ``auto`` resolved to pack or array, and the sentence that says why (None
    when the mode was given)."""
    if uses_row_blocks(job):  # passes whose blocks rank 0 combines: one allocation, never an array
        if opts.mode == "array" or opts.model_fields_set & {"elements", "max_concurrent"}:
            raise SpecError.one("submit.mode", "array", "a fit over row blocks (data above data.blocks_above_mb) "
                                "runs as passes that rank 0 combines: use --mode pack")
        why = None if opts.mode == "pack" else \
            "mode pack: a fit over row blocks runs as passes that rank 0 of one allocation combines"
        return opts.model_copy(update={"mode": "pack"}), why
    if opts.mode != "auto":
        return opts, None
    given = opts.model_fields_set
    if given & {"pack_mode", "ntasks", "nodes", "launcher"}:  # options only a pack has: a pack was meant
        return opts.model_copy(update={"mode": "pack"}), None
    if given & {"elements", "max_concurrent"}:
        return opts.model_copy(update={"mode": "array"}), None
    n = job.n_tasks
    if n <= ARRAY_MAX_TASKS:
        why = (f"mode array: {n} task(s), at most {ARRAY_MAX_TASKS}: each array element is a job of its own that "
               "Slurm schedules and backfills alone (--mode pack packs them into one allocation)")
        return opts.model_copy(update={"mode": "array"}), why
    why = (f"mode pack: {n} tasks, more than {ARRAY_MAX_TASKS}: one allocation of {opts.ntasks} ranks takes them in "
           "chunks, one job for the scheduler instead of one per task (--mode array makes a job array)")
    return opts.model_copy(update={"mode": "pack"}), why


def parse_options(raw: dict) -> SubmitOptions:
    """CLI values -> options, or SpecError naming ``submit.<field>``."""
    try:
        return SubmitOptions(**{k: v for k, v in raw.items() if v is not None})
    except ValidationError as err:
        raise SpecError(pydantic_problems(err, "submit")) from None


def _hms(minutes: int) -> str:
    h, m = divmod(minutes, 60)
    return f"{h:02d}:{m:02d}:00"


def _mem(gb: float) -> str:
    return f"{gb:g}G" if float(gb).is_integer() else f"{int(round(gb * 1024))}M"


def _q(value: str | Path) -> str:
    return shlex.quote(str(value))


def _header(lines: list[tuple[str, object]], directives: list[str]) -> list[str]:
    out = ["#!/bin/bash"]
    out += [f"#SBATCH --{k}={v}" for k, v in lines if v is not None]
    out += [f"#SBATCH {d}" for d in directives]
    return out


def _body(opts: SubmitOptions, comment: str, command: str) -> list[str]:
    # -e, not -u: module and activate scripts often read unset variables.
    return [f"# {comment}", "set -eo pipefail", *opts.setup, command, ""]


def deadline_s(opts: SubmitOptions) -> int:
    """Seconds after which a batch job starts no new chunk: its walltime less a margin (5 %, at
    least 2 minutes, at most 15) for the chunks under way and writing their files, so Slurm
    never kills a job mid-chunk; what is left waits for a resubmission with --resume."""
    wall = 60 * opts.walltime_min
    margin = min(900, max(120, wall // 20))
    return max(30, wall - margin)


def _elements(opts: SubmitOptions, n_tasks: int) -> int:
    n = opts.elements or min(n_tasks, 8)
    if n > n_tasks:
        raise SpecError.one("submit.elements", n, f"more array elements than tasks ({n_tasks})")
    return n


def render(job, opts: SubmitOptions, run_dir: Path, workdir: Path) -> dict[str, str]:
    """The batch script(s) for ``job``: file name -> text. Pure: writes and submits nothing."""
    if job.spec.engine == "spark":  # MPI ranks and array elements would run its tasks on the hpcml engine
        raise SpecError.one("engine", "spark", "hpcml submit runs independent tasks in batch jobs; run an "
                            "engine: spark job with spark-submit or hpcml run")
    opts, _ = choose_mode(job, opts)
    n_tasks = job.n_tasks
    name = opts.job_name or f"hpcml-{job.spec.name}"
    cpus = opts.cpus_per_task or job.spec.threads_per_task
    spec_json, logs = run_dir / "spec.json", run_dir / "logs"
    common = [("partition", opts.partition), ("account", opts.account)]
    py = _q(opts.python)
    if opts.mode == "pack":
        cmd = f"{py} -m hpcml.pack {_q(spec_json)} --resume --out {_q(run_dir)} --deadline-s {deadline_s(opts)}"
        if opts.pack_mode:
            cmd += f" --mode {opts.pack_mode}"
        extra = [f"--mpi={opts.srun_mpi}"] if opts.launcher == "srun" and opts.srun_mpi not in (None, "none") else []
        cmd = launch(opts.launcher, cmd, ntasks=opts.ntasks, cpus_per_task=cpus, extra=extra)
        head = _header([("job-name", name), ("output", logs / "slurm-%j.out"), ("chdir", workdir),
                        ("nodes", opts.nodes), ("ntasks", opts.ntasks), ("cpus-per-task", cpus),
                        ("mem", _mem(opts.mem_gb) if opts.mem_gb else None), ("time", _hms(opts.walltime_min)),
                        *common, ("gres", f"gpu:{opts.gpus_per_node}" if opts.gpus_per_node else None)],
                       opts.directives)
        note = f"hpcml submit (pack): {n_tasks} {job.plan_kind} task(s) of job {job.spec.name} on {opts.ntasks} ranks"
        return {MAIN_SCRIPT: "\n".join(head + _body(opts, note, cmd))}
    n = _elements(opts, n_tasks)
    array = f"0-{n - 1}" + (f"%{opts.max_concurrent}" if opts.max_concurrent else "")
    cmd = f'{py} -m hpcml.array_task {_q(spec_json)} --index "$SLURM_ARRAY_TASK_ID" --of {n} ' \
          f'--deadline-s {deadline_s(opts)}'
    head = _header([("job-name", name), ("output", logs / "slurm-%A_%a.out"), ("chdir", workdir), ("array", array),
                    ("ntasks", 1), ("cpus-per-task", cpus), ("mem", _mem(opts.mem_gb) if opts.mem_gb else None),
                    ("time", _hms(opts.walltime_min)), *common,
                    ("gres", f"gpu:{opts.gpus_per_node}" if opts.gpus_per_node else None)], opts.directives)
    note = f"hpcml submit (array): {n_tasks} {job.plan_kind} task(s) of job {job.spec.name} in {n} elements"
    collect_head = _header([("job-name", f"{name}-collect"), ("output", logs / "slurm-collect-%j.out"),
                            ("chdir", workdir), ("ntasks", 1), ("cpus-per-task", 1),
                            ("time", _hms(opts.collect_walltime_min)), *common], opts.directives)
    collect_cmd = f"{py} -m hpcml.cli collect {_q(run_dir)}"
    return {MAIN_SCRIPT: "\n".join(head + _body(opts, note, cmd)),
            COLLECT_SCRIPT: "\n".join(collect_head + _body(opts, f"hpcml submit (array): consolidate {job.spec.name} "
                                                                 "once every element has ended", collect_cmd))}


@dataclass
class Submitted:
    run_dir: Path
    scripts: dict[str, Path]
    job_ids: dict[str, str] = field(default_factory=dict)  # script name -> Slurm job id


def _sbatch(sbatch: str, args: list[str], script: Path) -> str:
    proc = subprocess.run([sbatch, "--parsable", *args, str(script)], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise SpecError.one("sbatch", str(script), f"rejected the script: {lines[-1] if lines else proc.returncode}")
    # --parsable prints "jobid" or "jobid;cluster"
    return proc.stdout.strip().splitlines()[-1].split(";")[0]


def submit(job, opts: SubmitOptions, *, workdir: Path, resume: bool = False, overwrite: bool = False,
           sbatch: str = "sbatch") -> Submitted:
    """Prepare the run directory, write the script(s) into it, submit; returns the job ids."""

    if uses_row_blocks(job):  # its rows are read by the ranks, pass by pass: not here
        check_over_row_blocks(job)
    else:
        check_job(job)  # spec and data errors surface before anything is written
    opts, _ = choose_mode(job, opts)
    if opts.mode == "pack":  # what hpcml.pack would refuse on the compute node, refused here

        spec_mode = MPIOptions(**(job.spec.backend.model_extra or {})).mode if job.spec.backend.name == "mpi" \
            else "dynamic"
        check_fork_safety(job, opts.pack_mode or spec_mode, "--pack-mode" if opts.pack_mode else "backend.mode")
    run_dir = job.output.resolve()
    scripts = render(job, opts, run_dir, workdir)
    exe = shutil.which(sbatch)
    if exe is None:
        raise SpecError.one("sbatch", sbatch, "not found on PATH; --dry-run prints the script without submitting")
    done = Submitted(run_dir, {n: run_dir / "submit" / n for n in scripts})
    # The lock guards the preparation only: the batch jobs write their own chunk files. A failed
    # submission leaves no new run directory (nor any job: all or nothing).
    with open_run(job, resume=resume, overwrite=overwrite, path=run_dir):
        try:
            (run_dir / "logs").mkdir(exist_ok=True)
            for n, text in scripts.items():
                done.scripts[n].parent.mkdir(exist_ok=True)
                done.scripts[n].write_text(text)
            done.job_ids[MAIN_SCRIPT] = _sbatch(exe, [], done.scripts[MAIN_SCRIPT])
            if COLLECT_SCRIPT in scripts:
                after = f"--dependency=afterany:{done.job_ids[MAIN_SCRIPT]}"
                done.job_ids[COLLECT_SCRIPT] = _sbatch(exe, [after], done.scripts[COLLECT_SCRIPT])
        except BaseException:
            for jid in done.job_ids.values():  # no orphan array without its collect job
                subprocess.run(["scancel", jid], capture_output=True, timeout=60)
            raise
    (run_dir / "submit" / "jobs.json").write_text(json.dumps(done.job_ids, indent=2) + "\n")
    return done


def collect(run_dir: Path):
    """Consolidate a run whose chunk files were written by batch jobs; the RunResult."""
    import time

    store = RunStore(run_dir)
    job = run_job(store)
    # Wall time since submission (when the run directory was prepared), queue wait included.
    return finish(job, store, time.time() - store.spec_path.stat().st_mtime)
