"""The ``bayesm`` kind: chains of bayesm's ``rhierMnlRwMixture`` (the seeds' distributed MCMC).

One chain per task (plan ``replicate: {n: chains}``): every chain sees the same simulated
hierarchical-logit data and its own seeded generator. Each chain's kept draws are stored
beside its results; the summary adds the split Gelman-Rubin R-hat across chains.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from hpcml.models.base import Dataset, FitContext, ModelParams, register_model
from hpcml.models.r.common import RKindBase, r_seed
from hpcml.files import atomic_write_bytes
from hpcml.models.r import bridge
from hpcml.report.tables import mean_sd_table, output_columns

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
class BayesmKind(RKindBase):
    """One MCMC chain of bayesm's rhierMnlRwMixture per task (use plan ``replicate: {n: chains}``)."""

    name = "bayesm"
    Params = BayesmParams
    primary_metric = "mean_loglike"

    def fit(self, params: BayesmParams, data: Dataset, weights, ctx: FitContext) -> dict[str, float]:
        with bridge.session():
            return self._fit(params, ctx)

    def _fit(self, params: BayesmParams, ctx: FitContext) -> dict[str, float]:
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
        chains = list(chain_draws(ok, Path(run_dir)).values())
        if not chains:
            return {"rhat": []}
        start = int(math.floor(job.params.burnin * len(chains[0])))
        rows = []
        for col in chains[0].columns:
            arr = np.stack([c[col].to_numpy()[start:] for c in chains])
            rows.append({"parameter": col, "mean": float(arr.mean()), "rhat": _finite(gelman_rubin(arr)),
                         "chains": len(chains), "draws_per_chain": int(arr.shape[1])})
        # The printed table: each output's mean/sd across chains, with R-hat beside the
        # posterior means it belongs to (mu_j; the log-likelihood's beside mean_loglike).
        rhat = {("mean_loglike" if r["parameter"] == "loglike" else r["parameter"]): r["rhat"] for r in rows}
        table = [{**row, "rhat": rhat.get(row["output"])} for row in mean_sd_table(ok, output_columns(ok))]
        return {"rhat": rows, "table": table}

    def plots(self, job, ok, summary, plot_dir) -> None:
        """``traces.png``: every chain's kept draws of each parameter, burn-in shaded, R-hat in the titles."""
        from hpcml.report.plots import traces  # matplotlib loads only where a run draws

        chains = chain_draws(ok, Path(plot_dir).parent)  # plots/ is in the run directory
        if not chains:
            return
        first = next(iter(chains.values()))
        burnin = int(math.floor(job.params.burnin * len(first)))
        rhat = {r["parameter"]: r["rhat"] for r in summary.get("rhat", [])}
        traces(chains, list(first.columns), f"{job.spec.name}: {len(chains)} chains", Path(plot_dir) / "traces.png",
               burnin=burnin, rhat=rhat)


def chain_draws(ok, run_dir: Path) -> dict[str, Any]:
    """The stored draws of every ok chain, by task id (chains whose draws are missing are left out)."""
    chains = {}
    for task_id in ok["task_id"]:
        path = Path(run_dir, "artifacts", str(task_id).replace("/", "-"), "draws.parquet")
        if path.exists():
            chains[str(task_id)] = read_draws(path)
    return chains


def write_draws(scratch: Path, draws: dict[str, np.ndarray]) -> Path:
    import pandas as pd

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
