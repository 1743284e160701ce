"""hpcml's inference against R itself (Rscript): summary(lm), summary(glm), model.matrix,
prcomp and kmeans on data that ships with R packages (AER's HMDA, datasets' USArrests).

Tolerances: coefficient tables 1e-6 relative, p-values below 1e-3 as log p
(measured: ~1e-12 for lm; for glm estimates ~1e-14 and standard errors ~5e-8 against
glm.control(epsilon = 1e-14): R takes the information matrix from the working weights of the
iteration before the last, hpcml at the estimate. With R's default epsilon = 1e-8 that lag is
~1e-4 in the standard errors, checked to 1e-3), design matrices
exactly, prcomp rotation (up to sign) and sdev 1e-8, kmeans centres 1e-6 on R's partition.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hpcml import run

pytestmark = [pytest.mark.r, pytest.mark.timeout(300)]

if shutil.which("Rscript") is None:
    pytest.skip("Rscript not installed", allow_module_level=True)


def rscript(code: str) -> dict:
    """Run R code whose last value is a list; returns it through JSON at full precision."""
    wrapped = f"suppressMessages({{ x <- local({{ {code} }}) }}); cat(jsonlite::toJSON(x, digits = NA, na = 'null'))"
    proc = subprocess.run(["Rscript", "-e", wrapped], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        pytest.skip(f"R failed (AER or jsonlite missing?): {proc.stderr[-500:]}")
    return json.loads(proc.stdout)


HMDA_R = 'data("HMDA", package = "AER"); d <- HMDA; d$deny01 <- as.numeric(d$deny == "yes")'
FEATURES = ["afam", "pirat", "hirat", "lvrat", "chist", "single"]
FORMULA = "afam + pirat + hirat + lvrat + chist + single"


@pytest.fixture(scope="module")
def hmda(tmp_path_factory) -> Path:
    """HMDA as R has it: afam/single/deny text, chist a factor (a pandas category here)."""
    path = tmp_path_factory.mktemp("hmda") / "hmda.parquet"
    cols = rscript(f'{HMDA_R}; list(deny = as.character(d$deny), afam = as.character(d$afam), '
                   'single = as.character(d$single), chist = as.character(d$chist), '
                   'chist_levels = levels(d$chist), pirat = d$pirat, hirat = d$hirat, lvrat = d$lvrat)')
    frame = pd.DataFrame({k: cols[k] for k in ("deny", "afam", "pirat", "hirat", "lvrat", "single")})
    frame["chist"] = pd.Categorical(cols["chist"], categories=cols["chist_levels"])
    frame["deny01"] = (frame["deny"] == "yes").astype(float)
    frame.to_parquet(path, index=False)
    return path


def fit_run(tmp_path: Path, source: Path, kind: str, target: str, features: list[str]):
    spec = {"name": f"r-{kind}", "data": {"source": str(source), "target": target},
            "model": {"kind": kind, "features": features}, "plan": {"fit": {}},
            "backend": {"name": "local", "workers": 1}, "output": str(tmp_path / kind)}
    res = run(spec, progress=False, plots=False)
    assert res.ok, res.failures()[["error"]]
    return res.summary


def coef_table(fit: str) -> str:
    """R code: the coefficient matrix of summary(fit), NA rows for aliased terms, + intervals."""
    return (f'm <- {fit}; s <- summary(m); cf <- coef(s); al <- names(coef(m)); '
            'full <- matrix(NA_real_, length(al), 4, dimnames = list(al, colnames(cf))); full[rownames(cf), ] <- cf; '
            'ci <- suppressMessages(if (inherits(m, "glm")) confint.default(m) else confint(m)); '
            'list(terms = al, est = full[, 1], se = full[, 2], stat = full[, 3], p = full[, 4], '
            'lo = ci[, 1], hi = ci[, 2], s = unclass(s)[intersect(names(s), c("sigma", "r.squared", '
            '"adj.r.squared", "fstatistic", "deviance", "null.deviance", "aic", "df.residual", "df.null"))])')


def assert_table(ours: list[dict], ref: dict, stat: str, rtol: float) -> None:
    assert [r["term"] for r in ours] == ref["terms"]
    for key, col in (("est", "estimate"), ("se", "std_error"), ("stat", stat), ("p", "p_value"),
                     ("lo", "ci_low"), ("hi", "ci_high")):
        want = np.array([np.nan if v is None else v for v in ref[key]], dtype=float)
        got = np.array([np.nan if r[col] is None else r[col] for r in ours], dtype=float)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=col)
        if key == "p":
            # In the tail, p's relative error is ~z^2 times z's: 5e-8 in z (glm) is 1.5e-6 in
            # a p of 3e-8 and 1e-5 in a p of 1e-44. Small p-values are compared as log p.
            tiny = want < 1e-3
            np.testing.assert_allclose(np.log(got[tiny]), np.log(want[tiny]), rtol=rtol, err_msg=col)
            got, want = got[~tiny], want[~tiny]
        np.testing.assert_allclose(got, want, rtol=rtol, atol=0, err_msg=col)


def test_ols_fit_is_summary_lm_with_factors(tmp_path, hmda):
    summary = fit_run(tmp_path, hmda, "ols", "deny01", FEATURES)
    ref = rscript(f"{HMDA_R}; {coef_table(f'lm(deny01 ~ {FORMULA}, data = d)')}")
    assert ref["terms"][:3] == ["(Intercept)", "afamyes", "pirat"] and "chist6" in ref["terms"]
    assert_table(summary["table"], ref, "t_value", 1e-6)
    st, rs = summary["statistics"], ref["s"]
    np.testing.assert_allclose([st["sigma"], st["r_squared"], st["adj_r_squared"], st["f_statistic"]],
                               [rs["sigma"][0], rs["r.squared"][0], rs["adj.r.squared"][0], rs["fstatistic"][0]],
                               rtol=1e-9)
    assert [st["f_df1"], st["f_df2"]] == rs["fstatistic"][1:]
    assert summary["aliased"] == [] and "note" not in summary


def test_logistic_fit_is_summary_glm_with_factors(tmp_path, hmda):
    summary = fit_run(tmp_path, hmda, "logistic", "deny", FEATURES)
    tight = rscript(f"{HMDA_R}; {coef_table(f'glm(deny ~ {FORMULA}, data = d, family = binomial, control = glm.control(epsilon = 1e-14, maxit = 100))')}")
    assert_table(summary["table"], tight, "z_value", 1e-6)
    st, rs = summary["statistics"], tight["s"]
    np.testing.assert_allclose([st["deviance"], st["null_deviance"], st["aic"]],
                               [rs["deviance"][0], rs["null.deviance"][0], rs["aic"][0]], rtol=1e-10)
    assert (st["df_residual"], st["df_null"]) == (rs["df.residual"][0], rs["df.null"][0])
    # R's default control stops one Fisher-scoring step earlier: SEs from that step's weights.
    default = rscript(f"{HMDA_R}; {coef_table(f'glm(deny ~ {FORMULA}, data = d, family = binomial)')}")
    got = np.array([r["std_error"] for r in summary["table"]])
    np.testing.assert_allclose(got, default["se"], rtol=1e-3)
    assert "warning" not in summary


def test_aliased_columns_are_na_as_lm(tmp_path, hmda):
    frame = pd.read_parquet(hmda)
    frame["pirat2"] = 2 * frame["pirat"] - frame["hirat"]  # exactly collinear with earlier columns
    frame["one"] = 1.0  # constant: collinear with the intercept
    path = tmp_path / "aliased.parquet"
    frame.to_parquet(path, index=False)
    summary = fit_run(tmp_path, path, "ols", "deny01", ["afam", "pirat", "hirat", "one", "pirat2", "lvrat"])
    ref = rscript(f"{HMDA_R}; d$pirat2 <- 2 * d$pirat - d$hirat; d$one <- 1; "
                  f"{coef_table('lm(deny01 ~ afam + pirat + hirat + one + pirat2 + lvrat, data = d)')}")
    assert_table(summary["table"], ref, "t_value", 1e-6)
    assert summary["aliased"] == ["one", "pirat2"] and "singularities" in summary["note"]
    assert summary["statistics"]["rank"] == 5
    logit = fit_run(tmp_path, path, "logistic", "deny", ["afam", "pirat", "hirat", "one", "pirat2", "lvrat"])
    # glm.fit's QR tolerance is min(1e-7, epsilon / 1000): R's default control (1e-11) aliases,
    # a tighter epsilon would not, so the reference is the default fit (SEs to 1e-3, above).
    ref = rscript(f"{HMDA_R}; d$pirat2 <- 2 * d$pirat - d$hirat; d$one <- 1; "
                  f"{coef_table('glm(deny ~ afam + pirat + hirat + one + pirat2 + lvrat, data = d, family = binomial)')}")
    assert_table(logit["table"], ref, "z_value", 1e-3)
    assert logit["aliased"] == ["one", "pirat2"]


def test_design_matrix_is_model_matrix(hmda):
    from hpcml.data.sources import frame_to_dataset
    from hpcml.spec import DataSpec

    frame = pd.read_parquet(hmda)
    frame["selfemp"] = frame["single"] == "yes"  # a bool column: R's logical, dummy named ...TRUE
    data = frame_to_dataset(frame, DataSpec(source="x.parquet", target="deny01"), FEATURES + ["selfemp"], True)
    ref = rscript(f"{HMDA_R}; d$selfemp <- d$single == 'yes'; "
                  f"mm <- model.matrix(~ {FORMULA} + selfemp, d)[, -1]; list(names = colnames(mm), x = unname(mm))")
    assert data.features == ref["names"]
    np.testing.assert_array_equal(data.X, np.array(ref["x"], dtype=float))
    assert data.meta["factors"]["chist"] == ["1", "2", "3", "4", "5", "6"]


def test_pca_scale_is_prcomp(tmp_path):
    ref = rscript("p <- prcomp(USArrests, scale. = TRUE); "
                  "list(x = unname(as.matrix(USArrests)), names = names(USArrests), sdev = p$sdev, "
                  "rotation = unname(p$rotation), scores = unname(p$x))")
    frame = pd.DataFrame(np.array(ref["x"], dtype=float), columns=ref["names"])
    res = run({"name": "r-pca", "data": {"source": "x"}, "model": {"kind": "pca", "scale": True},
               "plan": {"fit": {}}, "backend": {"name": "local", "workers": 1}, "output": str(tmp_path / "pca")},
              data=frame, progress=False, plots=False)
    assert res.ok
    summary = res.summary
    np.testing.assert_allclose(summary["sdev"], ref["sdev"], rtol=1e-8)  # every component by default
    rotation = np.array([[row[f"PC{j + 1}"] for j in range(4)] for row in summary["loadings"]])
    want = np.array(ref["rotation"], dtype=float)
    signs = np.sign(np.sum(rotation * want, axis=0))  # prcomp's signs are LAPACK's: compare up to sign
    np.testing.assert_allclose(rotation * signs, want, rtol=1e-8, atol=1e-12)
    scores = pd.read_parquet(Path(res.run_dir, summary["scores_file"])).to_numpy()
    np.testing.assert_allclose(scores * signs, np.array(ref["scores"], dtype=float), rtol=1e-8, atol=1e-10)
    assert [r["feature"] for r in summary["loadings"]] == ref["names"]
    cum = np.cumsum(np.square(ref["sdev"])) / 4  # 4 unit-variance columns
    assert summary["variance_thresholds"]["k_95"] == int(np.argmax(cum >= 0.95)) + 1


def test_kmeans_centres_and_sizes_are_r_kmeans(tmp_path):
    ref = rscript("x <- iris[, 1:4]; set.seed(1); km <- kmeans(x, 3, nstart = 25); "
                  "list(x = unname(as.matrix(x)), names = names(x), centers = unname(km$centers), "
                  "size = km$size, cluster = km$cluster, tot = km$tot.withinss)")
    frame = pd.DataFrame(np.array(ref["x"], dtype=float), columns=[n.replace(".", "_") for n in ref["names"]])
    res = run({"name": "r-km", "data": {"source": "x"}, "model": {"kind": "kmeans", "k": 3},
               "plan": {"fit": {}}, "backend": {"name": "local", "workers": 1}, "output": str(tmp_path / "km")},
              data=frame, progress=False, plots=False)
    assert res.ok
    row = res.results.iloc[0]
    ours = np.array([[row[f"center_{j}_{f}"] for f in frame.columns] for j in (1, 2, 3)])
    clusters = pd.read_parquet(Path(res.run_dir, res.summary["clusters_file"]))["cluster"].to_numpy()
    # The same partition, up to the numbering of the clusters ...
    r_cluster = np.array(ref["cluster"])
    mapping = {int(c): int(np.bincount(r_cluster[clusters == c]).argmax()) for c in (1, 2, 3)}
    assert sorted(mapping.values()) == [1, 2, 3]
    assert all(mapping[int(c)] == r for c, r in zip(clusters, r_cluster))
    # ... so the same centres (the means of their clusters), sizes and within-cluster SS.
    want = np.array(ref["centers"], dtype=float)[[mapping[j] - 1 for j in (1, 2, 3)]]
    np.testing.assert_allclose(ours, want, rtol=1e-6)
    assert res.summary["sizes"] == [ref["size"][mapping[j] - 1] for j in (1, 2, 3)]
    assert row["inertia"] == pytest.approx(ref["tot"][0], rel=1e-9)


def test_logistic_bootstrap_weights_are_glm_on_the_resampled_copy(tmp_path, hmda):
    """A replicate's counts, fitted block by block on read-only data without copying the rows,
    give R's glm on the resampled copy."""
    from hpcml.numerics.irls import fit_logistic

    frame = pd.read_parquet(hmda)
    X = frame[["pirat", "hirat", "lvrat"]].to_numpy(dtype=float)
    X.flags.writeable = False
    idx = np.random.default_rng(11).integers(0, len(frame), len(frame))
    fit = fit_logistic(X, frame["deny"].to_numpy(), np.bincount(idx, minlength=len(frame)), tol=1e-14)
    rows = tmp_path / "rows.txt"  # the resampled rows, 1-based
    rows.write_text("\n".join(str(i + 1) for i in idx))
    ref = rscript(f"{HMDA_R}; d <- d[scan('{rows}', quiet = TRUE), ]; "
                  "m <- glm(deny ~ pirat + hirat + lvrat, data = d, family = binomial, "
                  "control = glm.control(epsilon = 1e-14, maxit = 100)); list(coef = unname(coef(m)))")
    np.testing.assert_allclose(fit.coef, ref["coef"], rtol=1e-8)


