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
    return small_spec(tmp_path, engine="spark", plan={"fit": {}}, data={"source": str(data), "target": "y"},
                      model={"kind": "ols"}, **over)


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


def test_the_spark_fit_record_is_a_task_record_with_the_plans_task_id(tmp_path, monkeypatch):
    job = load_job(_spark_job(tmp_path))
    monkeypatch.setattr(Job, "task_id", lambda self, index: f"fit-of-the-plan/{index}")
    monkeypatch.setitem(spark_engine.FITTERS, "ols", lambda *a: {"r2": 0.5})
    record = spark_engine._fit_record(job, None, ["x"], {"n": 3})
    seconds = record["seconds"]
    assert record == ok_record("fit-of-the-plan/0", 0, 0, seconds, {"rows": 3, "r2": 0.5})

    def fails(*a):
        raise ValueError("singular")

    monkeypatch.setitem(spark_engine.FITTERS, "ols", fails)
    record = spark_engine._fit_record(job, None, ["x"], {"n": 3})
    assert record["traceback"].startswith("Traceback") and record["error"] == "Spark fit failed: singular"
    assert record == failure_record(0, "fit-of-the-plan/0", record["error"], record["traceback"], 0,
                                    record["seconds"])
