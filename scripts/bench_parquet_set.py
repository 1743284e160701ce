#!/usr/bin/env python
"""A directory of Parquet part files vs the one file holding the same rows
(docs/benchmarks.md, "Parquet sets").

Writes an n x p float64 table as one Parquet file and as ``--parts`` part files, then, each in
a fresh Python process and alternating file / set ``--repeats`` times: the full load
(``full_load``: validated column by column into the shared mapped file, built anew in an empty
map directory) and one shard's rows (``shards`` plan of ``--parts`` * 2 shards, the middle one).
Prints the median seconds and peak RSS (VmHWM) of each, and set / file ratios.

    python scripts/bench_parquet_set.py [--rows 400000] [--cols 50] [--parts 8] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r'''
import json, sys, time
from hpcml.spec import DataSpec
mode, source, shards = sys.argv[1], sys.argv[2], int(sys.argv[3])
spec = DataSpec(source=source, target="y")
t0 = time.perf_counter()
if mode == "load":
    from hpcml.data.sources import full_load
    data = full_load(spec, None, True, keep=False)
    checksum = float(data.X[:, 0].sum())
else:
    from hpcml.plans.base import block_share
    from hpcml.data.lazy_rows import lazy_rows
    data = lazy_rows(spec, None, True)
    rows = block_share(data.n, shards // 2, shards)
    checksum = float(data.X[rows.start:rows.stop][:, 0].sum())
seconds = time.perf_counter() - t0
# VmHWM, not getrusage: a child's ru_maxrss starts from its parent's at fork.
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "peak_mb": hwm / 1024, "checksum": checksum}))
'''


def write_tables(directory: Path, rows: int, cols: int, parts: int) -> tuple[Path, Path]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    names = [f"x{j}" for j in range(cols)] + ["y"]
    X = rng.standard_normal((rows, cols + 1))
    table = pa.table(dict(zip(names, X.T)))
    one = directory / "one.parquet"
    pq.write_table(table, one, row_group_size=50_000)
    part_dir = directory / "parts"
    part_dir.mkdir()
    step = -(-rows // parts)
    for i in range(parts):
        pq.write_table(table.slice(i * step, step), part_dir / f"part-{i:05d}.parquet", row_group_size=50_000)
    return one, part_dir


def measure(mode: str, source: Path, shards: int, directory: Path, k: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HPCML_MAP_DIR": str(directory / f"map-{mode}-{k}")}
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(source), str(shards)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=400_000)
    ap.add_argument("--cols", type=int, default=50)
    ap.add_argument("--parts", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        one, parts = write_tables(directory, args.rows, args.cols, args.parts)
        shards = 2 * args.parts
        print(f"{args.rows} x {args.cols} float64 + y; one file vs {args.parts} part files; "
              f"load average {os.getloadavg()[0]:.1f}")
        for mode in ("load", "shard"):
            runs: dict[str, list[dict]] = {"file": [], "set": []}
            for k in range(args.repeats):
                for name, source in (("file", one), ("set", parts)):
                    runs[name].append(measure(mode, source, shards, directory, len(runs[name]) + 10 * k))
            assert runs["file"][0]["checksum"] == runs["set"][0]["checksum"]
            med = {n: (statistics.median(r["seconds"] for r in rs), statistics.median(r["peak_mb"] for r in rs))
                   for n, rs in runs.items()}
            print(f"{mode}: file {med['file'][0]:.2f} s {med['file'][1]:.0f} MB | set {med['set'][0]:.2f} s "
                  f"{med['set'][1]:.0f} MB | set/file time {med['set'][0] / med['file'][0]:.2f}x, "
                  f"peak {med['set'][1] / med['file'][1]:.2f}x")


if __name__ == "__main__":
    main()
