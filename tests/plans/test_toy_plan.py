"""A plan defined outside the package: registered with ``hpcml.register_plan``, the job spec
accepts it, workers run its tasks, and its records and summary are its own (checked against
a direct computation). Nothing else in hpcml needs to know its name."""
from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import Field

import hpcml
from hpcml.errors import SpecError
from hpcml.plans import PLANS, Plan, PlanOptions
from hpcml.plans.base import fit_and_record
from hpcml.report.tables import ok_rows, output_columns

from conftest import linear_frame

FEATURES = ["a", "b"]


class BlocksOptions(PlanOptions):
    blocks: int = Field(4, ge=2, description="contiguous blocks of rows; task i leaves block i out")


def block_labels(n: int, blocks: int) -> np.ndarray:
    return np.arange(n) * blocks // n


class LeaveBlockOut(Plan):
    """Task i fits the model on every row but block i; the summary is the jackknife SE."""

    name = "leave_block_out"
    Options = BlocksOptions
    records = ("block",)
    parameters = ("block",)

    def count(self, options):
        return options.blocks

    def params_at(self, options, index):
        return {"block": index}

    def check(self, job, data):
        blocks = job.spec.plan.options.blocks
        return [("plan.leave_block_out.blocks", blocks, "more blocks than rows")] if blocks > data.n else []

    def run_task(self, job, data, task, ctx, shared):
        keep = block_labels(data.n, job.spec.plan.options.blocks) != task.params["block"]
        _, outputs = fit_and_record(job, data, keep.astype(np.float64), ctx)
        return {"block": task.params["block"], **outputs}

    def summarize(self, job, results, run_dir, data):
        ok = ok_rows(results)
        k = len(ok)
        table = []
        for c in output_columns(ok):
            v = ok[c].to_numpy(dtype=float)
            table.append({"output": c, "mean": float(v.mean()),
                          "se": float(math.sqrt((k - 1) / k * np.sum((v - v.mean()) ** 2)))})
        return {"blocks": k, "table": table}


@pytest.fixture
def toy_plan():
    assert hpcml.register_plan(LeaveBlockOut) is LeaveBlockOut
    yield LeaveBlockOut
    PLANS.pop(LeaveBlockOut.name)  # other tests see the built-in plans only


def _spec(tmp_path, n=203, blocks=4):
    data = tmp_path / "data.csv"
    linear_frame(n, FEATURES, seed=5).to_csv(data, index=False)
    return {"name": "toy-plan", "seed": 11, "data": {"source": str(data), "target": "y"},
            "model": {"kind": "ols", "features": FEATURES}, "plan": {"leave_block_out": {"blocks": blocks}},
            # forked workers inherit the plan registered here; a chunk a task, in the pool, not the driver
            "backend": {"name": "local", "workers": 2, "chunk_size": 1, "start_method": "fork",
                        "reuse_workers": False, "in_driver": False},
            "output": str(tmp_path / "run")}


def test_a_registered_plan_runs_end_to_end(tmp_path, toy_plan):
    result = hpcml.run(_spec(tmp_path), progress=False, plots=False)
    assert result.ok and result.n_tasks == 4 and result.summary["plan"] == "leave_block_out"

    frame = linear_frame(203, FEATURES, seed=5)
    X = np.column_stack([np.ones(len(frame)), frame[FEATURES].to_numpy()])
    y = frame["y"].to_numpy()
    labels = block_labels(len(frame), 4)
    coefs = np.array([np.linalg.lstsq(X[labels != b], y[labels != b], rcond=None)[0] for b in range(4)])

    records = result.results.sort_values("task_index")
    assert records["block"].tolist() == [0, 1, 2, 3]
    assert records["task_id"].tolist() == [f"leave_block_out/{i:06d}" for i in range(4)]
    names = ["coef_(Intercept)", "coef_a", "coef_b"]
    np.testing.assert_allclose(records[names].to_numpy(), coefs, rtol=1e-10, atol=1e-12)

    # `block` is the plan's own column (Plan.records): summarized as no output
    table = {row["output"]: row for row in result.summary["table"]}
    assert set(table) == set(names)
    se = np.sqrt(3 / 4 * ((coefs - coefs.mean(axis=0)) ** 2).sum(axis=0))
    for j, name in enumerate(names):
        assert table[name]["mean"] == pytest.approx(coefs[:, j].mean(), rel=1e-10)
        assert table[name]["se"] == pytest.approx(se[j], rel=1e-8)
    assert result.summary["blocks"] == 4

    # resumable like any run: the spec it recorded names the plan
    again = hpcml.run(_spec(tmp_path), resume=True, progress=False, plots=False)
    assert again.ok and again.summary["table"] == result.summary["table"]


def test_a_registered_plans_options_are_validated_by_name(tmp_path, toy_plan):
    from hpcml.spec import load_job

    job = load_job(_spec(tmp_path, blocks=3))
    assert job.plan is PLANS["leave_block_out"] and job.n_tasks == 3
    with pytest.raises(SpecError) as err:
        load_job(_spec(tmp_path, blocks=1))
    assert err.value.problems[0][0] == "plan.leave_block_out.blocks"
    with pytest.raises(SpecError) as err:
        load_job({**_spec(tmp_path), "plan": {"leave_block_out": {"blocks": 3, "folds": 2}}})
    assert err.value.problems[0][:2] == ("plan.leave_block_out.folds", 2)


def test_a_registered_plans_columns_and_parameters_are_reserved(toy_plan):
    from hpcml.models.command import placeholders
    from hpcml.models.r.common import user_outputs

    # a command names the plan's task parameter; an R output of its column's name is renamed
    assert placeholders().fullmatch("{block}")
    assert user_outputs({"block": 1.0, "value": 2.0}) == {"output_block": 1.0, "value": 2.0}


def test_a_plan_needs_a_plain_name_and_options():
    class Unnamed(LeaveBlockOut):
        name = "leave one out"

    class NoOptions(LeaveBlockOut):
        name = "no_options"
        Options = dict

    with pytest.raises(ValueError, match="plain identifier"):
        hpcml.register_plan(Unnamed)
    with pytest.raises(TypeError, match="PlanOptions"):
        hpcml.register_plan(NoOptions)
    assert "no_options" not in PLANS
