#!/usr/bin/env python
"""Scale and start-up, each side by side with its peer in one run (results: docs/benchmarks.md).

1. A million no-op tasks (the ``sleep`` kind with ms 0, a ``replicate`` plan, 2 workers):
   ``hpcml run`` end to end vs ``joblib.Parallel`` over range(n) of a no-op, each in its own
   process; wall time and the driver's peak RSS (VmHWM of the driver's own process, sampled
   from /proc until it exits).
2. On that finished run: ``hpcml status`` and a no-op ``hpcml run --resume``.
3. ``hpcml run`` of a one-task ``fit`` (OLS on diabetes) vs ``python -c "import numpy, sklearn"``.
4. (``--warm-only``) that fit run again by ``hpcml.run`` in the same process: wall vs compute.
5. (``--startup-only``) 3. alone, more rounds, beside the same fit in workers (``in_driver:
   false``), a PCA fit of the digits with its two plots and its floor (the same SVD and plots
   in a plain matplotlib script, no hpcml), and with ``--before PATH`` the OLS and
   PCA fits of another checkout (its ``PYTHONPATH``), all interleaved in one run, with Python's
   bytecode cache on (in a temporary ``PYTHONPYCACHEPREFIX``), as an installed package has it.

    python scripts/bench_scale.py [--tasks 1000000] [--workers 2] [--repeats 3]
    python scripts/bench_scale.py --startup-only --repeats 7 [--before /path/to/older/checkout]
    PYTHONPATH=/path/to/other/checkout python scripts/bench_scale.py   # the same, for another version
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from bench_map import cached_bytecode_env  # scripts/ is on the path of a script run from it

JOBLIB = """
import sys
from joblib import Parallel, delayed
def noop(i):
    return i