def test_a_batched_logistic_bootstrap_replicate_is_glm_on_the_resampled_copy(tmp_path, hmda):
    """A bootstrap run of ``logistic`` fits its replicates 64 at a time (Newton from the full
    fit); a replicate equals R's glm on the resampled rows."""
    from threadpoolctl import threadpool_limits

    from hpcml import load_job
    from hpcml.data import load_dataset
    from hpcml.numerics.batched_logistic import logistic_coefs_batch
    from hpcml.plans import task_rng
    from hpcml.plans.bootstrap import resample_counts

    spec = {"name": "r-logit-boot", "seed": 3, "data": {"source": str(hmda), "target": "deny"},
            "model": {"kind": "logistic", "features": ["pirat", "hirat", "lvrat"]},
            "plan": {"bootstrap": {"replicates": 64, "bca": False}},
            "backend": {"name": "local", "workers": 1}, "output": str(tmp_path / "run")}
    res = run(spec, progress=False, plots=False).results.set_index("task_index")
    job = load_job(spec)
    data = load_dataset(job)
    W = np.stack([resample_counts(task_rng(3, i), data.n) for i in range(64)])
    with threadpool_limits(1):  # as the run's tasks (threads_per_task): the same bits
        batch = logistic_coefs_batch(data.X, data.y, W)
    names = ["coef_(Intercept)", "coef_pirat", "coef_hirat", "coef_lvrat"]
    for i in (5, 40):
        got = res.loc[i, names].to_numpy(dtype=float)
        assert np.array_equal(got, batch[i])  # the batched path, not the one-by-one fallback
        rows = tmp_path / f"rows{i}.txt"  # the resampled rows, 1-based
        rows.write_text("\n".join(str(r + 1) for r in np.repeat(np.arange(data.n), W[i].astype(int))))
        ref = rscript(f"{HMDA_R}; d <- d[scan('{rows}', quiet = TRUE), ]; "
                      "m <- glm(deny ~ pirat + hirat + lvrat, data = d, family = binomial, "
                      "control = glm.control(epsilon = 1e-14, maxit = 100)); list(coef = unname(coef(m)))")
        np.testing.assert_allclose(got, ref["coef"], rtol=1e-8)
