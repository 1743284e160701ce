#!/usr/bin/env python
"""Benchmark the network ladder on Fashion-MNIST, and hpcml's training loop vs a plain one.

(a) ladder: trains each architecture through the ``cnn`` kind and prints a markdown table
    of test accuracy and seconds per epoch (also written to --out).
(b) overhead: times ``hpcml.models.cnn.train.train`` against a plain PyTorch loop with the same
    model, batch size and threads, alternating the two so drift hits both, and prints the
    ratio of median epoch times.

Each architecture gets its own epoch budget (``LADDER_EPOCHS``, or ``--epochs N`` for all):
the fully connected nets converge in a few epochs, the dropout CNN needs ~10 with a
StepLR decay to pass 92 % on Fashion-MNIST. All nets share one recipe otherwise.

    python scripts/bench_cnn.py                       # the full ladder + overhead (~50 min on one idle core)
    python scripts/bench_cnn.py --epochs 3 --archs fc cnn1 --limit 10000
    python scripts/bench_cnn.py --limit 500 --test-limit 500 --epochs 1   # smoke run
    python scripts/bench_cnn.py --fixed-cost --compare-epochs 1 --reps 3 [--before /older/checkout]

(c) fixed cost (``--fixed-cost``): a one-task ``hpcml run`` of cnn1 against a plain PyTorch
    script doing the same epochs and evaluations, each in a fresh process.
"""
from __future__ import annotations

import argparse
import copy
import shutil
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hpcml.data.images import load_image_source
from hpcml.models.base import FitContext
from hpcml.models.cnn.nets import LADDER, build_model, count_parameters
from hpcml.models.cnn.kind import CNNKind
from hpcml.models.cnn.train import TrainConfig, to_tensors, train


# Epochs per architecture for the default ladder run: the fully connected and small nets
# plateau within a few epochs; the 2-conv nets get 10, with the StepLR decay after epoch 6.
LADDER_EPOCHS = {"fc": 3, "cnn1": 4, "cnn2": 10, "cnn2_dropout": 10, "cnn2_bn": 10, "sdsc_mynet": 3, "alcf_net": 3}


def run_ladder(data, args) -> str:
    kind = CNNKind()
    rows = ["| model | arch | parameters | epochs | test accuracy | s/epoch |", "|---|---|---:|---:|---:|---:|"]
    for label, arch, ap in LADDER:
        if args.archs and arch not in args.archs and label not in args.archs:
            continue
        epochs = args.arch_epochs.get(arch) or args.epochs or LADDER_EPOCHS[arch]
        p = kind.Params(arch=arch, arch_params=ap, epochs=epochs, batch_size=args.batch_size, lr=args.lr,
                        step_size=args.step_size, gamma=args.gamma, val_fraction=0.1, device=args.device)
        # One directory per ladder rung (three rungs share arch "fc"); it also holds the
        # checkpoints, so a killed benchmark resumes each rung where it stopped.
        slug = "".join(c if c.isalnum() else "_" for c in label).strip("_").lower()
        scratch = Path(args.plots) / slug if args.plots else None
        ctx = FitContext(rng=np.random.default_rng(args.seed), threads=args.threads, scratch=scratch)
        t0 = time.perf_counter()
        out = kind.outputs(p, kind.fit(p, data, None, ctx), data)
        rows.append(f"| {label} | {arch} | {int(out['n_parameters'])} | {epochs} | {out['test_split_accuracy']:.4f} "
                    f"| {out['seconds_per_epoch']:.2f} |")
        print(rows[-1], f"(total {time.perf_counter() - t0:.1f}s)", flush=True)
    return "\n".join(rows)


def plain_epoch(model, opt, X, y, bs, gen) -> float:
    """The textbook loop: shuffle, slice, forward, nll, backward, step."""
    model.train()
    t0 = time.perf_counter()
    perm = torch.randperm(len(X), generator=gen)
    running = 0.0
    for i in range(0, len(X), bs):
        idx = perm[i:i + bs]
        opt.zero_grad()
        loss = F.nll_loss(model(X[idx]), y[idx])
        loss.backward()
        opt.step()
        running += loss.item()
    return time.perf_counter() - t0


