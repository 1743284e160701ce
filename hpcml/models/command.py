"""The ``command`` kind: one command line per task (the bundler and pylauncher replaced).

    model:
      kind: command
      argv: [python, train.py, --seed, "{seed}", --out, "{scratch}"]   # or  command: "python train.py ..."
      # or a file of command lines, one task per non-empty line (plan: replicate, n = lines):
      # commands: commands.txt

Placeholders ``{task_index}``, ``{task_id}``, ``{seed}``, ``{scratch}``, each task parameter a
plan gives (``{replicate}``, ``{fold}``, ``{repeat}``, ``{shard}``, ``{n_shards}``: see
``Plan.parameters``) and ``{params.NAME}`` are filled per task; other braces are left alone. The same values are in the environment (``HPCML_TASK_INDEX``,
``HPCML_TASK_ID``, ``HPCML_SEED``, ..., ``HPCML_PARAM_NAME``). A command is split like a shell
would (``shlex``) but never run through one unless ``shell: true``.

Stdout and stderr go to the task's artifact directory. Exit 0 is success and the outputs are
the JSON object of numbers the command wrote to ``{scratch}/outputs.json`` (none if it wrote
nothing); any other exit fails the task with the last lines of stderr. When the command ends,
so does what it left in its process group (``sleep 60 &``); a timeout (``timeout_s``) or any
other interruption ends the whole group.
"""
from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, model_validator

from hpcml.models.base import Dataset, FitContext, ModelKind, ModelParams, TaskLayout, register_model
from hpcml.rundir.columns import task_parameters

# Filled for every task; the registered plans' task parameters come on top (``placeholders``).
TASK_PLACEHOLDERS = ("task_index", "task_id", "seed", "scratch")


def placeholders() -> re.Pattern:
    """``{name}`` for a placeholder of any registered plan, and ``{params.NAME}``."""
    return _pattern(TASK_PLACEHOLDERS + tuple(sorted(task_parameters())))


@functools.lru_cache(maxsize=8)
def _pattern(names: tuple[str, ...]) -> re.Pattern:
    return re.compile(r"\{(" + "|".join(map(re.escape, names)) + r"|params\.[A-Za-z_][A-Za-z0-9_]*)\}")


