"""The ``hpcml`` command line: run, validate, schema, status (and submit, pack)."""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Optional

import typer

# The command line is a driver: Arrow memory goes back to the system as soon as it is freed
# (the system allocator, chosen before pyarrow is first imported), so consolidating a million
# records leaves no retained pages behind for the summary and the plots. A user's setting wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

from hpcml.report.console import (print_spec_error, print_table, quiet_workers, report, say,  # noqa: E402
                                  set_up_logging, warn)
from hpcml.errors import SpecError  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Write a parallel analysis once; run it on a laptop, Dask, Slurm, MPI or Spark.")


def fail_spec(e: SpecError) -> None:
    raise typer.Exit(print_spec_error(e))


def unwritable(err: OSError) -> None:
    """The run directory could not be written (disk full, read-only, permissions): one line
    and exit 3; every chunk file written before it is kept for --resume."""
    where = f"{err.filename}: " if err.filename else ""
    warn(f"error: cannot write the run: {where}{err.strerror or err}; the tasks that finished are kept: "
         "fix this and rerun with --resume")
    raise typer.Exit(3)


def interrupted() -> None:
    """Ctrl-C: one line (finished chunks are on disk), exit 130 like a shell."""
    logging.disable(logging.CRITICAL)  # backends shutting down have nothing to add
    warn("interrupted; rerun with --resume to finish the missing tasks")
    raise typer.Exit(130)


