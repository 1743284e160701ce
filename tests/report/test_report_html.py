"""Every run directory's ``report.html``: one self-contained page (no server, no network) with
the spec, the summary's tables and numbers, every plot, the failures and the timings; rebuilt
by ``hpcml report RUN``; opened in a real headless browser (Chromium, installed by the test
command) that shows every image. A screenshot is kept in ``build/test-artifacts``."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, hpcml_cli, small_spec

ARTIFACTS = ROOT / "build" / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (make test installs it)")
# No host resolves: the page must need no network.
OFFLINE = ["--headless", "--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP * ~NOTFOUND"]


@pytest.fixture(scope="module")
def bootstrap_run(tmp_path_factory):
    """The diabetes bootstrap from the command line, with its plots."""
    tmp = tmp_path_factory.mktemp("report")
    path = tmp / "job.yaml"
    path.write_text(yaml.safe_dump(small_spec(tmp, backend={"name": "local", "workers": 1})))
    proc = hpcml_cli("run", path)
    assert proc.returncode == 0, proc.stderr
    return tmp / "run", proc


def test_every_run_has_a_self_contained_report_linked_from_the_last_line(bootstrap_run):
    run, proc = bootstrap_run
    page = (run / "report.html").read_text()
    assert f"(report: {run / 'report.html'})" in proc.stdout.strip().splitlines()[-1]
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page), "the page loads something from the network"
    summary = json.loads((run / "summary.json").read_text())
    for row in summary["table"][:3]:  # the summary's numbers, as the console prints them
        assert f">{row['output']}<" in page and f">{row['se']:.6g}<" in page
    plots = sorted((run / "plots").glob("*.png"))
    assert plots and page.count('src="data:image/png;base64,') == len(plots)
    for section in ("Summary", "Plots", "Failures", "Timings", "Spec", "Versions"):
        assert f"<h2>{section}</h2>" in page
    assert "Every task succeeded." in page and "t-boot" in page


def test_the_report_lists_failures_with_their_whole_error(tmp_path):
    (tmp_path / "f.py").write_text("def f(task):\n    if task['index'] == 1:\n"
                                   "        raise ValueError('bad row\\n  row 17: NaN')\n    return 1.0\n")
    spec = {"name": "fails", "data": {"source": "none"}, "plan": {"replicate": {"n": 3}},
            "model": {"kind": "python", "file": str(tmp_path / "f.py"), "function": "f"},
            "backend": {"name": "local", "workers": 1}, "output": str(tmp_path / "run")}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(spec))
    assert hpcml_cli("run", tmp_path / "job.yaml", "-q").returncode == 1
    page = (tmp_path / "run" / "report.html").read_text()
    assert "1 task(s) failed." in page and "replicate/000001" in page
    assert "ValueError: bad row\n  row 17: NaN" in page


def test_hpcml_report_rebuilds_the_page(bootstrap_run, tmp_path):
    run, _ = bootstrap_run
    (run / "report.html").unlink()
    proc = hpcml_cli("report", run)
    assert proc.returncode == 0 and proc.stdout.strip() == str(run / "report.html") and (run / "report.html").exists()
    bad = hpcml_cli("report", tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"error: run_dir: not a run directory (no spec.json) (got '{tmp_path}')"]


@needs_chromium
def test_a_headless_browser_shows_every_image_from_disk_without_network(bootstrap_run):
    run, _ = bootstrap_run
    url = (run / "report.html").resolve().as_uri()
    dom = subprocess.run([CHROMIUM, *OFFLINE, "--virtual-time-budget=5000", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    n = len(list((run / "plots").glob("*.png")))
    assert f'data-images="{n}/{n}"' in dom.stdout, re.findall(r"data-images=\"[^\"]*\"", dom.stdout)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    proc = subprocess.run([CHROMIUM, *OFFLINE, "--window-size=1200,2400", f"--screenshot={shot}", url],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and shot.stat().st_size > 20_000, proc.stderr[-2000:]