class CommandParams(ModelParams):
    path_fields: ClassVar[tuple[str, ...]] = ("commands", "cwd")
    argv: list[str] | None = Field(None, description="the program and its arguments (placeholders allowed)")
    command: str | None = Field(None, description="one command line, split like a shell would (shlex)")
    commands: str | None = Field(None, description="a file of command lines: task i runs the i-th non-empty, "
                                                   "non-comment line (plan: replicate with n = the number of lines)")
    shell: bool = Field(False, description="run `command` / each line through /bin/sh (pipes, redirections)")
    env: dict[str, str] = Field(default_factory=dict, description="extra environment variables (placeholders allowed)")
    cwd: str | None = Field(None, description="working directory of the command (default: the worker's)")
    tail_lines: int = Field(5, ge=1, description="lines of stderr kept in a failed task's error")
    metric: str = Field("value", description="the output a sweep ranks by")
    greater_is_better: bool = Field(True, description="whether a larger `metric` is better")

    @model_validator(mode="after")
    def _one_source(self) -> "CommandParams":
        given = [k for k in ("argv", "command", "commands") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of `argv`, `command` or `commands`")
        if self.argv is not None and (not self.argv or not self.argv[0]):
            raise ValueError("`argv` needs at least the program")
        if self.argv is not None and self.shell:
            raise ValueError("`shell: true` goes with `command` or `commands`, not `argv`")
        return self


@functools.lru_cache(maxsize=8)
def read_lines(path: str) -> tuple[str, ...]:
    """The command lines of a file: non-empty lines that are not comments (``#``)."""
    text = Path(path).read_text()
    return tuple(ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#"))


def _argv(line: str, values: dict[str, str], shell: bool) -> list[str]:
    """The line split first, then each placeholder filled: a value stays one argument, whatever
    spaces, quotes or dashes it holds; under ``shell`` it is quoted for the shell."""
    if shell:
        return ["/bin/sh", "-c", _fill(line, {k: shlex.quote(v) for k, v in values.items()})]
    return [_fill(arg, values) for arg in shlex.split(line)]


def _program_problem(argv0: str, field: str, line: str) -> tuple[str, Any, str] | None:
    if "{" in argv0 and placeholders().search(argv0):
        return None  # decided per task
    if os.sep in argv0:
        if not (Path(argv0).is_file() and os.access(argv0, os.X_OK)):
            return (field, line, f"{argv0}: no such executable file")
    elif shutil.which(argv0) is None:
        return (field, line, f"{argv0}: program not found on PATH")
    return None


def _values(ctx: FitContext, seed: int, scratch: Path) -> dict[str, str]:
    params = ctx.task_params
    values = {"task_index": ctx.task_index, "task_id": ctx.task_id, "seed": seed, "scratch": scratch,
              **{k: v for k, v in params.items() if k in task_parameters()}}
    out = {k: str(v) for k, v in values.items() if v is not None}
    for name, value in (params.get("params") or {}).items():
        out[f"params.{name}"] = str(value)
    return out


def _fill(text: str, values: dict[str, str]) -> str:
    def sub(match: re.Match) -> str:
        key = match.group(1)
        if key not in values:
            raise ValueError(f"placeholder {{{key}}} has no value in this plan")
        return values[key]

    return placeholders().sub(sub, text)


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the command and everything it started
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _end_rest(pgid: int) -> None:
    """What the command left running in its process group (``sleep 60 &``) ends with the task:
    it would hold the run's terminal pipe open and its cores. (The group's id stays taken
    while any member lives, so this reaches no one else.)"""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    kept = [ln.strip() for ln in text.splitlines() if ln.strip()][-lines:]
    return " | ".join(kept)


def read_outputs(path: Path) -> dict[str, float]:
    if not path.exists():
        return {}
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RuntimeError(f"{path.name} is not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise RuntimeError(f"{path.name} must hold a JSON object of numbers, found {type(value).__name__}")
    out = {}
    for key, v in value.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            if v is None:
                out[str(key)] = float("nan")
                continue
            raise RuntimeError(f"{path.name}: output {key!r} is not a number ({v!r})")
        out[str(key)] = float(v)
    return out


@register_model
class CommandKind(ModelKind):
    name = "command"
    code_fields = ("commands",)
    Params = CommandParams
    needs_target = False
    cheap_refit = False  # a summary never reruns commands on the driver
    primary_metric = "value"
    open_grid = True  # a sweep's grid fills {params.NAME}

    def with_params(self, base: CommandParams, overrides: dict[str, Any]) -> CommandParams:
        known = {k: v for k, v in overrides.items() if k in CommandParams.model_fields}
        return CommandParams(**{**base.model_dump(), **known})

    def sweep_metric(self, params: CommandParams) -> tuple[str, bool]:
        return params.metric, params.greater_is_better

    def check(self, params: CommandParams, data: Dataset) -> list[tuple[str, Any, str]]:
        if params.cwd is not None and not Path(params.cwd).is_dir():
            return [("model.cwd", params.cwd, "no such directory")]
        if params.commands is not None:
            if not Path(params.commands).is_file():
                return [("model.commands", params.commands, "file not found")]
            lines = read_lines(params.commands)
            if not lines:
                return [("model.commands", params.commands, "holds no command lines")]
            if params.shell:
                return []
            for number, line in enumerate(lines, 1):
                try:
                    argv = shlex.split(line)
                except ValueError as err:
                    return [("model.commands", f"{params.commands}: {line}", f"line {number}: {err}")]
                problem = _program_problem(argv[0], "model.commands", line)
                if problem is not None:
                    return [problem]
            return []
        if params.shell:
            return []
        if params.command is not None:
            try:
                argv = shlex.split(params.command)
            except ValueError as err:
                return [("model.command", params.command, str(err))]
            if not argv:
                return [("model.command", params.command, "empty command")]
            problem = _program_problem(argv[0], "model.command", params.command)
        else:
            problem = _program_problem(params.argv[0], "model.argv", params.argv[0])
        return [problem] if problem else []

    def check_tasks(self, params: CommandParams, tasks: TaskLayout) -> list[tuple[str, Any, str]]:
        """Task i runs line i: the tasks must be plain repeats, one per line."""
        if params.commands is None or not Path(params.commands).is_file():
            return []
        n_lines = len(read_lines(params.commands))
        if tasks.repeats_field is None:
            return [("plan", tasks.plan, f"model.commands runs one task per line: use plan replicate with n: {n_lines}")]
        if tasks.count != n_lines:
            return [(tasks.repeats_field, tasks.count,
                     f"{params.commands} has {n_lines} command lines; set n: {n_lines}")]
        return []

    def fit(self, params: CommandParams, data: Dataset, weights, ctx: FitContext) -> dict[str, float]:
        seed = int(ctx.rng.integers(1, 2**31 - 1))
        temp = None
        if ctx.scratch is not None:
            scratch = Path(ctx.scratch).resolve()
        else:
            temp = tempfile.mkdtemp(prefix="hpcml-command-")
            scratch = Path(temp)
        try:
            return self._run(params, ctx, seed, scratch)
        finally:
            if temp is not None:
                shutil.rmtree(temp, ignore_errors=True)

    def _run(self, params: CommandParams, ctx: FitContext, seed: int, scratch: Path) -> dict[str, float]:
        scratch.mkdir(parents=True, exist_ok=True)
        (scratch / "outputs.json").unlink(missing_ok=True)  # a retry must not read an old attempt's
        values = _values(ctx, seed, scratch)
        if params.argv is not None:
            argv = [_fill(a, values) for a in params.argv]
        else:
            line = params.command if params.command is not None else read_lines(params.commands)[int(ctx.task_index)]
            argv = _argv(line, values, params.shell)
        env = {**os.environ, **{"HPCML_" + k.upper().replace(".", "_"): v for k, v in values.items()},
               "HPCML_THREADS": str(ctx.threads), "OMP_NUM_THREADS": str(ctx.threads)}
        env.update({k: _fill(v, values) for k, v in params.env.items()})
        (scratch / "command.txt").write_text(shlex.join(argv) + "\n")
        with open(scratch / "stdout.txt", "wb") as out, open(scratch / "stderr.txt", "wb") as err:
            proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=params.cwd,
                                    start_new_session=True)
            try:
                # Short waits, not one blocking wait: a timeout raised into this thread (Dask)
                # lands between them, and the handler below ends the process group.
                while True:
                    try:
                        code = proc.wait(timeout=0.2)
                        break
                    except subprocess.TimeoutExpired:
                        continue
            except BaseException:  # the task's timeout, an interrupt: nothing of the command outlives it
                _kill_group(proc)
                raise
            _end_rest(proc.pid)
        if code != 0:
            what = f"killed by signal {-code}" if code < 0 else f"exited {code}"
            tail = _tail(scratch / "stderr.txt", params.tail_lines)
            raise RuntimeError(f"command {what}: {tail or '(no stderr)'}")
        return read_outputs(scratch / "outputs.json")

    def outputs(self, params, fitted: dict[str, float], data: Dataset) -> dict[str, float]:
        return dict(fitted)

    def score(self, params, fitted, data: Dataset, mask) -> dict[str, float]:
        return {}

