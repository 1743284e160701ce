"""What user code gets and gives back: a grid value is one argument of a command however it is
spelled, and a long vector is one array artifact, not a column per number."""
from __future__ import annotations

import shlex
import sys

import numpy as np
import pytest

from hpcml import run

ARGS = "import json, sys; json.dump({'n_args': len(sys.argv) - 2, 'length': len(sys.argv[1])}, open(sys.argv[-1] + '/outputs.json', 'w'))"
VALUES = ["a b --c", "it's", '"quoted"', "-x"]


def _spec(tmp_path, model, plan):
    return {"name": "cmd", "seed": 3, "data": {"source": "none"}, "model": {"kind": "command", **model},
            "plan": plan, "backend": {"name": "local", "workers": 1}, "output": str(tmp_path / "run")}


@pytest.mark.parametrize("shell", [False, True])
def test_a_grid_value_is_one_argument_of_a_command_line(tmp_path, shell):
    line = f"{shlex.quote(sys.executable)} -c {shlex.quote(ARGS)} {{params.v}} {{scratch}}"
    res = run(_spec(tmp_path, {"command": line, "shell": shell, "metric": "length"},
                    {"sweep": {"grid": {"v": VALUES}}}), progress=False)
    assert res.ok, res.failures()["error"].tolist()
    rows = res.results.sort_values("task_index")
    assert rows["n_args"].tolist() == [1.0] * len(VALUES)
    assert rows["length"].tolist() == [float(len(v)) for v in VALUES]


def test_a_long_vector_is_an_array_artifact(tmp_path):
    code = tmp_path / "vec.py"
    code.write_text("import numpy as np\n"
                    "def vec(task):\n"
                    "    return np.arange(200_000, dtype=float) + task['index']\n")
    spec = {"name": "vec", "seed": 1, "data": {"source": "none"},
            "model": {"kind": "python", "file": str(code), "function": "vec"},
            "plan": {"replicate": {"n": 2}}, "backend": {"name": "local", "workers": 1},
            "output": str(tmp_path / "run")}
    res = run(spec, progress=False)
    assert res.ok and len(res.results.columns) < 20
    for i, path in zip(res.results["task_index"], res.results["value"]):
        assert np.array_equal(np.load(path), np.arange(200_000, dtype=float) + i)


def test_a_short_vector_stays_columns(tmp_path):
    code = tmp_path / "vec.py"
    code.write_text("import numpy as np\ndef vec(task):\n    return np.arange(3.0)\n")
    spec = {"name": "vec", "seed": 1, "data": {"source": "none"},
            "model": {"kind": "python", "file": str(code), "function": "vec"},
            "plan": {"replicate": {"n": 2}}, "backend": {"name": "local", "workers": 1},
            "output": str(tmp_path / "run")}
    res = run(spec, progress=False)
    assert res.results["value_2"].tolist() == [2.0, 2.0]


MULTI_LINE = """
def check(task):
    if task["index"] == 1:
        raise ValueError("the input does not fit\\n  row 17: NaN in column 'dose'")
    return {"value": 1.0}
"""


def test_an_error_of_several_lines_is_kept_whole(tmp_path):
    """A Python exception whose detail is on its second line keeps every line in the record's
    ``error`` and in ``hpcml status``; the CLI's last line shows the first and says more follow."""
    import yaml

    from conftest import hpcml_cli

    (tmp_path / "check.py").write_text(MULTI_LINE)
    spec = {"name": "lines", "seed": 1, "data": {"source": "none"},
            "model": {"kind": "python", "file": str(tmp_path / "check.py"), "function": "check"},
            "plan": {"replicate": {"n": 3}}, "backend": {"name": "local", "workers": 1},
            "output": str(tmp_path / "run")}
    res = run(spec, progress=False)
    whole = "ValueError: the input does not fit\n  row 17: NaN in column 'dose'"
    assert res.failures()["error"].tolist() == [whole]
    (tmp_path / "job.yaml").write_text(yaml.safe_dump({**spec, "output": str(tmp_path / "cli")}))
    proc = hpcml_cli("run", tmp_path / "job.yaml", "-q")
    assert proc.returncode == 1
    assert ("1 task(s) failed; first: replicate/000001: ValueError: the input does not fit [+1 more line(s)]"
            in proc.stderr), proc.stderr
    status = hpcml_cli("status", tmp_path / "run")
    assert "  replicate/000001 (attempt 0): ValueError: the input does not fit\n" \
           "        row 17: NaN in column 'dose'" in status.stdout, status.stdout
