"""R task kinds: ``r`` (an R function) and ``rscript`` (an R script per task); ``bayesm`` is in
:mod:`hpcml.models.r.bayesm`.

Every R task seeds R's generator from its own task generator (L'Ecuyer-CMRG, an integer
drawn from ``ctx.rng``), so an R task gives the same numbers on every backend and worker
count. R is imported inside ``fit`` only: importing this module (which registers the kinds)
never starts R, and a machine without R fails only when an R kind runs.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from typing import Literal

from pydantic import Field, model_validator

from hpcml.models.base import Dataset, FitContext, FunctionParams, ModelParams, register_model, with_function_args
from hpcml.models.r.common import RKindBase, r_seed
from hpcml.models.r import bridge
from hpcml.trust import why_untrusted

# Arguments an R function of the ``r`` kind may declare; it receives those it names (all with ...).
R_ARGS = ("data", "weights", "task", "task_index", "seed", "threads", "scratch")


class RParams(FunctionParams):
    path_fields: ClassVar[tuple[str, ...]] = ("file", "rds")
    code: str | None = Field(None, description="R code that evaluates to a function (or defines `function`)")
    file: str | None = Field(None, description="an R file to source; `function` names the function to call")
    function: str | None = Field(None, description="name of the function defined by `code` or `file`")
    rds: str | None = Field(None, description="an RDS file holding the R function with its environment "
                                              "(written by the R package: foreach loops, hpcml_lapply, hpcml_boot)")
    result: Literal["outputs", "object"] = Field(
        "outputs", description="outputs: named numbers, one column each; object: any R value, kept serialized "
                               "(R's serialize) in column `result`")

    @model_validator(mode="after")
    def _one_source(self) -> "RParams":
        if sum(v is not None for v in (self.code, self.file, self.rds)) != 1:
            raise ValueError("give exactly one of `code`, `file` or `rds`")
        if self.file is not None and not self.function:
            raise ValueError("`file` needs `function`: the name of the function to call")
        return self


# Iterations of an R loop run in one call into R (see ``RFunctionKind.replicate_group``).
R_GROUP = 256

# Runs each iteration as ``_fit`` would: its own L'Ecuyer-CMRG seed, then the function with
# the arguments it names; an iteration that fails is left out (made alone afterwards, so its
# error is reported as any R error's). The iterations run in one plain loop under one
# tryCatch, entered again after a failure: R's condition handlers cost more than a tiny
# iteration, and a loop only calling a function that takes just `task_index` (what the R
# package's loops save) calls it directly. Serialized values come back as one raw vector and
# their lengths (three conversions through rpy2 for the whole group, not two per iteration).
_GROUP_RUNNER = """
function(fn, common, indices, seeds, tasks, want_index, want_seed, as_object) {
  n <- length(indices)
  ok <- logical(n)
  values <- vector("list", n)
  direct <- want_index && !want_seed && is.null(tasks) && !length(common)
  k <- 1L
  while (k <= n) {
    k <- tryCatch({
      for (j in k:n) {
        set.seed(seeds[j], kind = "L'Ecuyer-CMRG", normal.kind = "Inversion", sample.kind = "Rejection")
        value <- if (direct) fn(task_index = indices[j]) else {
          args <- common
          if (want_index) args$task_index <- indices[j]
          if (want_seed) args$seed <- seeds[j]
          if (!is.null(tasks)) args$task <- tasks[[j]]
          do.call(fn, args)
        }
        if (as_object) value <- serialize(value, NULL)
        if (!is.null(value)) values[[j]] <- value
        ok[j] <- TRUE
      }
      n + 1L
    }, error = function(e) j + 1L)
  }
  if (!as_object) return(list(ok, values))
  list(ok, lengths(values), unlist(values, use.names = FALSE))
}
"""


def _group_runner():
    return bridge.evaluate(_GROUP_RUNNER)


_FUNCTIONS: dict[tuple, Any] = {}
_FRAMES: dict[int, tuple[Any, Any]] = {}


def _function(params: RParams):
    """The R function of a spec, evaluated once per process in an environment of its own."""
    key = (params.code, params.file, params.rds, params.function)
    if key not in _FUNCTIONS:
        if params.rds is not None:
            # An RDS is one R loop's function with the data it exports; a process that serves
            # loop after loop (an MPI rank of an R script) keeps only the latest.
            for old in [k for k in _FUNCTIONS if k[2] is not None]:
                del _FUNCTIONS[old]
        env = bridge.evaluate("new.env(parent = globalenv())")
        if params.rds is not None:  # read once per process: the loop body and everything it exports
            value = bridge.call(bridge.r().r["readRDS"], params.rds)
            _attach_shared_vectors(value)
        elif params.file is not None:
            bridge.call(bridge.r().r["sys.source"], params.file, envir=env)
            value = None
        else:
            # parsed inside bridge.call: a syntax error is an RError with R's whole message
            parsed = bridge.call(bridge.r().r["parse"], text=params.code)
            value = bridge.call(bridge.r().r["eval"], parsed, envir=env)
        if params.function:
            if not bridge.r().r["exists"](params.function, envir=env, inherits=False)[0]:
                raise bridge.RError(f"model.function: {params.function!r} is not defined by the R code")
            value = env.find(params.function)
        if "function" not in bridge.r().r["class"](value):
            raise bridge.RError("model.code must evaluate to an R function (or set model.function)")
        formals = list(bridge.r().r["names"](bridge.r().r["formals"](value)) or [])
        _FUNCTIONS[key] = (value, formals)
    return _FUNCTIONS[key]


# The files of the large vectors an RDS function refers to (the R package's shared.R), and the
# call that maps them into the function's environment.
_SHARED_FILES = """function(fn) {
  e <- environment(fn)
  if (is.environment(e) && exists(".hpcml_attach", envir = e, inherits = FALSE)) e$.hpcml_shared_files
}"""
_ATTACH = "function(fn) environment(fn)$.hpcml_attach()"


def _attach_shared_vectors(fn) -> None:
    """Map the large vectors the loop's function refers to, each checked first as the Python
    side checks its shared data: this user's file, in directories no other user can write."""
    files = bridge.call(bridge.evaluate(_SHARED_FILES), fn)
    if files is bridge.r().NULL:
        return
    for path in files:
        why = why_untrusted(Path(path))
        if why is not None:
            raise bridge.RError(f"model.rds: the shared copy of an R vector {path} {why}; on a cluster, the "
                                f"cache directory (HPCML_CACHE_DIR) must be one that every node shares")
    bridge.call(bridge.evaluate(_ATTACH), fn)


