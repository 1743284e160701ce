"""One choice of driver (``drivers/dispatch.py``): ``hpcml run``, ``hpcml.run`` and
``python -m hpcml.pack`` send the same spec to the same driver."""
from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

import hpcml
from hpcml.cli import app
from hpcml.drivers.dispatch import driver_for
from hpcml.errors import SpecError
from hpcml.spec import load_job

from conftest import small_spec

runner = CliRunner()


class Chosen(Exception):
    """Raised by a stand-in driver: which driver the front end called."""


@pytest.fixture
def drivers(monkeypatch):
    """Every driver replaced by a stand-in that says it was chosen (nothing runs)."""
    def chosen(name):
        def driver(job, **kw):
            raise Chosen(name)
        return driver

    monkeypatch.setattr("hpcml.drivers.run.execute", chosen("run"))
    monkeypatch.setattr("hpcml.drivers.mpi.run_under_mpi", chosen("mpi"))
    monkeypatch.setattr("hpcml.drivers.spark_engine.execute_mllib", chosen("spark"))


def _spec(tmp_path, backend: str, engine: str) -> dict:
    return small_spec(tmp_path, backend={"name": backend}, engine=engine,
                      **({"plan": {"fit": {}}} if engine == "spark" else {}))


def _cli_choice(tmp_path, spec: dict) -> str:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = runner.invoke(app, ["run", str(path), "--quiet"])
    if isinstance(result.exception, Chosen):
        return str(result.exception)
    assert result.exit_code == 2, result.output
    return "refused: " + result.output.strip()


def _api_choice(spec: dict) -> str:
    try:
        hpcml.run(spec, progress=False)
    except Chosen as chosen:
        return str(chosen)
    except SpecError as err:
        return f"refused: error: {err}"
    raise AssertionError("no driver was called")


@pytest.mark.parametrize("backend, engine, driver", [
    ("local", "hpcml", "run"),
    ("dask", "hpcml", "run"),
    ("mpi", "hpcml", "mpi"),
    ("local", "spark", "spark"),
    ("spark", "spark", "spark"),
    # The command line sent this one to the MPI driver (whose static mode ran its tasks on the
    # hpcml engine), the Python API to the Spark fit: now both refuse it, in one line.
    ("mpi", "spark", "refused: error: engine: backend mpi packs independent tasks onto MPI ranks"),
])
def test_the_command_line_and_the_api_choose_the_same_driver(tmp_path, drivers, backend, engine, driver):
    spec = _spec(tmp_path, backend, engine)
    cli, api = _cli_choice(tmp_path, spec), _api_choice(spec)
    assert cli.startswith(driver) and api.startswith(driver), (cli, api)
    assert cli.splitlines()[0] == api.splitlines()[0]
    assert not (tmp_path / "run").exists()


def test_driver_for_names_the_driver(tmp_path):
    assert driver_for(load_job(_spec(tmp_path, "mpi", "hpcml"))) == "mpi"
    assert driver_for(load_job(_spec(tmp_path, "local", "spark"))) == "spark"
    with pytest.raises(SpecError, match="^engine: "):
        driver_for(load_job(_spec(tmp_path, "mpi", "spark")))


def test_pack_refuses_an_engine_spark_job(tmp_path, capsys):
    from hpcml.pack import main

    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(_spec(tmp_path, "local", "spark")))
    assert main([str(path), "--quiet"]) == 2
    assert "error: engine: " in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_submit_refuses_an_engine_spark_job(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(_spec(tmp_path, "local", "spark")))
    for mode in ("pack", "array"):
        result = runner.invoke(app, ["submit", str(path), "--mode", mode, "--dry-run"])
        assert result.exit_code == 2 and "error: engine: hpcml submit runs independent tasks" in result.output, \
            result.output
    assert not (tmp_path / "run").exists()