def run_overhead(data, args) -> str:
    torch.set_num_threads(args.threads)
    X, y = to_tensors(data.X, data.y, data.image_shape, "cpu")
    torch.manual_seed(0)
    init = build_model(args.compare_arch, data.image_shape, 10)
    plain_t, ours_t, ours_wall = [], [], []
    # Untimed warm-up: oneDNN builds its kernels for new shapes on first use (seconds).
    warm = copy.deepcopy(init)
    plain_epoch(warm, torch.optim.Adam(warm.parameters()), X, y, args.batch_size, torch.Generator())
    for rep in range(args.reps):
        # Alternate who goes first so thermal/turbo drift doesn't favour one side.
        for which in (("plain", "ours") if rep % 2 == 0 else ("ours", "plain")):
            if which == "plain":
                m = copy.deepcopy(init)
                opt = torch.optim.Adam(m.parameters(), lr=args.lr)
                g = torch.Generator().manual_seed(rep)
                plain_t += [plain_epoch(m, opt, X, y, args.batch_size, g) for _ in range(args.compare_epochs)]
            else:
                # With a checkpoint each epoch, as the cnn kind trains: the bookkeeping is part of the cost.
                cfg = TrainConfig(optimizer="adam", lr=args.lr, epochs=args.compare_epochs,
                                  batch_size=args.batch_size, threads=args.threads, device="cpu",
                                  checkpoint_dir=tempfile.mkdtemp(prefix="hpcml-bench-ckpt-"))
                t0 = time.perf_counter()
                res = train(copy.deepcopy(init), X, y, cfg, seed=rep)
                shutil.rmtree(cfg.checkpoint_dir, ignore_errors=True)
                ours_wall.append((time.perf_counter() - t0) / args.compare_epochs)
                ours_t += [h["seconds"] for h in res.history]
    med, best = statistics.median, min  # min is the robust estimate on a shared, noisy box
    p, o, w = med(plain_t), med(ours_t), med(ours_wall)
    return (f"overhead: {args.compare_arch} ({count_parameters(init)} params), n={len(X)}, "
            f"batch {args.batch_size}, threads {args.threads}, {len(plain_t)} epochs each\n"
            f"  plain loop   median {p:.3f}  min {best(plain_t):.3f} s/epoch\n"
            f"  hpcml train  median {o:.3f}  min {best(ours_t):.3f} s/epoch   "
            f"ratio median {o / p:.3f}  min {best(ours_t) / best(plain_t):.3f}\n"
            f"  hpcml train() call incl. setup and bookkeeping  median {w:.3f} s/epoch   ratio {w / p:.3f}")


