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
