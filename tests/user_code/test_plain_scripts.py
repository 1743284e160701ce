"""The README's Python examples as a user first writes them: a plain script, no
``if __name__ == "__main__":`` guard. The workers never run the script again (its first line
prints once), functions, classes and items defined in it travel by value, and the numbers are
those of the same script with the guard."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import ROOT

BODY = """
    import numpy as np
    import hpcml

    print("script body runs", flush=True)


    class Point:
        def __init__(self, x):
            self.x = x


    def simulate(p):
        return Point(p.x * 2)


    x = np.random.default_rng(0).normal(size=200)
    b = hpcml.bootstrap(np.median, x, replicates=100, seed=3, backend=BACKEND)
    print("se", repr(b.se))
    out = hpcml.map(simulate, [Point(i) for i in range(6)], backend=BACKEND, workers=2)
    print("map", [p.x for p in out], all(isinstance(p, Point) for p in out))
"""


def _run(tmp_path: Path, backend: str, guarded: bool) -> list[str]:
    body = textwrap.dedent(BODY).replace("BACKEND", repr(backend))
    if guarded:
        body = 'if __name__ == "__main__":\n' + textwrap.indent(body, "    ")
    script = tmp_path / f"{backend}-{'guarded' if guarded else 'plain'}.py"
    script.write_text(body)
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.splitlines()


@pytest.mark.parametrize("backend", ["local", "dask"])
def test_a_plain_script_runs_once_with_the_guarded_scripts_numbers(tmp_path, backend):
    if backend == "dask":
        pytest.importorskip("distributed")
    plain = _run(tmp_path, backend, guarded=False)
    assert plain.count("script body runs") == 1, plain  # the workers did not run it again
    assert plain[-1] == "map [0, 2, 4, 6, 8, 10] True", plain
    assert plain == _run(tmp_path, backend, guarded=True)
