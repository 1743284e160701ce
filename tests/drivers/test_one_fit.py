"""The drivers that run one fit outside the retry loop (``engine: spark``; DDP in
test_ddp.py): their records are built as every task's are, and they refuse ``retries`` and
``timeout_s`` in one line rather than ignore them."""
from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from hpcml.cli import app
from hpcml.drivers import spark_engine
from hpcml.spec import Job, load_job
from hpcml.tasks.task_records import failure_record, ok_record

from conftest import small_spec

runner = CliRunner()


def _spark_job(tmp_path, **over) -> dict:
    data = tmp_path / "data.csv"
    data.write_text("x,y\n1,2\n2,3\n3,5\n")
    return small_spec(tmp_path, **{"engine": "spark", "plan": {"fit": {}}, "data": {"source": str(data), "target": "y"},
                                   "model": {"kind": "ols"}, **over})


@pytest.mark.parametrize("field, value", [("retries", 2), ("timeout_s", 30.0)])
def test_engine_spark_refuses_retries_and_timeout_in_one_line(tmp_path, field, value):
    spec = _spark_job(tmp_path, **{field: value})
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    for command in ("run", "validate"):
        result = runner.invoke(app, [command, str(path)])
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert result.exit_code == 2 and len(errors) == 1, result.output
        assert errors[0].startswith(f"error: {field}: engine: spark") and errors[0].endswith(f"(got {value})")
    assert not (tmp_path / "run").exists()


class RunningSpark:
    """A Spark session still running: a failure's line is the fit's own error."""

    def death_line(self):
        return None


def test_the_spark_fit_record_is_a_task_record_with_the_plans_task_id(tmp_path, monkeypatch):
    job = load_job(_spark_job(tmp_path))
    monkeypatch.setattr(Job, "task_id", lambda self, index: f"fit-of-the-plan/{index}")
    monkeypatch.setitem(spark_engine.FITTERS, "ols", lambda *a: {"r2": 0.5})
    record = spark_engine._fit_record(job, None, ["x"], {"n": 3}, RunningSpark())
    seconds = record["seconds"]
    assert record == ok_record("fit-of-the-plan/0", 0, 0, seconds, {"rows": 3, "r2": 0.5})

    def fails(*a):
        raise ValueError("singular")

    monkeypatch.setitem(spark_engine.FITTERS, "ols", fails)
    record = spark_engine._fit_record(job, None, ["x"], {"n": 3}, RunningSpark())
    assert record["traceback"].startswith("Traceback") and record["error"] == "Spark fit failed: singular"
    assert record == failure_record(0, "fit-of-the-plan/0", record["error"], record["traceback"], 0,
                                    record["seconds"])


@pytest.mark.parametrize("plan, kind, refused", [
    ({"cv": {"folds": 3}}, "ols", False), ({"sweep": {"grid": {"fit_intercept": [True, False]}}}, "ols", False),
    ({"cv": {"folds": 3}}, "pca", True), ({"bootstrap": {"replicates": 5}}, "ols", True),
    ({"replicate": {"n": 2}}, "naive_bayes", True)])
def test_engine_spark_runs_plans_that_hold_rows_out(tmp_path, plan, kind, refused):
    from hpcml.errors import SpecError

    job = load_job(_spark_job(tmp_path, plan=plan, model={"kind": kind}))
    assert job.plan.single_fit or job.plan.splits_by_draw or refused
    if refused:
        with pytest.raises(SpecError) as err:
            spark_engine.static_problems(job)
        assert len(err.value.lines()) == 1 and err.value.lines()[0].startswith("plan:"), err.value.lines()
    else:
        spark_engine.static_problems(job)


def test_cv_folds_and_the_sweep_holdout_are_drawn_splits(tmp_path):
    cv = load_job(_spark_job(tmp_path, plan={"cv": {"folds": 4, "repeats": 2}}))
    split = cv.plan.drawn_split(cv, 6)  # repeat 1, fold 2
    assert (split.draw, split.low, split.high, split.record, split.score_train) == (1, 0.5, 0.75, {"repeat": 1, "fold": 2}, True)
    sweep = load_job(_spark_job(tmp_path, plan={"sweep": {"grid": {"fit_intercept": [True, False]}, "repeats": 2,
                                                          "holdout": 0.3}}))
    split = sweep.plan.drawn_split(sweep, 3)  # the second grid point, repeat 1
    assert (split.draw, split.low, split.high, split.overrides, split.fit_seed) == (0, 0.0, 0.3, {"fit_intercept": False}, 1)
    assert split.record == {"repeat": 1, "param_fit_intercept": False} and not split.score_train


def test_als_is_refused_without_engine_spark_in_one_line(tmp_path):
    from hpcml.errors import SpecError

    with pytest.raises(SpecError) as err:
        load_job(small_spec(tmp_path, model={"kind": "als"}, plan={"fit": {}}, data={"source": "ratings.parquet"}))
    assert err.value.lines() == ["model.kind: als runs only as a Spark MLlib fit: add engine: spark to the spec (got 'als')"]