@app.command()
def run(
    spec: Path = typer.Argument(..., help="job spec (YAML)"),
    backend: Optional[str] = typer.Option(None, "--backend", "-b", help="local | dask | mpi | spark"),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", help="worker processes"),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="run directory"),
    chunk_size: Optional[int] = typer.Option(None, "--chunk-size", help="tasks per chunk"),
    resume: bool = typer.Option(False, "--resume", help="run only tasks with no result in --out"),
    overwrite: bool = typer.Option(False, "--overwrite", help="delete an existing run directory first"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress, no table"),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="draw the run's PNG plots"),
) -> None:
    """Run a job; print its summary. Exit 0 all done, 1 some tasks failed, 2 bad input, 3 the run
    directory could not be written (disk full, read-only)."""
    from hpcml.drivers.dispatch import run_job  # loaded when the command runs: `hpcml --help` starts fast
    from hpcml.spec import load_job  # loaded when the command runs: `hpcml --help` starts fast

    set_up_logging(quiet)
    try:
        job = load_job(spec, **{"backend.name": backend, "backend.workers": workers, "backend.chunk_size": chunk_size,
                                "output": str(out_dir) if out_dir else None})
        with quiet_workers(quiet):
            result = run_job(job, resume=resume, overwrite=overwrite, progress=not quiet, plots=plots)
        if result is None:  # an MPI rank other than 0: rank 0 reports
            raise typer.Exit(0)
    except SpecError as e:
        fail_spec(e)
    except KeyboardInterrupt:
        interrupted()
    except OSError as e:
        unwritable(e)
    code = report(result, f"{job.spec.name}: {job.plan_kind} / {job.model.name}", quiet)
    if code:
        raise typer.Exit(code)


@app.command()
def validate(spec: Path = typer.Argument(..., help="job spec (YAML)"),
             data: bool = typer.Option(True, "--data/--no-data", help="also load the data and check it")) -> None:
    """Check a spec (and its data). Exit 0 if valid, 2 with one line per problem."""
    from hpcml.drivers.run import check_job  # loaded when the command runs: `hpcml --help` starts fast
    from hpcml.spec import load_job  # loaded when the command runs: `hpcml --help` starts fast

    try:
        job = load_job(spec)
        if data and job.spec.engine == "spark":  # data too big to load here: check what needs no Spark
            from hpcml.drivers.spark_engine import static_problems  # loaded when the command runs: `hpcml --help` starts fast

            static_problems(job)
        elif data:
            check_job(job)
    except SpecError as e:
        fail_spec(e)
    say(f"ok: {job.spec.name}: {job.n_tasks} {job.plan_kind} task(s) of model {job.model.name}")


@app.command()
def schema() -> None:
    """Print the JSON Schema of the job spec."""
    from hpcml.spec import json_schema  # loaded when the command runs: `hpcml --help` starts fast

    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")


@app.command("report")
def report_page(run_dir: Path = typer.Argument(..., help="run directory")) -> None:
    """Write RUN_DIR/report.html again from the run directory's files: one page, no server."""
    from hpcml.report.html import write_report  # loaded when the command runs: `hpcml --help` starts fast
    from hpcml.rundir.store import RunStore  # loaded when the command runs: `hpcml --help` starts fast

    if not RunStore(run_dir).spec_path.is_file():
        fail_spec(SpecError.one("run_dir", str(run_dir), "not a run directory (no spec.json)"))
    try:
        say(str(write_report(run_dir)))
    except OSError as e:
        unwritable(e)


@app.command()
def status(run_dir: Path = typer.Argument(..., help="run directory"),
           show: int = typer.Option(10, help="failures to list"),
           watch: bool = typer.Option(False, "--watch", help="a line every --every seconds while the run runs"),
           every: float = typer.Option(2.0, "--every", min=0.1, help="seconds between --watch lines")) -> None:
    """Done / failed / missing tasks of a run (and how many run now), failures with their error.
    Exit 1 unless complete. With --watch, from another terminal: done, failed, running,
    throughput and time left until it ends."""
    from hpcml.report.status import run_status, status_line, watch as watch_run  # loaded when the command runs: `hpcml --help` starts fast

    try:
        st = watch_run(run_dir, every, say) if watch else run_status(run_dir)  # watch ends with the last status
    except SpecError as e:
        fail_spec(e)
    except KeyboardInterrupt:
        raise typer.Exit(130)
    say(status_line(st))
    for f in st["failures"][:show]:
        error = f["error"].replace("\n", "\n      ")  # a message of several lines stays under its task
        say(f"  {f['task_id']} (attempt {f['attempt']}): {error}")
    if st["done"] != st["total"]:
        raise typer.Exit(1)
    if not st["finished"]:
        warn(f"every task is done but the run was not finished (no summary of its current results): "
             f"rerun it with --resume --out {run_dir} to consolidate and summarize")
        raise typer.Exit(1)


@app.command()
def submit(
    spec: Path = typer.Argument(..., help="job spec (YAML)"),
    mode: str = typer.Option("auto", "--mode", help="pack: one allocation under srun; array: job array + collect; "
                             "auto: array up to 16 tasks, else pack (the choice is printed)"),
    ntasks: Optional[int] = typer.Option(None, "--ntasks", "-n", help="pack: MPI ranks (default 2)"),
    nodes: Optional[int] = typer.Option(None, "--nodes", help="pack: nodes"),
    elements: Optional[int] = typer.Option(None, "--elements", help="array: elements (default min(tasks, 8))"),
    max_concurrent: Optional[int] = typer.Option(None, "--max-concurrent", help="array: elements at once"),
    cpus_per_task: Optional[int] = typer.Option(None, "--cpus-per-task", help="cores per rank/element"),
    mem_gb: Optional[float] = typer.Option(None, "--mem-gb", help="memory per node (pack) / element (array)"),
    walltime_min: Optional[int] = typer.Option(None, "--walltime-min", help="time limit, minutes (default 60)"),
    partition: Optional[str] = typer.Option(None, "--partition", "-p", help="partition"),
    account: Optional[str] = typer.Option(None, "--account", "-A", help="account"),
    gpus_per_node: Optional[int] = typer.Option(None, "--gpus-per-node", help="GPUs per node"),
    directive: Optional[list[str]] = typer.Option(None, "--directive", help="extra #SBATCH option (repeatable)"),
    setup: Optional[list[str]] = typer.Option(None, "--setup", help="shell line run first (repeatable)"),
    launcher: Optional[str] = typer.Option(None, "--launcher", help="pack: srun | mpirun | ibrun"),
    srun_mpi: Optional[str] = typer.Option(None, "--srun-mpi", help="pack: srun --mpi plugin (default pmix; none)"),
    pack_mode: Optional[str] = typer.Option(None, "--pack-mode", help="pack: static | dynamic"),
    python: Optional[str] = typer.Option(None, "--python", help="python on the compute nodes"),
    job_name: Optional[str] = typer.Option(None, "--job-name", help="Slurm job name (default hpcml-<name>)"),
    chdir: Optional[Path] = typer.Option(None, "--chdir", help="job working directory (default: here)"),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="run directory"),
    resume: bool = typer.Option(False, "--resume", help="keep the results already in --out"),
    overwrite: bool = typer.Option(False, "--overwrite", help="delete an existing run directory first"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the script(s); write and submit nothing"),
) -> None:
    """Write a Slurm batch script for the whole run and submit it; print the job id. Exit 2 bad input."""
    from hpcml.drivers import submit as sub  # loaded when the command runs: `hpcml --help` starts fast
    from hpcml.drivers.run import check_job  # loaded when the command runs: `hpcml --help` starts fast
    from hpcml.spec import load_job  # loaded when the command runs: `hpcml --help` starts fast

    raw = dict(mode=mode, ntasks=ntasks, nodes=nodes, elements=elements, max_concurrent=max_concurrent,
               cpus_per_task=cpus_per_task, mem_gb=mem_gb, walltime_min=walltime_min, partition=partition,
               account=account, gpus_per_node=gpus_per_node, directives=directive or None, setup=setup or None,
               launcher=launcher, srun_mpi=srun_mpi, pack_mode=pack_mode, python=python, job_name=job_name)
    workdir = (chdir or Path.cwd()).resolve()
    try:
        opts = sub.parse_options(raw)
        job = load_job(spec, output=str(out_dir) if out_dir else None)
        _, why = sub.choose_mode(job, opts)
        if dry_run:
            check_job(job)
            scripts = sub.render(job, opts, job.output.resolve(), workdir)
            for i, (name, text) in enumerate(scripts.items()):
                sys.stdout.write(("\n" if i else "") + f"# ==> {name} <==\n" + text)
            return
        done = sub.submit(job, opts, workdir=workdir, resume=resume, overwrite=overwrite)
    except SpecError as e:
        fail_spec(e)
    main_id = done.job_ids[sub.MAIN_SCRIPT]
    if sub.COLLECT_SCRIPT in done.job_ids:
        say(f"submitted array job {main_id} and collect job {done.job_ids[sub.COLLECT_SCRIPT]} -> {done.run_dir}")
    else:
        say(f"submitted job {main_id} -> {done.run_dir}")
    if why:  # --mode auto: which mode, and why
        say(why)


@app.command()
def collect(run_dir: Path = typer.Argument(..., help="run directory"),
            quiet: bool = typer.Option(False, "--quiet", "-q", help="no table")) -> None:
    """Consolidate a run written by batch jobs (a job array); print its summary. Exit 1 unless complete."""
    from hpcml.drivers.submit import collect as collect_run  # loaded when the command runs: `hpcml --help` starts fast

    try:
        result = collect_run(run_dir)
    except SpecError as e:
        fail_spec(e)
    if not quiet:
        print_table(result.summary.get("table", []), title=f"{run_dir}")
    say(f"{result.n_tasks - result.n_failed}/{result.n_tasks} tasks ok -> {result.run_dir}")
    if result.n_failed:
        warn(f"{result.n_failed} task(s) failed or missing; see: hpcml status {result.run_dir}")
        raise typer.Exit(1)


# Extension modules that finish their own work after the interpreter's teardown (mpi4py's
# MPI_Finalize, an embedded R): a process that has loaded one exits the ordinary way.
FINALIZED_LATE = ("mpi4py", "rpy2")


def leave(code) -> None:
    """Exit as Python's own shutdown does up to its last step, without that step: non-daemon
    threads joined, the ``atexit`` handlers run (run locks released, worker pools closed, logs
    and temporary folders finished), the standard streams flushed; then the process ends without
    tearing down every module and object it imported one by one (0.2-0.3 s of CPU after a run
    that drew plots, for nothing a user sees). With a module in ``FINALIZED_LATE`` loaded, the
    ordinary exit."""
    import atexit  # only the command line's exit needs these
    import threading  # (as above)

    if isinstance(code, str):  # sys.exit("message"): printed, status 1, as Python does
        print(code, file=sys.stderr)
        code = 1
    code = 0 if code is None else code
    if any(name in sys.modules for name in FINALIZED_LATE) or not isinstance(code, int):
        sys.exit(code)
    getattr(threading, "_shutdown", lambda: None)()  # the interpreter's first step at exit
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing left to write to
            pass
    os._exit(code)


def main() -> None:
    try:
        app()
    except SystemExit as done:
        leave(done.code)


if __name__ == "__main__":
    main()