def _frame(data: Dataset):
    """The data as an R data.frame, converted once per process (the Dataset is cached too)."""
    cached = _FRAMES.get(id(data.X))
    if cached is None or cached[0] is not data.X:
        _FRAMES.clear()
        cached = _FRAMES[id(data.X)] = (data.X, bridge.frame(data.X, data.features))
    return cached[1]


def _scratch(ctx: FitContext) -> str:
    """The task's artifact folder (created), for files R code keeps: draws, fitted objects."""
    path = Path(ctx.scratch) if ctx.scratch is not None else Path(tempfile.mkdtemp(prefix="hpcml-r-scratch-"))
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


@register_model
class RFunctionKind(RKindBase):
    """Call an R function with the data (a data.frame) and the task; it returns named numbers."""

    name = "r"
    code_fields = ("file", "rds")
    Params = RParams
    primary_metric = "value"
    open_grid = True  # a sweep's grid names the function's own arguments (model.args)
    forks_in_task = True  # threads_per_task > 1: doParallel forks R inside the task

    def check(self, params: RParams, data: Dataset) -> list[tuple[str, Any, str]]:
        if data.target is not None:
            return [("data.target", data.target, "the r kind passes every column to the R function; "
                     "remove data.target and use the column in R")]
        for name in ("file", "rds"):
            path = getattr(params, name)
            if path is not None and not Path(path).is_file():
                return [(f"model.{name}", path, "file not found")]
        return []

    def with_params(self, base: RParams, overrides: dict[str, Any]) -> RParams:
        return with_function_args(base, overrides)

    def sweep_metric(self, params: RParams) -> tuple[str, bool]:
        return params.metric, params.greater_is_better

    def fit(self, params: RParams, data: Dataset, weights: np.ndarray | None, ctx: FitContext) -> dict[str, float]:
        with bridge.session():
            return self._fit(params, data, weights, ctx)

    def replicate_group(self, params: RParams) -> int:
        # An R loop's iterations (foreach, hpcml_lapply, hpcml_boot) in one call into R each
        # group: the per-call cost of rpy2 (about a millisecond) is paid once per group.
        return R_GROUP

    def fit_replicates(self, params: RParams, data: Dataset, ctxs: list[FitContext]) -> list[dict[str, Any] | None]:
        with bridge.session():
            fn, formals = _function(params)
            wanted = R_ARGS if "..." in formals else [a for a in R_ARGS if a in formals]
            if "scratch" in wanted or "weights" in wanted or any(c.threads > 1 for c in ctxs):
                return [None] * len(ctxs)  # per-run folders, weights or forked R: one by one
            seeds = [r_seed(ctx) for ctx in ctxs]
            common = {k: bridge.to_r(v) if isinstance(v, (dict, list)) else v for k, v in params.args.items()}
            if "data" in wanted:
                common["data"] = _frame(data)
            if "threads" in wanted:
                common["threads"] = 1
            tasks = bridge.to_r([c.task_params for c in ctxs]) if "task" in wanted else bridge.r().NULL
            bridge.evaluate("if (requireNamespace('foreach', quietly = TRUE)) foreach::registerDoSEQ()")
            runs = bridge.call(_group_runner(), fn, bridge.to_r(common),
                               bridge.r().IntVector([int(c.task_index or 0) for c in ctxs]),
                               bridge.r().IntVector(seeds), tasks, "task_index" in wanted, "seed" in wanted,
                               params.result == "object")
            ok = [bool(v) for v in runs[0]]  # a failed run is made alone: its error reported as any R error
            if params.result == "object":
                blob = bridge.raw_bytes(runs[2]) if len(runs[2]) else b""
                ends = np.cumsum(np.asarray(runs[1], dtype=np.int64))
                starts = ends - np.asarray(runs[1], dtype=np.int64)
                return [{"result": blob[a:b]} if good else None for good, a, b in zip(ok, starts, ends)]
            out: list[dict[str, Any] | None] = []
            for good, value in zip(ok, runs[1]):
                try:
                    out.append(bridge.scalars(value, "the R function") if good else None)
                except Exception:
                    out.append(None)
            return out

    def _fit(self, params: RParams, data: Dataset, weights: np.ndarray | None, ctx: FitContext) -> dict[str, float]:
        seed = r_seed(ctx)
        fn, formals = _function(params)
        bridge.seed(seed)
        if ctx.threads > 1:  # hybrid runs: %dopar% inside the task uses the task's threads
            bridge.evaluate(f"if (requireNamespace('doParallel', quietly = TRUE)) "
                            f"doParallel::registerDoParallel(cores = {int(ctx.threads)})")
        else:
            bridge.evaluate("if (requireNamespace('foreach', quietly = TRUE)) foreach::registerDoSEQ()")
        wanted = R_ARGS if "..." in formals else [a for a in R_ARGS if a in formals]
        values = {"data": lambda: _frame(data), "weights": lambda: bridge.to_r(weights),
                  "task": lambda: bridge.to_r(ctx.task_params), "task_index": lambda: int(ctx.task_index or 0),
                  "seed": lambda: seed, "threads": lambda: int(ctx.threads), "scratch": lambda: _scratch(ctx)}
        kwargs = {a: values[a]() for a in wanted}
        kwargs.update({k: bridge.to_r(v) if isinstance(v, (dict, list)) else v for k, v in params.args.items()})
        value = bridge.call(fn, **kwargs)
        if params.result == "object":
            return {"result": bridge.raw_bytes(bridge.call(bridge.function("serialize"), value, bridge.r().NULL))}
        return bridge.scalars(value, "the R function")


