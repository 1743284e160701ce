#!/usr/bin/env python
"""Benchmark the network ladder on Fashion-MNIST, and hpcml's training loop vs a plain one.

(a) ladder: trains each architecture through the ``cnn`` kind and prints a markdown table
    of test accuracy and seconds per epoch (also written to --out).
(b) overhead: times ``hpcml.models.train.train`` against a plain PyTorch loop with the same
    model, batch size and threads, alternating the two so drift hits both, and prints the
    ratio of median epoch times.

    python scripts/bench_cnn.py --epochs 3 --archs fc cnn1 --limit 10000
    python scripts/bench_cnn.py --limit 500 --test-limit 500 --epochs 1   # smoke run
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hpcml.images import load_image_source
from hpcml.models.base import FitContext
from hpcml.models.nn import LADDER, build_model, count_parameters
from hpcml.models.nn_kind import CNNKind
from hpcml.models.train import TrainConfig, to_tensors, train


def run_ladder(data, args) -> str:
    kind = CNNKind()
    rows = ["| model | arch | parameters | test accuracy | s/epoch |", "|---|---|---:|---:|---:|"]
    for label, arch, ap in LADDER:
        if args.archs and arch not in args.archs and label not in args.archs:
            continue
        p = kind.Params(arch=arch, arch_params=ap, epochs=args.epochs, batch_size=args.batch_size,
                        lr=args.lr, val_fraction=0.1, device=args.device)
        scratch = Path(args.plots) / arch if args.plots else None
        ctx = FitContext(rng=np.random.default_rng(args.seed), threads=args.threads, scratch=scratch)
        t0 = time.perf_counter()
        out = kind.outputs(p, kind.fit(p, data, None, ctx), data)
        rows.append(f"| {label} | {arch} | {int(out['n_parameters'])} | {out['test_accuracy']:.4f} "
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
                cfg = TrainConfig(optimizer="adam", lr=args.lr, epochs=args.compare_epochs,
                                  batch_size=args.batch_size, threads=args.threads, device="cpu")
                t0 = time.perf_counter()
                res = train(copy.deepcopy(init), X, y, cfg, seed=rep)
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


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--archs", nargs="*", default=[], help="arch names or ladder labels (default: all)")
    ap.add_argument("--limit", type=int, default=None, help="first N training images")
    ap.add_argument("--test-limit", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the markdown report here")
    ap.add_argument("--plots", default=None, help="directory for per-arch curves/filters/confusion PNGs")
    ap.add_argument("--compare-arch", default="cnn1")
    ap.add_argument("--compare-epochs", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--skip-ladder", action="store_true")
    ap.add_argument("--skip-overhead", action="store_true")
    args = ap.parse_args(argv)

    data = load_image_source(f"idx:{args.data}", {"limit": args.limit, "test_limit": args.test_limit})
    print(f"data: {data.n} train, {data.test.n if data.test else 0} test images {data.image_shape}, "
          f"torch {torch.__version__}, threads {args.threads}", flush=True)
    parts = []
    if not args.skip_ladder:
        parts.append(f"## Ladder ({args.epochs} epochs, batch {args.batch_size}, n={data.n})\n\n" + run_ladder(data, args))
    if not args.skip_overhead:
        text = run_overhead(data, args)
        print(text, flush=True)
        parts.append("## Loop overhead\n\n```\n" + text + "\n```")
    report = "\n\n".join(parts) + "\n"
    print("\n" + report)
    if args.out:
        Path(args.out).write_text(report)


if __name__ == "__main__":
    main()
