"""The ``hpcml`` command line: run, validate, schema, status (and submit, pack)."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import SpecError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Write a parallel analysis once; run it on a laptop, Dask, Slurm, MPI or Spark.")
# Batch logs are not terminals: give tables room instead of rich's 80-column default.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def fail_spec(e: SpecError) -> None:
    for line in e.lines():
        err.print(f"error: {line}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else str(v)


def print_table(rows: list[dict], title: str | None = None, limit: int = 40) -> None:
    if not rows:
        return
    table = Table(title=title, show_lines=False)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    for c in columns:
        table.add_column(c, justify="left" if c == "output" else "right")
    for r in rows[:limit]:
        table.add_row(*(_fmt(r.get(c)) for c in columns))
    out.print(table)
    if len(rows) > limit:
        out.print(f"... {len(rows) - limit} more rows in summary.json")


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
) -> None:
    """Run a job; print its summary. Exit 0 all done, 1 some tasks failed, 2 bad input."""
    from .runner import execute
    from .spec import load_job

    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S")
    try:
        job = load_job(spec, **{"backend.name": backend, "backend.workers": workers, "backend.chunk_size": chunk_size,
                                "output": str(out_dir) if out_dir else None})
        if job.spec.backend.name == "mpi":
            from .backends.mpi import run_under_mpi

            result = run_under_mpi(job, resume=resume, overwrite=overwrite, progress=not quiet)
            if result is None:  # not rank 0: rank 0 reports
                raise typer.Exit(0)
        else:
            result = execute(job, resume=resume, overwrite=overwrite, progress=not quiet)
    except SpecError as e:
        fail_spec(e)
    if not quiet:
        print_table(result.summary.get("table", []), title=f"{job.spec.name}: {job.plan_kind} / {job.model.name}")
    out.print(f"{result.n_tasks - result.n_failed}/{result.n_tasks} tasks ok in {result.seconds:.1f}s -> {result.run_dir}")
    if result.n_failed:
        first = result.failures().iloc[0]
        err.print(f"{result.n_failed} task(s) failed; first: {first['task_id']}: {first.get('error')}", markup=False)
        err.print(f"see: hpcml status {result.run_dir}", markup=False)
        raise typer.Exit(1)


@app.command()
def validate(spec: Path = typer.Argument(..., help="job spec (YAML)"),
             data: bool = typer.Option(True, "--data/--no-data", help="also load the data and check it")) -> None:
    """Check a spec (and its data). Exit 0 if valid, 2 with one line per problem."""
    from .runner import check_job
    from .spec import load_job

    try:
        job = load_job(spec)
        if data:
            check_job(job)
    except SpecError as e:
        fail_spec(e)
    from .plan import plan_tasks

    out.print(f"ok: {job.spec.name}: {len(plan_tasks(job))} {job.plan_kind} task(s) of model {job.model.name}")


@app.command()
def schema() -> None:
    """Print the JSON Schema of the job spec."""
    from .spec import json_schema

    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")


@app.command()
def status(run_dir: Path = typer.Argument(..., help="run directory"),
           show: int = typer.Option(10, help="failures to list")) -> None:
    """Done / failed / missing tasks of a run, failures with their error. Exit 1 unless complete."""
    from .status import run_status

    try:
        st = run_status(run_dir)
    except SpecError as e:
        fail_spec(e)
    out.print(f"{st['name']}: {st['total']} tasks: {st['done']} done, {st['failed']} failed, {st['missing']} missing")
    for f in st["failures"][:show]:
        out.print(f"  {f['task_id']} (attempt {f['attempt']}): {f['error']}", markup=False)
    if st["done"] != st["total"]:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