class RScriptParams(ModelParams):
    path_fields: ClassVar[tuple[str, ...]] = ("file",)
    file: str = Field(description="the R script; run as `Rscript file <task_index> [args...]`")
    args: list[str] = Field(default_factory=list, description="extra command-line arguments after the task index")
    rscript: str = Field("Rscript", description="the Rscript executable")


@register_model
class RScriptKind(RKindBase):
    """One ``Rscript file <task_index>`` per task (the packing pattern), outputs read back as JSON.

    The script writes a named list of numbers to the file in env ``HPCML_OUTPUT`` (e.g.
    ``jsonlite::write_json(res, Sys.getenv("HPCML_OUTPUT"), auto_unbox = TRUE, digits = NA)``)
    or prints it as JSON on its last line of output. R's generator is already seeded for the
    task (through R_PROFILE_USER); the seed is also in env ``HPCML_SEED``.
    """

    name = "rscript"
    code_fields = ("file",)
    Params = RScriptParams
    primary_metric = "value"

    def check(self, params: RScriptParams, data: Dataset) -> list[tuple[str, Any, str]]:
        if not Path(params.file).is_file():
            return [("model.file", params.file, "file not found")]
        if shutil.which(params.rscript) is None:
            return [("model.rscript", params.rscript, "not found on PATH (install R)")]
        return []

    def fit(self, params: RScriptParams, data: Dataset, weights, ctx: FitContext) -> dict[str, float]:
        seed = r_seed(ctx)
        index = int(ctx.task_index or 0)
        with tempfile.TemporaryDirectory(prefix="hpcml-rscript-") as tmp:
            scratch = _scratch(ctx) if ctx.scratch is not None else tmp  # exists before the script starts
            out = Path(tmp, "output.json")
            profile = Path(tmp, "seed.R")
            profile.write_text(f'RNGkind("L\'Ecuyer-CMRG", "Inversion", "Rejection"); set.seed({seed}L)\n')
            env = {**os.environ, "HPCML_OUTPUT": str(out), "HPCML_SEED": str(seed), "HPCML_TASK_INDEX": str(index),
                   "HPCML_TASK_ID": ctx.task_id or "", "HPCML_THREADS": str(ctx.threads),
                   "HPCML_SCRATCH": scratch, "R_PROFILE_USER": str(profile)}
            proc = subprocess.run([params.rscript, params.file, str(index), *params.args], env=env,
                                  capture_output=True, text=True)
            if ctx.scratch is not None:
                Path(ctx.scratch).mkdir(parents=True, exist_ok=True)
                Path(ctx.scratch, "Rstd_out.txt").write_text(proc.stdout + proc.stderr)
            if proc.returncode != 0:
                raise RuntimeError(f"Rscript exited {proc.returncode}: {_last_error(proc.stderr)}")
            text = out.read_text() if out.exists() else _last_line(proc.stdout)
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise RuntimeError(f"{params.file}: no JSON output (write it to $HPCML_OUTPUT); got {text[:80]!r}") from None
        return _json_scalars(value, params.file)


def _last_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _last_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and ln.strip() != "Execution halted"]
    for i, ln in enumerate(lines):  # R prints "Error in f() : " then the message on the next line
        if ln.startswith("Error"):
            msg = ln.split(" : ", 1)[1].strip() if " : " in ln else ln.split(":", 1)[-1].strip()
            return msg or (lines[i + 1] if i + 1 < len(lines) else ln)
    return lines[-1] if lines else "no error message"


def _json_scalars(value: Any, what: str) -> dict[str, float]:
    if not isinstance(value, dict) or not value:
        raise RuntimeError(f"{what}: output must be a named list of numbers, got {type(value).__name__}")
    out = {}
    for k, v in value.items():
        v = v[0] if isinstance(v, list) and len(v) == 1 else v
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise RuntimeError(f"{what}: output {k!r} is not one number ({v!r})")
        out[str(k)] = float(v)
    return out