out = Parallel(n_jobs=int(sys.argv[2]))(delayed(noop)(i) for i in range(int(sys.argv[1])))
assert len(out) == int(sys.argv[1])
"""


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, float, int]:
    """(wall seconds, the process's own peak RSS in MB, exit status). Run outside the checkout,
    so PYTHONPATH decides which hpcml is measured (another checkout's, for a before/after).
    ``env``: the child's whole environment (default: this process's)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=tempfile.gettempdir(), env=env,
                            stdout=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        try:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM"):
                    peak = max(peak, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    return time.perf_counter() - t0, peak / 1024, proc.returncode


def warm_second_job(rounds: int = 5) -> dict[str, float]:
    """``hpcml.run`` of a one-task fit again in the same process (warm workers): wall seconds
    against the task's own compute, medians of ``rounds``."""
    import hpcml

    spec = {"name": "fit", "data": {"source": "sklearn:diabetes", "target": "target"}, "model": {"kind": "ols"},
            "plan": {"fit": {}}, "backend": {"name": "local", "workers": 2}}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        hpcml.run(spec, out=f"{tmp}/first", progress=False)
        first = time.perf_counter() - t0
        walls, compute, bare = [], [], []
        for i in range(rounds):
            t0 = time.perf_counter()
            res = hpcml.run(spec, out=f"{tmp}/again{i}", progress=False)
            walls.append(time.perf_counter() - t0)
            compute.append(float(res.results["seconds"].sum()))
            t0 = time.perf_counter()
            hpcml.run(spec, out=f"{tmp}/bare{i}", progress=False, plots=False)
            bare.append(time.perf_counter() - t0)
    return {"first_job_s": first, "second_job_s": statistics.median(walls), "second_job_no_plots_s": statistics.median(bare),
            "task_compute_s": statistics.median(compute)}


def hpcml_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "hpcml.cli", *args]


def fit_spec(path: Path, workers: int, *, kind: str = "ols", **backend) -> Path:
    data = {"source": "sklearn:diabetes", "target": "target"} if kind == "ols" else {"source": "sklearn:digits"}
    path.write_text(yaml.safe_dump({"name": "fit", "data": data, "model": {"kind": kind}, "plan": {"fit": {}},
                                    "backend": {"name": "local", "workers": workers, **backend}}))
    return path


# The floor of a one-task PCA fit with its plots: the same work in a plain script, no hpcml
# (digits centred, NumPy's SVD, the scree plot and the biplot drawn with the same matplotlib
# calls as hpcml.report.plots, on the Agg canvas, saved as PNG).
PCA_PLOTS_FLOOR = r"""
import sys
from pathlib import Path
import numpy as np
from sklearn.datasets import load_digits
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
out = Path(sys.argv[-1]); out.mkdir(parents=True, exist_ok=True)
x = load_digits().data
x = x - x.mean(axis=0)
u, s, vt = np.linalg.svd(x, full_matrices=False)
ratio, ks = s**2 / (s**2).sum(), np.arange(1, len(s) + 1)
fig = Figure(figsize=(max(6, 0.25 * len(ks)), 3.5)); FigureCanvasAgg(fig); ax = fig.subplots()
corners = np.stack([np.column_stack(c) for c in ((ks - .4, 0 * ratio), (ks - .4, ratio), (ks + .4, ratio),
                                                 (ks + .4, 0 * ratio))], axis=1)
bars = ax.add_collection(PolyCollection(corners, facecolors="#4C72B0", edgecolors="none", label="ratio"))
(curve,) = ax.plot(ks, ratio.cumsum(), "o-", color="#C44E52", label="cumulative")
for level in (0.8, 0.95):
    ax.axhline(level, ls="--", color="grey", lw=0.8)
ax.set_xlabel("component"); ax.set_ylabel("fraction of variance"); ax.set_xlim(0.4, len(ks) + 0.6)
ax.legend(handles=[curve, bars], loc="center right"); ax.set_title("scree plot")
fig.savefig(out / "scree.png", format="png", dpi=100, pil_kwargs={"compress_level": 3})
fig = Figure(figsize=(6, 5)); FigureCanvasAgg(fig); ax = fig.subplots()
scores, tips = u[:, :2] * s[:2], vt[:2].T * 0.8 * np.abs(u[:, :2] * s[:2]).max() / np.abs(vt[:2]).max()
ax.scatter(scores[:, 0], scores[:, 1], s=6, alpha=0.4, color="#4C72B0", label="rows (scores)")
zeros = np.zeros(len(tips))
for part, alpha in ((slice(10, None), 0.3), (slice(0, 10), 1.0)):
    ax.quiver(zeros[part], zeros[part], tips[part, 0], tips[part, 1], angles="xy", scale_units="xy", scale=1,
              color="#C44E52", alpha=alpha, width=0.004, label=f"loadings {alpha}")
ax.axhline(0, color="grey", lw=0.5); ax.axvline(0, color="grey", lw=0.5); ax.margins(0.12)
ax.set_xlabel("PC1"); ax.set_ylabel("PC2")
for (a, b), j in zip(tips[:10] * 1.05, range(10)):
    ax.text(a, b, f"pixel_{j}", color="#C44E52", fontsize=8, bbox={"boxstyle": "square,pad=0.1",
            "facecolor": "white", "edgecolor": "none", "alpha": 0.7})
ax.legend(loc="lower left", fontsize=7, framealpha=0.8); ax.set_title("biplot: scores and loadings (arrows)")
fig.savefig(out / "biplot.png", format="png", dpi=100, pil_kwargs={"compress_level": 3})
"""


def startup(args) -> None:
    """One-task fits end to end against ``import numpy, sklearn``, interleaved (5.)."""
    rows: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ols, pca = fit_spec(Path(tmp, "ols.yaml"), args.workers), fit_spec(Path(tmp, "pca.yaml"), args.workers, kind="pca")
        forced = fit_spec(Path(tmp, "workers.yaml"), args.workers, in_driver=False)
        cases = [("hpcml run, one-task fit (OLS, diabetes)", hpcml_cmd("run", str(ols), "-q", "-o"), None),
                 ("the same, in_driver: false (a worker process)", hpcml_cmd("run", str(forced), "-q", "-o"), None),
                 ("hpcml run, one-task fit (PCA, digits, 2 plots)", hpcml_cmd("run", str(pca), "-q", "-o"), None),
                 ("its floor: a plain script, SVD and the same 2 plots with matplotlib, no hpcml",
                  [sys.executable, "-c", PCA_PLOTS_FLOOR, "-o"], None),
                 ('python -c "import numpy, sklearn"', [sys.executable, "-c", "import numpy, sklearn"], None)]
        if args.before:  # the other checkout's hpcml: a driver-only option would be bad input there
            cases += [(f"earlier version ({args.before}), OLS fit", hpcml_cmd("run", str(ols), "-q", "-o"),
                       {"PYTHONPATH": args.before}),
                      (f"earlier version ({args.before}), PCA fit (2 plots)", hpcml_cmd("run", str(pca), "-q", "-o"),
                       {"PYTHONPATH": args.before})]
        load = os.getloadavg()
        for r in range(args.repeats + 1):  # round 0 warms the file cache and is not counted
            for i, (name, cmd, env) in enumerate(cases):
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                wall, _, code = timed(cmd + [f"{tmp}/run{i}-{r}"] if cmd[-1] == "-o" else cmd,
                                      cached_bytecode_env(f"{tmp}/pycache", **(env or {})))
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                assert code == 0, f"{name} exited {code}"
                if r:  # CPU seconds (user + system) of the process and the children it waited for
                    rows.setdefault(name, []).append(wall)
                    cpu.setdefault(name, []).append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    base = statistics.median(rows['python -c "import numpy, sklearn"'])
    cpu_base = statistics.median(cpu['python -c "import numpy, sklearn"'])
    end = os.getloadavg()
    print(f"load average {load[0]:.1f} at the start, {end[0]:.1f} at the end; median of {args.repeats} "
          "interleaved rounds\n")
    print("| what | seconds, median (range) | ratio to import numpy, sklearn | CPU seconds, median | CPU ratio |")
    print("|---|---:|---:|---:|---:|")
    for name, walls in rows.items():
        med, used = statistics.median(walls), statistics.median(cpu[name])
        print(f"| {name} | {med:.2f} ({min(walls):.2f}-{max(walls):.2f}) | {med / base:.2f}x | {used:.2f} | "
              f"{used / cpu_base:.2f}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", help="also write the numbers here")
    ap.add_argument("--warm-only", action="store_true", help="only the second job in one process (4.)")
    ap.add_argument("--startup-only", action="store_true", help="only the one-task fits against the imports (5.)")
    ap.add_argument("--before", help="with --startup-only: another checkout whose OLS fit runs alongside")
    args = ap.parse_args()
    if args.startup_only:
        startup(args)
        return
    if args.warm_only:
        warm = warm_second_job()
        print(f"load average {os.getloadavg()[0]:.1f}; " + ", ".join(f"{k} {v:.4f}" for k, v in warm.items()))
        return
    n, w = args.tasks, args.workers
    rows: dict[str, list[tuple[float, float]]] = {}
    kept: list[bool] = []  # whether the no-op resume left the run's recorded time alone

    def add(name: str, result: tuple[float, float, int]) -> None:
        assert result[2] in (0,), f"{name} exited {result[2]}"
        rows.setdefault(name, []).append(result[:2])

    with tempfile.TemporaryDirectory() as tmp:
        noop = Path(tmp, "noop.yaml")
        noop.write_text(yaml.safe_dump({"name": "noop", "data": {"source": "none"}, "model": {"kind": "sleep", "ms": 0},
                                        "plan": {"replicate": {"n": n}}, "backend": {"name": "local", "workers": w}}))
        fit = Path(tmp, "fit.yaml")
        fit.write_text(yaml.safe_dump({"name": "fit", "data": {"source": "sklearn:diabetes", "target": "target"},
                                       "model": {"kind": "ols"}, "plan": {"fit": {}},
                                       "backend": {"name": "local", "workers": w}}))
        for r in range(args.repeats):
            run = f"{tmp}/run{r}"
            add(f"hpcml run, {n:,} no-op tasks (plots included)", timed(hpcml_cmd("run", str(noop), "-q", "-o", run)))
            add(f"joblib.Parallel, {n:,} no-op calls", timed([sys.executable, "-c", JOBLIB, str(n), str(w)]))
            add("hpcml status of that run", timed(hpcml_cmd("status", run)))
            before = json.loads(Path(run, "summary.json").read_text())["run"]["seconds"]
            add("hpcml run --resume of that run (nothing to do)", timed(hpcml_cmd("run", str(noop), "-q", "-o", run,
                                                                                    "--resume")))
            kept.append(json.loads(Path(run, "summary.json").read_text())["run"]["seconds"] == before)
            add("hpcml run, one-task fit (OLS, diabetes)", timed(hpcml_cmd("run", str(fit), "-q", "-o", f"{tmp}/fit{r}")))
            add('python -c "import numpy, sklearn"', timed([sys.executable, "-c", "import numpy, sklearn"]))
    table = {name: {"seconds": statistics.median(s for s, _ in v), "seconds_range": [min(s for s, _ in v), max(s for s, _ in v)],
                    "peak_rss_mb": statistics.median(m for _, m in v)} for name, v in rows.items()}
    load = os.getloadavg()
    which = subprocess.run([sys.executable, "-c", "import hpcml; print(hpcml.__file__)"], cwd=tempfile.gettempdir(),
                           capture_output=True, text=True).stdout.strip()
    print(f"hpcml measured: {which}")
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; median of {args.repeats} interleaved runs\n")
    print("| what | seconds (range) | driver peak RSS (MB) |")
    print("|---|---:|---:|")
    for name, t in table.items():
        lo, hi = t["seconds_range"]
        print(f"| {name} | {t['seconds']:.2f} ({lo:.2f}-{hi:.2f}) | {t['peak_rss_mb']:.0f} |")
    names = list(table)
    print(f"\nper no-op task end to end: hpcml {1000 * table[names[0]]['seconds'] / n:.4f} ms, "
          f"joblib {1000 * table[names[1]]['seconds'] / n:.4f} ms")
    print(f"no-op resume kept the recorded run time: {all(kept)}")
    print(f"one-task fit / import numpy, sklearn: {table[names[4]]['seconds'] / table[names[5]]['seconds']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"load": load, "hpcml": which, "resume_kept_time": all(kept), **table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
