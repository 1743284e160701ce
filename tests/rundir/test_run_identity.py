"""A run directory never returns numbers that its spec, data and code did not make: a resume
with edited code or data, a lost spec.json, a stale summary or a crash's leftovers is refused
or repaired, never silently mixed. Each test failed on the code before its fix."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from conftest import hpcml_cli, small_spec
from hpcml import SpecError, run
from hpcml.cli import app
from hpcml.rundir.store import RunStore

STAT_V1 = "def stat(data, task):\n    return {'value': 1.0 + task['index']}\n"
STAT_V2 = "def stat(data, task):\n    return {'value': 2.0 + task['index']}\n"  # same size as v1


def _code_spec(tmp_path: Path, code: Path, plan: dict | None = None, seed: int = 1) -> dict:
    """A job of the function ``stat`` in ``code`` (6 replicates unless ``plan`` says otherwise)."""
    return {"name": "code", "seed": seed, "data": {"source": "none"},
            "model": {"kind": "python", "file": str(code), "function": "stat"},
            "plan": plan or {"replicate": {"n": 6}}, "backend": {"name": "local", "workers": 1},
            "output": str(tmp_path / "run")}


def _write_csv(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    pd.DataFrame({"x": rng.normal(size=60), "y": rng.normal(size=60)}).round(6).to_csv(path, index=False)


def test_resume_with_edited_code_is_refused(tmp_path):
    code = tmp_path / "stat.py"
    code.write_text(STAT_V1)
    spec = _code_spec(tmp_path, code)
    run(spec, progress=False)
    code.write_text(STAT_V2)
    with pytest.raises(SpecError, match="different spec.*model"):
        run(spec, resume=True, progress=False)


def test_edited_code_is_loaded_anew_in_one_session(tmp_path):
    """Warm local workers (and this process) hold the first version's module: a second run must
    run the file as it is now."""
    code = tmp_path / "stat.py"
    code.write_text(STAT_V1)
    first = run(_code_spec(tmp_path, code), progress=False).results
    code.write_text(STAT_V2)
    spec = {**_code_spec(tmp_path, code), "output": str(tmp_path / "run2")}
    second = run(spec, progress=False).results
    assert first["value"].tolist() == [1.0 + i for i in range(6)]
    assert second["value"].tolist() == [2.0 + i for i in range(6)]


def test_code_edited_after_loading_is_refused_before_and_during_the_run(tmp_path):
    from hpcml.drivers.run import execute
    from hpcml.spec import load_job
    from hpcml.rundir.store import Chunk
    from hpcml.tasks.worker import WorkOrder, execute_chunk

    code = tmp_path / "stat.py"
    code.write_text(STAT_V1)
    job = load_job(_code_spec(tmp_path, code))
    code.write_text(STAT_V2)  # after the driver recorded its digest
    with pytest.raises(SpecError, match="changed since the job was loaded"):
        execute(job, progress=False, plots=False)
    # A worker given a chunk after the edit (mid-run) fails its tasks with the same words.
    result = execute_chunk(WorkOrder(job.to_json(), str(tmp_path / "w"), Chunk(range(3)), write=False))
    assert not result.ok and len(result.failed) == 3
    assert all("changed since the job was loaded" in e for e in result.failed.values())


def test_resume_of_data_edited_with_size_and_mtime_restored_is_refused(tmp_path):
    data = tmp_path / "d.csv"
    _write_csv(data, 0)
    spec = small_spec(tmp_path, data={"source": str(data), "target": "y"}, model={"kind": "ols", "features": ["x"]},
                      plan={"bootstrap": {"replicates": 8}})
    run(spec, progress=False)
    st = data.stat()
    text = data.read_text()
    edited = text.replace("1", "2", 1) if "1" in text else text.replace("3", "4", 1)
    assert len(edited) == len(text) and edited != text
    data.write_text(edited)
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns))  # as `cp -p` or `touch -r` would
    assert data.stat().st_size == st.st_size and data.stat().st_mtime_ns == st.st_mtime_ns
    with pytest.raises(SpecError, match="data file changed"):
        run(spec, resume=True, progress=False)


@pytest.mark.parametrize("resume", [True, False])
def test_a_run_whose_spec_json_is_lost_is_neither_adopted_nor_deleted(tmp_path, resume):
    spec = small_spec(tmp_path, plan={"bootstrap": {"replicates": 8}})
    run(spec, progress=False)
    run_dir = Path(spec["output"])
    (run_dir / "spec.json").unlink()
    other = {**spec, "seed": 8}
    with pytest.raises(SpecError, match="spec.json is gone"):
        run(other, resume=resume, overwrite=not resume, progress=False)
    assert list((run_dir / "chunks").iterdir())  # the old results are still there, untouched


def test_a_stale_summary_is_never_returned(tmp_path):
    """A crash between results.parquet and summary.json leaves a summary of other results: a
    resume recomputes it instead of reporting it."""
    spec = small_spec(tmp_path, plan={"bootstrap": {"replicates": 8}})
    clean = run(spec, progress=False).summary
    run_dir = Path(spec["output"])
    stale = json.loads((run_dir / "summary.json").read_text())
    stale["table"][0]["se"] = 123.0
    RunStore(run_dir).consolidate_table()  # a newer results.parquet, as a resume's would be ...
    (run_dir / "summary.json").write_text(json.dumps(stale))  # ... and the old summary beside it
    again = run(spec, resume=True, progress=False).summary
    assert again["table"] == clean["table"]


def test_status_says_a_run_without_its_summary_is_not_finished(tmp_path):
    spec = small_spec(tmp_path, plan={"bootstrap": {"replicates": 8}})
    run(spec, progress=False)
    run_dir = Path(spec["output"])
    RunStore(run_dir).consolidate_table()  # the summary no longer matches its results
    proc = hpcml_cli("status", run_dir)
    assert proc.returncode == 1
    assert "not finished" in proc.stderr and "--resume" in proc.stderr


def test_resume_that_spells_out_a_default_is_the_same_run(tmp_path):
    spec = small_spec(tmp_path, plan={"bootstrap": {"replicates": 8}})
    first = run(spec, progress=False)
    spelled = {**spec, "model": {**spec["model"], "fit_intercept": True}}
    again = run(spelled, resume=True, progress=False)
    assert again.summary["table"] == first.summary["table"]


def test_overwrite_removes_a_crashs_temporary_file(tmp_path):
    spec = small_spec(tmp_path, plan={"bootstrap": {"replicates": 8}})
    run(spec, progress=False)
    run_dir = Path(spec["output"])
    (run_dir / ".results.parquet.k2j3h4.tmp").write_bytes(b"half a file")
    (run_dir / "chunks" / ".chunk-0000000-0000007-abc.parquet.x1.tmp").write_bytes(b"half")
    result = run(spec, overwrite=True, progress=False)
    assert result.ok and not (run_dir / ".results.parquet.k2j3h4.tmp").exists()


def test_failed_replicates_are_named_beside_the_intervals(tmp_path):
    code = tmp_path / "stat.py"
    code.write_text("import numpy as np\n"
                    "def stat(data, weights, task):\n"
                    "    if task['index'] % 4 == 0:\n"
                    "        raise ValueError('no fit')\n"
                    "    return {'m': float(np.average(data['x0'], weights=weights))}\n")
    frame = pd.DataFrame({"x0": np.random.default_rng(0).normal(size=40)})
    spec = _code_spec(tmp_path, code, plan={"bootstrap": {"replicates": 12}}, seed=3)
    result = run(spec, data=frame, progress=False)
    assert result.n_failed == 3
    assert any("3 of 12 replicates failed" in n for n in result.summary["notes"])
    proc = hpcml_cli("status", tmp_path / "run")
    assert "3 failed" in proc.stdout


def test_a_statistic_that_fails_on_the_whole_data_is_one_note(tmp_path):
    code = tmp_path / "stat.py"
    code.write_text("import numpy as np\n"
                    "def stat(data, weights, task):\n"
                    "    return {'m': float(task['index']) + float(np.average(data['x0'], weights=weights))}\n")
    frame = pd.DataFrame({"x0": np.random.default_rng(0).normal(size=40)})
    spec = _code_spec(tmp_path, code, plan={"bootstrap": {"replicates": 6}}, seed=3)
    result = run(spec, data=frame, progress=False)  # the full-data call has no task index
    assert result.ok
    assert any("fit of the whole data raised TypeError" in n for n in result.summary["notes"])
    assert result.summary["table"][0]["estimate"] is None and "bca_low" not in result.summary["table"][0]
    assert result.summary["table"][0]["se"] is not None


def test_an_unwritable_run_is_one_line_and_exit_3(tmp_path, monkeypatch):
    """Disk full while consolidating: one line, exit 3 (not 1, "some tasks failed"), the
    finished chunk files kept, and `hpcml status` does not call the run finished."""
    import hpcml.rundir.store as store

    spec = small_spec(tmp_path, plan={"bootstrap": {"replicates": 8}}, backend={"name": "local", "workers": 1})
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))

    def full(target, table):
        raise OSError(28, "No space left on device", str(target))

    monkeypatch.setattr(store, "atomic_write_table", full)
    out = CliRunner().invoke(app, ["run", str(path), "-q"])
    assert out.exit_code == 3, out.output
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert lines[-1].startswith("error: cannot write the run") and "No space left on device" in lines[-1]
    assert "Traceback" not in out.output
    monkeypatch.undo()
    assert len(list((tmp_path / "run" / "chunks").glob("chunk-*.parquet"))) >= 1
    status = hpcml_cli("status", tmp_path / "run")
    assert status.returncode == 1
    resumed = run(spec, resume=True, progress=False)
    assert resumed.ok and resumed.summary["replicates"] == 8


def test_a_resumed_run_reports_the_time_of_all_its_sessions(tmp_path):
    """The summary's run.seconds of a resumed run counts each earlier session up to its last
    finished chunk (before: only the last session's), and says what the last one took."""
    import json

    code = tmp_path / "f.py"
    code.write_text("import os, time\n"
                    "def f(task, marker):\n"
                    "    time.sleep(0.4)\n"
                    "    if task['index'] == 5 and not os.path.exists(marker):\n"
                    "        raise RuntimeError('not yet')\n"
                    "    return 1.0\n")
    marker = tmp_path / "marker"
    spec = {"name": "sessions", "data": {"source": "none"}, "plan": {"replicate": {"n": 6}},
            "model": {"kind": "python", "file": str(code), "function": "f", "args": {"marker": str(marker)}},
            "backend": {"name": "local", "workers": 1, "chunk_size": 1}, "output": str(tmp_path / "run")}
    first = run(spec, progress=False)
    assert first.n_failed == 1
    marker.touch()
    second = run(spec, resume=True, progress=False)
    assert second.ok
    facts = json.loads((tmp_path / "run" / "summary.json").read_text())["run"]
    assert len(json.loads((tmp_path / "run" / "sessions.json").read_text())) == 2
    assert facts["seconds"] >= 2.0 > facts["seconds_this_session"], facts  # five 0.4 s tasks in the first
