"""Coefficient tables as R prints them: ``summary(lm)`` and ``summary(glm)`` for a ``fit`` plan.

A ``fit`` of ``ols`` or ``logistic`` summarises to one row per coefficient (estimate, standard
error, t or z value, p-value, confidence interval) and the fit's statistics (R², F, deviance,
AIC, ...). Aliased coefficients (R's NA) have no numbers (JSON null) and are named in ``note``.
The numbers come from one fit of the whole data on the driver, the fit the task made.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats


def clean(x: Any) -> Any:
    """JSON-ready scalar: NaN and inf become None (R's NA), NumPy scalars Python ones."""
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    return x


def coef_names(fit_intercept: bool, features: list[str]) -> list[str]:
    return (["(Intercept)"] if fit_intercept else []) + [str(f) for f in features]


def coefficient_table(names: list[str], estimate: np.ndarray, se: np.ndarray, dof: float | None,
                      level: float = 0.95) -> list[dict[str, Any]]:
    """Rows of ``coef(summary(fit))`` plus the interval: t-based when ``dof`` is given (lm),
    normal otherwise (glm's z; the interval is Wald's, R's ``confint.default``)."""
    stat = estimate / se
    if dof is not None:
        dist, label = stats.t(dof) if dof > 0 else None, "t_value"
    else:
        dist, label = stats.norm(), "z_value"
    nan = np.full_like(estimate, np.nan)
    p = 2.0 * dist.sf(np.abs(stat)) if dist is not None else nan
    q = dist.ppf(0.5 + level / 2) if dist is not None else math.nan
    rows = []
    for j, name in enumerate(names):
        rows.append({"term": name, "estimate": clean(estimate[j]), "std_error": clean(se[j]), label: clean(stat[j]),
                     "p_value": clean(p[j]), "ci_low": clean(estimate[j] - q * se[j]),
                     "ci_high": clean(estimate[j] + q * se[j])})
    return rows


def aliased_note(names: list[str], aliased: np.ndarray) -> dict[str, Any]:
    """R's "(k not defined because of singularities)", naming the coefficients."""
    gone = [n for n, a in zip(names, aliased) if a]
    if not gone:
        return {"aliased": []}
    return {"aliased": gone,
            "note": f"{len(gone)} coefficient{'s' if len(gone) > 1 else ''} not defined because of singularities "
                    f"(exactly collinear or constant columns, NA as in R): {', '.join(gone)}"}