def run_ddp_scaling(args) -> str:
    """One model, 1 process vs N DDP ranks (torchrun, gloo): accuracy and epoch time."""
    import pandas as pd
    import yaml

    tmp = Path(tempfile.mkdtemp(prefix="hpcml-bench-ddp-"))
    spec = {"name": "bench-ddp", "seed": args.seed,
            "data": {"source": f"idx:{args.data}", "target": "label",
                     "options": {"limit": args.ddp_limit, "test_limit": args.test_limit}},
            "model": {"kind": "cnn", "arch": args.ddp_arch, "epochs": args.ddp_epochs, "batch_size": args.batch_size,
                      "lr": args.lr, "device": "cpu", "plots": False},
            "plan": {"fit": {}}, "threads_per_task": args.threads}
    path = tmp / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    bin_dir = Path(sys.executable).parent
    rows = ["| ranks | launcher | val accuracy | test accuracy | s/epoch | speedup |", "|---:|---|---:|---:|---:|---:|"]
    base = None
    for n in (1, args.ddp_ranks):
        out = tmp / f"run{n}"
        cmd = [sys.executable, "-m", "hpcml.ddp", str(path), "--out", str(out)] if n == 1 else \
            [str(bin_dir / "torchrun"), "--standalone", f"--nproc_per_node={n}", "-m", "hpcml.ddp", str(path),
             "--out", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
        r = pd.read_parquet(out / "results.parquet").iloc[0]
        base = base or r["seconds_per_epoch"]
        rows.append(f"| {n} | {'python' if n == 1 else 'torchrun'} | {r['val_accuracy']:.4f} | {r['test_split_accuracy']:.4f} "
                    f"| {r['seconds_per_epoch']:.2f} | {base / r['seconds_per_epoch']:.2f} |")
        print(rows[-1], flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return (f"DDP: {args.ddp_arch}, n={args.ddp_limit}, global batch {args.batch_size}, {args.ddp_epochs} epochs, "
            f"{args.threads} thread(s) per rank, gloo\n\n" + "\n".join(rows))


# A plain PyTorch script: the textbook loop on the same images, with the evaluations whose numbers
# hpcml's one-task fit reports (validation loss each epoch, the test split's accuracy, the accuracy
# on the training images), reading the IDX files itself (gzip and np.frombuffer).
PLAIN = r"""
import gzip, json, sys
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

def read_idx(path, n):
    with gzip.open(path, "rb") as f:
        head = f.read(4)
        dims = np.frombuffer(f.read(4 * head[3]), ">u4").astype(int)
        n = min(n, dims[0])
        return np.frombuffer(f.read(n * int(np.prod(dims[1:]))), np.uint8).reshape(n, *dims[1:])

def images(stem, n):
    X = torch.tensor(read_idx(f"{data}/{stem}-images-idx3-ubyte.gz", n), dtype=torch.float32).div(255).unsqueeze(1)
    return X, torch.tensor(read_idx(f"{data}/{stem}-labels-idx1-ubyte.gz", n).astype(np.int64))

@torch.no_grad()
def predict(model, X):
    model.eval()
    return torch.cat([model(X[i:i + 1024]) for i in range(0, len(X), 1024)])

data, n, n_test, epochs, bs = sys.argv[1], *map(int, sys.argv[2:6])
torch.set_num_threads(1)
torch.manual_seed(0)
X, y = images("train", n)
Xt, yt = images("t10k", n_test)
perm = torch.randperm(len(X))
val, rows = perm[:round(0.1 * len(X))], perm[round(0.1 * len(X)):]
model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 13 * 13, 100),
                      nn.ReLU(), nn.Linear(100, 10), nn.LogSoftmax(dim=1))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
for epoch in range(epochs):
    model.train()
    order = rows[torch.randperm(len(rows))]
    for i in range(0, len(order), bs):
        idx = order[i:i + bs]
        opt.zero_grad()
        F.nll_loss(model(X[idx]), y[idx]).backward()
        opt.step()
    val_loss = F.nll_loss(predict(model, X[val]), y[val]).item()
test = (predict(model, Xt).argmax(1) == yt).double().mean().item()
train = (predict(model, X).argmax(1) == y).double().mean().item()
print(json.dumps({"val_loss": val_loss, "test_accuracy": test, "accuracy": train}))
"""


def cached_bytecode_env(cache: str, **extra: str) -> dict[str, str]:
    """A timed process's environment: Python's bytecode cache on, kept in ``cache`` (as an
    installed package has it; see scripts/bench_map.py)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": cache, **extra}


def run_fixed_cost(args) -> str:
    """One fresh process per side and round, interleaved after an uncounted warm-up round:
    the plain script against ``hpcml run`` of the same one-task fit (plots on and off), and
    ``--before``'s checkout the same way. Wall time of each process, from its start to its exit."""
    import yaml  # only this comparison writes a job spec

    here = str(Path(__file__).resolve().parent.parent)
    tmp = Path(tempfile.mkdtemp(prefix="hpcml-bench-fixed-"))
    cache = str(tmp / "pycache")
    sides: dict[str, tuple[list[str], str]] = {
        "plain PyTorch script": ([sys.executable, "-c", PLAIN, args.data, str(args.limit), str(args.test_limit),
                                  str(args.compare_epochs), str(args.batch_size)], here)}
    checkouts = {"": here, **({", before": args.before} if args.before else {})}
    for plots in (True, False):
        spec = {"name": "bench-fixed", "seed": args.seed,
                "data": {"source": f"idx:{args.data}", "target": "label",
                         "options": {"limit": args.limit, "test_limit": args.test_limit}},
                "model": {"kind": "cnn", "arch": "cnn1", "epochs": args.compare_epochs,
                          "batch_size": args.batch_size, "lr": 1e-3, "device": "cpu", "plots": plots},
                "plan": {"fit": {}}, "threads_per_task": 1, "backend": {"name": "local", "workers": 1}}
        path = tmp / f"plots-{plots}.yaml"
        path.write_text(yaml.safe_dump(spec))
        for tag, checkout in checkouts.items():
            out = tmp / f"run-{plots}{tag}"
            sides[f"hpcml run, plots {'on' if plots else 'off'}{tag}"] = (
                [sys.executable, "-m", "hpcml.cli", "run", str(path), "--out", str(out), "--overwrite", "-q"], checkout)
    wall: dict[str, list[float]] = {name: [] for name in sides}
    load = os.getloadavg()[0]
    for round_ in range(args.reps + 1):  # round 0 fills the bytecode and file caches
        for name, (cmd, checkout) in sides.items():
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, cwd=tmp, env=cached_bytecode_env(cache, PYTHONPATH=checkout),
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"{name} failed:\n{proc.stderr[-2000:]}")
            if round_:
                wall[name].append(time.perf_counter() - t0)
    shutil.rmtree(tmp, ignore_errors=True)
    ref = statistics.median(wall["plain PyTorch script"])
    rows = [f"cnn1, {args.limit} training and {args.test_limit} test images, {args.compare_epochs} epoch(s), "
            f"batch {args.batch_size}, 1 thread; load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} "
            f"at the end; median of {args.reps} interleaved rounds", "",
            "| way | seconds, median (range) | over the plain script, s | ratio |", "|---|---:|---:|---:|"]
    for name, ts in wall.items():
        med = statistics.median(ts)
        rows.append(f"| {name} | {med:.2f} ({min(ts):.2f}-{max(ts):.2f}) | {med - ref:+.2f} | {med / ref:.2f}x |")
    return "\n".join(rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--epochs", type=int, default=None, help="epochs for every arch (default: LADDER_EPOCHS)")
    ap.add_argument("--arch-epochs", nargs="*", default=[], metavar="ARCH=N",
                    help="epochs for one arch, e.g. cnn2_dropout=8 (overrides --epochs and LADDER_EPOCHS)")
    ap.add_argument("--step-size", type=int, default=6, help="StepLR period in epochs")
    ap.add_argument("--gamma", type=float, default=0.2, help="StepLR factor")
    ap.add_argument("--archs", nargs="*", default=[], help="arch names or ladder labels (default: all)")
    ap.add_argument("--limit", type=int, default=None, help="first N training images")
    ap.add_argument("--test-limit", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    # One thread by default: on a busy machine OpenMP's spinning barriers make 2 threads far
    # slower than 1 (measured 100x on FC(64,64) with the cores shared).
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the markdown report here")
    ap.add_argument("--plots", default=None, help="directory for per-arch curves/filters/confusion PNGs")
    ap.add_argument("--compare-arch", default="cnn1")
    ap.add_argument("--compare-epochs", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--skip-ladder", action="store_true")
    ap.add_argument("--skip-overhead", action="store_true")
    ap.add_argument("--ddp", action="store_true", help="also compare 1 process with --ddp-ranks DDP ranks")
    ap.add_argument("--ddp-ranks", type=int, default=2)
    ap.add_argument("--ddp-arch", default="cnn1")
    ap.add_argument("--ddp-limit", type=int, default=20000, help="training images for the DDP comparison")
    ap.add_argument("--ddp-epochs", type=int, default=2)
    ap.add_argument("--fixed-cost", action="store_true",
                    help="only time a one-task `hpcml run` against a plain PyTorch script, each a fresh process "
                         "(--limit/--test-limit images, --compare-epochs, --reps rounds)")
    ap.add_argument("--before", default=None, help="with --fixed-cost: another checkout's `hpcml run` too")
    args = ap.parse_args(argv)
    if args.fixed_cost:
        args.limit, args.test_limit = args.limit or 5000, args.test_limit or 2000
        text = run_fixed_cost(args)
        print(text)
        if args.out:
            Path(args.out).write_text(text + "\n")
        return
    args.arch_epochs = {k: int(v) for k, v in (a.split("=", 1) for a in args.arch_epochs)}

    data = load_image_source(f"idx:{args.data}", {"limit": args.limit, "test_limit": args.test_limit})
    print(f"data: {data.n} train, {data.test.n if data.test else 0} test images {data.image_shape}, "
          f"torch {torch.__version__}, threads {args.threads}", flush=True)
    parts = []
    if not args.skip_ladder:
        parts.append(f"## Ladder (batch {args.batch_size}, adam lr {args.lr}, StepLR {args.step_size}/{args.gamma}, "
                     f"threads {args.threads}, n={data.n})\n\n" + run_ladder(data, args))
    if not args.skip_overhead:
        text = run_overhead(data, args)
        print(text, flush=True)
        parts.append("## Loop overhead\n\n```\n" + text + "\n```")
    if args.ddp:
        parts.append("## Data-parallel\n\n" + run_ddp_scaling(args))
    report = "\n\n".join(parts) + "\n"
    print("\n" + report)
    if args.out:
        Path(args.out).write_text(report)


if __name__ == "__main__":
    main()
