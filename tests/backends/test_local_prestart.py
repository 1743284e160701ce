"""A local pool started ahead of its job (``local_pools.prestart``, what an R session's loop
does): starting it imports nothing heavy in the driver, the job then runs on exactly those
workers, and anything the pool would not serve starts nothing."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT


def run_driver(tmp_path, code: str) -> str:
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(code))
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_a_prestarted_pool_starts_without_pandas_and_runs_the_job(tmp_path):
    out = run_driver(tmp_path, """
        import os, sys
        from hpcml.backends import local_pools

        local_pools.prestart({"name": "local", "workers": 2})
        started = list(local_pools._STARTING.values())
        assert len(started) == 1
        started[0].join()
        print("pandas in driver after the pool started:", "pandas" in sys.modules)
        pool = next(iter(local_pools._WARM.values()))
        pids = sorted(w.proc.pid for w in pool._workers)

        import hpcml
        got = hpcml.map(lambda x: (x * x, os.getpid()), range(40), workers=2, chunk_size=1)
        assert [v for v, _ in got] == [x * x for x in range(40)]
        print("ran on the prestarted workers:", sorted({p for _, p in got}) <= pids and len(local_pools._STARTING) == 0)
    """)
    assert out.splitlines() == ["pandas in driver after the pool started: False",
                                "ran on the prestarted workers: True"]


@pytest.mark.parametrize("backend", [{"name": "dask", "workers": 2},
                                     {"name": "local", "workers": 2, "reuse_workers": False},
                                     {"name": "local", "workers": 2, "start_method": "threads"},
                                     {"name": "local", "workers": "two"}])
def test_prestart_starts_nothing_the_job_would_not_use(backend):
    from hpcml.backends import local_pools

    before = (dict(local_pools._STARTING), dict(local_pools._WARM))  # pools earlier tests kept
    local_pools.prestart(backend)
    assert (local_pools._STARTING, local_pools._WARM) == before
