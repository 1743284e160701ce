"""What every front end prints (``hpcml`` commands, ``python -m hpcml.pack``, ``python -m
hpcml.ddp``, job-array elements): bad input once per launch, summary tables, the result line."""
from __future__ import annotations

import contextlib
import functools
import os
import sys

from hpcml.errors import SpecError
from hpcml.launchers import launcher_rank, launcher_size, rank_from_env


def interactive(stream) -> bool:
    """Whether ``stream`` is a person's terminal: colours, styles and live bars only then.

    Not under an MPI or Slurm launcher, whose ranks write to a pseudo-terminal even when the
    job's output goes to a file (``mpirun ... > log`` would fill the log with escape codes),
    and not with ``NO_COLOR`` set (https://no-color.org)."""
    if os.environ.get("NO_COLOR") or not stream.isatty():
        return False
    try:
        return launcher_size() is None and rank_from_env().launcher == "single"
    except SpecError:  # malformed launcher variables: some launcher started this process
        return False


QUIET_VAR = "HPCML_QUIET"


def set_up_logging(quiet: bool) -> None:
    """A front end's log lines: INFO, or with ``-q`` warnings and errors only."""
    import logging  # only front ends configure logging

    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S")


@contextlib.contextmanager
def quiet_workers(quiet: bool):
    """With ``-q``, the worker processes started inside the block are quiet too (they inherit
    ``HPCML_QUIET``: a CNN's epoch lines); the process's environment is restored after it, so
    a front end called in-process (a test, a notebook) leaves no trace."""
    if not quiet:
        yield
        return
    before = os.environ.get(QUIET_VAR)
    os.environ[QUIET_VAR] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(QUIET_VAR, None)
        else:
            os.environ[QUIET_VAR] = before


@functools.lru_cache(maxsize=2)
def _console(stderr: bool):
    from rich.console import Console  # imported when something is printed, not at start

    # Batch logs are not terminals: plain text, with room for tables instead of 80 columns.
    stream = sys.stderr if stderr else sys.stdout
    tty = interactive(stream)
    return Console(stderr=stderr, force_terminal=tty, no_color=not tty, width=None if tty else 160)


def say(text: str) -> None:
    _console(False).print(text, markup=False, highlight=False, soft_wrap=True)


def warn(text: str) -> None:
    _console(True).print(text, markup=False, highlight=False, soft_wrap=True)


def print_spec_error(e: SpecError) -> int:
    """One line per bad field, printed once even when every MPI rank read the same input; 2."""
    if launcher_rank() == 0:
        for line in e.lines():
            warn(f"error: {line}")
    return 2


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else str(v)


def print_table(rows: list[dict], title: str | None = None, limit: int = 40) -> None:
    if not rows:
        return
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    for c in columns:
        table.add_column(c, justify="left" if c in ("output", "term", "parameter") else "right")
    for r in rows[:limit]:
        table.add_row(*(_fmt(r.get(c)) for c in columns))
    _console(False).print(table)
    if len(rows) > limit:
        say(f"... {len(rows) - limit} more rows in summary.json")


def first_line(message) -> str:
    """A failure's message on one line of the run's last words; ``hpcml status`` shows it whole."""
    lines = str(message or "").strip().splitlines() or [""]
    return lines[0] + (f" [+{len(lines) - 1} more line(s)]" if len(lines) > 1 else "")


def report(result, title: str | None, quiet: bool = False) -> int:
    """A finished run's table, its one result line, its first failure; the exit status (0 or 1)."""
    if not quiet:
        print_table(result.summary.get("table", []), title=title)
        for note in result.summary.get("notes", []):  # e.g. a CNN sweep's chosen configuration
            say(note)
    page = result.run_dir / "report.html" if result.run_dir is not None else None
    link = f" (report: {page})" if page is not None and page.is_file() else ""
    say(f"{result.n_tasks - result.n_failed}/{result.n_tasks} tasks ok in {result.seconds:.1f}s -> {result.run_dir}{link}")
    if not result.n_failed:
        return 0
    failures = result.failures()
    first = f"; first: {failures.iloc[0]['task_id']}: {first_line(failures.iloc[0].get('error'))}" \
        if len(failures) else ""
    warn(f"{result.n_failed} task(s) failed{first}")
    warn(f"see: hpcml status {result.run_dir}")
    return 1
