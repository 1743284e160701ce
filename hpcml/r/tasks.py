"""R task kinds: ``r`` (an R function), ``rscript`` (an R script per task) and ``bayesm`` (MCMC chains).

Every R task seeds R's generator from its own task generator (L'Ecuyer-CMRG, an integer
drawn from ``ctx.rng``), so an R task gives the same numbers on every backend and worker
count. R is imported inside ``fit`` only: importing this module (which registers the kinds)
never starts R, and a machine without R fails only when an R kind runs.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from hpcml.models.base import Dataset, FitContext, ModelKind, ModelParams, register_model

# Arguments an R function of the ``r`` kind may declare; it receives those it names (all with ...).
R_ARGS = ("data", "weights", "task", "task_index", "seed", "threads")


def r_seed(ctx: FitContext) -> int:
    """The integer R's set.seed gets: the first draw of the task's own generator."""
    return int(ctx.rng.integers(1, 2**31 - 1))


class RParams(ModelParams):
    code: str | None = Field(None, description="R code that evaluates to a function (or defines `function`)")
    file: str | None = Field(None, description="an R file to source; `function` names the function to call")
    function: str | None = Field(None, description="name of the function defined by `code` or `file`")
    args: dict[str, Any] = Field(default_factory=dict, description="extra named arguments for the function")

    @model_validator(mode="after")
    def _one_source(self) -> "RParams":
        if (self.code is None) == (self.file is None):
            raise ValueError("give exactly one of `code` or `file`")
        if self.file is not None and not self.function:
            raise ValueError("`file` needs `function`: the name of the function to call")
        return self


_FUNCTIONS: dict[tuple, Any] = {}
_FRAMES: dict[int, tuple[Any, Any]] = {}


def _function(params: RParams):
    """The R function of a spec, evaluated once per process in an environment of its own."""
    from . import bridge

    key = (params.code, params.file, params.function)
    if key not in _FUNCTIONS:
        env = bridge.evaluate("new.env(parent = globalenv())")
        if params.file is not None:
            bridge.call(bridge.r().r["sys.source"], params.file, envir=env)
            value = None
        else:
            value = bridge.call(bridge.r().r["eval"], bridge.r().r["parse"](text=params.code), envir=env)
        if params.function:
            if not bridge.r().r["exists"](params.function, envir=env, inherits=False)[0]:
                raise bridge.RError(f"model.function: {params.function!r} is not defined by the R code")
            value = env.find(params.function)
        if "function" not in bridge.r().r["class"](value):
            raise bridge.RError("model.code must evaluate to an R function (or set model.function)")
        formals = list(bridge.r().r["names"](bridge.r().r["formals"](value)) or [])
        _FUNCTIONS[key] = (value, formals)
    return _FUNCTIONS[key]


def _frame(data: Dataset):
    """The data as an R data.frame, converted once per process (the Dataset is cached too)."""
    from . import bridge

    cached = _FRAMES.get(id(data.X))
    if cached is None or cached[0] is not data.X:
        _FRAMES.clear()
        cached = _FRAMES[id(data.X)] = (data.X, bridge.frame(data.X, data.features))
    return cached[1]


class _RKindBase(ModelKind):
    needs_target = False
    cheap_refit = False  # summaries never refit R code on the driver

    def outputs(self, params, fitted: dict[str, float], data: Dataset) -> dict[str, float]:
        return dict(fitted)

    def score(self, params, fitted, data: Dataset, mask) -> dict[str, float]:
        return {}


@register_model
class RFunctionKind(_RKindBase):
    """Call an R function with the data (a data.frame) and the task; it returns named numbers."""

    name = "r"
    Params = RParams
    primary_metric = "value"

    def check(self, params: RParams, data: Dataset) -> list[tuple[str, Any, str]]:
        if data.target is not None:
            return [("data.target", data.target, "the r kind passes every column to the R function; "
                     "remove data.target and use the column in R")]
        if params.file is not None and not Path(params.file).is_file():
            return [("model.file", params.file, "file not found")]
        return []

    def fit(self, params: RParams, data: Dataset, weights: np.ndarray | None, ctx: FitContext) -> dict[str, float]:
        from . import bridge

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
                  "seed": lambda: seed, "threads": lambda: int(ctx.threads)}
        kwargs = {a: values[a]() for a in wanted}
        kwargs.update({k: bridge.to_r(v) if isinstance(v, (dict, list)) else v for k, v in params.args.items()})
        return bridge.scalars(bridge.call(fn, **kwargs), "the R function")


class RScriptParams(ModelParams):
    file: str = Field(description="the R script; run as `Rscript file <task_index> [args...]`")
    args: list[str] = Field(default_factory=list, description="extra command-line arguments after the task index")
    rscript: str = Field("Rscript", description="the Rscript executable")


@register_model
class RScriptKind(_RKindBase):
    """One ``Rscript file <task_index>`` per task (the packing pattern), outputs read back as JSON.

    The script writes a named list of numbers to the file in env ``HPCML_OUTPUT`` (e.g.
    ``jsonlite::write_json(res, Sys.getenv("HPCML_OUTPUT"), auto_unbox = TRUE, digits = NA)``)
    or prints it as JSON on its last line of output. R's generator is already seeded for the
    task (through R_PROFILE_USER); the seed is also in env ``HPCML_SEED``.
    """

    name = "rscript"
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
            out = Path(tmp, "output.json")
            profile = Path(tmp, "seed.R")
            profile.write_text(f'RNGkind("L\'Ecuyer-CMRG"); set.seed({seed}L)\n')
            env = {**os.environ, "HPCML_OUTPUT": str(out), "HPCML_SEED": str(seed), "HPCML_TASK_INDEX": str(index),
                   "HPCML_TASK_ID": ctx.task_id or "", "HPCML_THREADS": str(ctx.threads),
                   "HPCML_SCRATCH": str(ctx.scratch or tmp), "R_PROFILE_USER": str(profile)}
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


# --- bayesm: chains of rhierMnlRwMixture on simulated hierarchical logit data -------------

_BAYESM_R = r"""
function(n_units, n_alt, n_obs, n_attr, data_seed, R, keep, ncomp, chain_seed) {
  # The data depend on data_seed only (every chain sees the same data); the chain on chain_seed.
  set.seed(data_seed)
  k <- (n_alt - 1) + n_attr
  mu <- seq(-1, 1, length.out = k)
  lgtdata <- vector("list", n_units)
  for (i in seq_len(n_units)) {
    beta <- mu + rnorm(k, sd = 0.5)
    Xa <- matrix(runif(n_obs * n_alt * n_attr, -1.5, 0), ncol = n_alt * n_attr)
    X <- bayesm::createX(p = n_alt, na = n_attr, nd = NULL, Xa = Xa, Xd = NULL, base = 1)
    util <- matrix(X %*% beta, ncol = n_alt, byrow = TRUE)
    prob <- exp(util) / rowSums(exp(util))
    y <- apply(prob, 1, function(p) sample.int(n_alt, 1, prob = p))
    lgtdata[[i]] <- list(y = y, X = X)
  }
  set.seed(chain_seed)
  out <- bayesm::rhierMnlRwMixture(Data = list(p = n_alt, lgtdata = lgtdata), Prior = list(ncomp = ncomp),
                                   Mcmc = list(R = R, keep = keep, nprint = 0))
  # Population mean per draw: the mixture's mean, which label switching leaves unchanged.
  nmix <- out$nmix
  mu_draws <- do.call(rbind, lapply(seq_along(nmix$compdraw), function(r) {
    comps <- nmix$compdraw[[r]]
    Reduce(`+`, lapply(seq_along(comps), function(j) nmix$probdraw[r, j] * comps[[j]]$mu))
  }))
  list(mu = mu_draws, beta_mean = apply(out$betadraw, c(3, 2), mean), loglike = as.numeric(out$loglike),
       true_mu = mu)
}
"""


class BayesmParams(ModelParams):
    n_units: int = Field(100, ge=2, description="units (households) in the simulated hierarchical logit")
    n_alternatives: int = Field(3, ge=2, description="choice alternatives")
    n_obs_per_unit: int = Field(10, ge=1, description="choices observed per unit")
    n_attributes: int = Field(1, ge=1, description="attributes per alternative (plus n_alternatives-1 intercepts)")
    R: int = Field(2000, ge=10, description="MCMC draws per chain")
    keep: int = Field(5, ge=1, description="thinning: keep every keep-th draw")
    ncomp: int = Field(1, ge=1, description="normal mixture components of the prior on unit coefficients")
    burnin: float = Field(0.5, ge=0, lt=1, description="fraction of kept draws dropped before posterior means")
    data_seed: int | None = Field(None, ge=0, description="seed of the simulated data (default: the job seed)")

    @model_validator(mode="after")
    def _enough_draws(self) -> "BayesmParams":
        if self.R // self.keep < 4:
            raise ValueError(f"R/keep = {self.R // self.keep} kept draws; need at least 4")
        return self


@register_model
class BayesmKind(_RKindBase):
    """One MCMC chain of bayesm's rhierMnlRwMixture per task (use plan ``replicate: {n: chains}``)."""

    name = "bayesm"
    Params = BayesmParams
    primary_metric = "mean_loglike"

    def fit(self, params: BayesmParams, data: Dataset, weights, ctx: FitContext) -> dict[str, float]:
        from . import bridge

        seed = r_seed(ctx)
        bridge.seed(seed)
        fn = bridge.evaluate(_BAYESM_R)
        data_seed = params.data_seed if params.data_seed is not None else (ctx.seed or 0)
        res = bridge.call(fn, params.n_units, params.n_alternatives, params.n_obs_per_unit, params.n_attributes,
                          int(data_seed % (2**31 - 1)), params.R, params.keep, params.ncomp, seed)
        res = {k: np.asarray(bridge.to_py(res.rx2(k)), dtype=np.float64) for k in res.names}
        mu = np.atleast_2d(res["mu"])
        names = [f"mu_{j + 1}" for j in range(mu.shape[1])]
        draws = {**{n: mu[:, j] for j, n in enumerate(names)}, "loglike": res["loglike"]}
        if ctx.scratch is not None:
            write_draws(Path(ctx.scratch), draws)
        start = int(math.floor(params.burnin * mu.shape[0]))
        out = {f"{n}": float(mu[start:, j].mean()) for j, n in enumerate(names)}
        beta = np.atleast_2d(res["beta_mean"])
        out.update({f"beta_mean_{j + 1}": float(beta[start:, j].mean()) for j in range(beta.shape[1])})
        out.update({f"true_mu_{j + 1}": float(v) for j, v in enumerate(np.ravel(res["true_mu"]))})
        out["mean_loglike"] = float(res["loglike"][start:].mean())
        return out

    def summarize_extra(self, job, results, run_dir) -> dict[str, Any]:
        """Gelman-Rubin R-hat of each parameter across the chains' stored draws."""
        ok = results.loc[results["status"] == "ok"] if "status" in results else results
        chains = []
        for task_id in ok["task_id"]:
            path = Path(run_dir, "artifacts", str(task_id).replace("/", "-"), "draws.parquet")
            if path.exists():
                chains.append(read_draws(path))
        if not chains:
            return {"rhat": []}
        start = int(math.floor(job.params.burnin * len(chains[0])))
        rows = []
        for col in chains[0].columns:
            arr = np.stack([c[col].to_numpy()[start:] for c in chains])
            rows.append({"parameter": col, "mean": float(arr.mean()), "rhat": _finite(gelman_rubin(arr)),
                         "chains": len(chains), "draws_per_chain": int(arr.shape[1])})
        return {"rhat": rows}


def write_draws(scratch: Path, draws: dict[str, np.ndarray]) -> Path:
    import pandas as pd

    from hpcml.store import atomic_write_bytes

    path = scratch / "draws.parquet"
    atomic_write_bytes(path, pd.DataFrame(draws).to_parquet(index=False))
    return path


def read_draws(path: Path):
    import pandas as pd

    return pd.read_parquet(path)


def gelman_rubin(chains: np.ndarray) -> float:
    """Potential scale reduction factor R-hat (Gelman & Rubin 1992; BDA3 eq. 11.4).

    ``chains`` is (m chains, n draws), burn-in already removed. Each chain is split in half
    (split R-hat) so a single drifting chain is caught too. Near 1 means the chains agree.
    """
    chains = np.asarray(chains, dtype=np.float64)
    m, n = chains.shape
    half = n // 2
    if half < 2:
        return math.nan
    split = np.concatenate([chains[:, :half], chains[:, n - half:]], axis=0)
    n = half
    means = split.mean(axis=1)
    W = split.var(axis=1, ddof=1).mean()
    B = n * means.var(ddof=1)
    var_plus = (n - 1) / n * W + B / n
    return float(np.sqrt(var_plus / W)) if W > 0 else math.nan


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None
