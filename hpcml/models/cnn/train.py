"""A lean, deterministic, resumable training loop for the nets of ``hpcml.models.cnn.nets``.

Determinism: one integer seed drives everything random in training. The batch order
comes from a private ``torch.Generator`` seeded with ``seed``; dropout draws from torch's
global RNG, seeded with ``seed + 1`` inside ``torch.random.fork_rng`` so the caller's RNG
state is left untouched. Model initialisation is the caller's business (see nn_kind).

Resume: after each epoch a checkpoint (model, optimizer, scheduler, epoch, history, best
weights, both RNG states) is written to ``<checkpoint_dir>/last.pt`` via a temp file and
``os.replace``, so a crash leaves either the previous or the new checkpoint, never half
of one. ``train`` called again with the same config and seed continues after the last
finished epoch and ends bit-identical to an uninterrupted run.

Data parallel: under a :class:`DistContext` (set by ``hpcml.ddp``) every rank walks the
same permutation, takes its strided share ``idx[rank::world]`` of each global batch and
scales its loss so that the all-reduced gradient is the gradient of the whole batch:
N ranks take the same steps as one process with the same ``batch_size`` (up to float
summation order and dropout masks). Each rank checkpoints its own RNG states; rank 0
alone writes TensorBoard logs.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)
CHECKPOINT = "last.pt"


@dataclass
class TrainConfig:
    optimizer: str = "adam"  # sgd | adam | adadelta
    lr: float = 1e-3
    momentum: float = 0.0  # sgd only
    weight_decay: float = 0.0
    epochs: int = 10
    batch_size: int = 64
    step_size: int | None = None  # StepLR every step_size epochs; None = constant lr
    gamma: float = 0.1
    patience: int | None = None  # early stopping on validation loss; None = off
    device: str = "auto"  # auto | cpu | cuda
    threads: int | None = None  # torch.set_num_threads; None = leave as is
    checkpoint_dir: str | os.PathLike | None = None
    tensorboard_dir: str | os.PathLike | None = None
    eval_batch_size: int = 1024
    label: str | None = None  # a log line per epoch, "<label> epoch 3/10 ...", when set
    hparams: dict[str, Any] | None = None  # TensorBoard HParams of this training, when set

    def fingerprint(self, seed: int, model: nn.Module, n_rows: int, world: int = 1) -> str:
        """What must match for a checkpoint to be resumable (epochs may grow)."""
        keys = {k: v for k, v in dataclasses.asdict(self).items()
                if k not in ("epochs", "device", "threads", "checkpoint_dir", "tensorboard_dir", "eval_batch_size",
                             "label", "hparams")}
        shapes = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
        blob = json.dumps([keys, seed, n_rows, repr(shapes)] + ([world] if world > 1 else []),
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class TrainResult:
    model: nn.Module
    history: list[dict[str, float]]
    best_epoch: int  # 1-based epoch of lowest validation loss (last epoch without validation)
    epochs_run: int
    stopped_early: bool
    resumed_from: int = 0  # epochs already done when this call started
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DistContext:
    """How ``train`` reaches the other ranks of a data-parallel run (built by ``hpcml.ddp``).

    Kept as two callables so this module needs no ``torch.distributed`` setup of its own.
    """

    rank: int
    world: int
    wrap: Callable[[nn.Module], nn.Module]  # e.g. DistributedDataParallel(model)
    all_reduce: Callable[[torch.Tensor, str], None]  # in place across ranks; op "sum" | "min" | "max"


_ACTIVE: DistContext | None = None


@contextmanager
def distributed(ctx: DistContext | None):
    """Make ``train`` (and so the ``cnn`` kind) data-parallel over ``ctx`` inside the block."""
    global _ACTIVE
    previous, _ACTIVE = _ACTIVE, ctx
    try:
        yield ctx
    finally:
        _ACTIVE = previous


def active_dist() -> DistContext | None:
    return _ACTIVE


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch.cuda.is_available() is False")
    return torch.device(device)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params, name = model.parameters(), cfg.optimizer.lower()
    if name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if name == "adadelta":
        return torch.optim.Adadelta(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r} (sgd, adam, adadelta)")


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig):
    return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma) if cfg.step_size else None


def to_tensors(X: np.ndarray, y: np.ndarray | None, image_shape, device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Flattened float64 rows -> float32 (n, C, H, W) on ``device``, labels -> int64. Built once."""
    xt = torch.as_tensor(np.asarray(X, dtype=np.float32).reshape(-1, *image_shape)).to(device)
    yt = None if y is None else torch.as_tensor(np.asarray(y, dtype=np.int64)).to(device)
    return xt, yt


@torch.inference_mode()
def predict_log_proba(model: nn.Module, X: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    was_training = model.training
    model.eval()
    out = torch.cat([model(X[i:i + batch_size]) for i in range(0, X.shape[0], batch_size)]) if len(X) else \
        torch.empty(0)
    model.train(was_training)
    return out


def evaluate_shared(model: nn.Module, X: torch.Tensor, y: torch.Tensor, dist: DistContext | None,
                    batch_size: int = 1024) -> dict[str, float]:
    """Mean NLL and accuracy; under ``dist`` each rank scores its strided share, then sums."""
    if dist is None or dist.world == 1:
        ev = evaluate(model, X, y, batch_size)
        return {"loss": ev["loss"], "accuracy": ev["accuracy"]}
    Xs, ys = X[dist.rank::dist.world], y[dist.rank::dist.world]
    logp = predict_log_proba(model, Xs, batch_size)
    sums = torch.tensor([F.nll_loss(logp, ys, reduction="sum").item() if len(ys) else 0.0,
                         float((logp.argmax(1) == ys).sum()) if len(ys) else 0.0, float(len(ys))],
                        dtype=torch.float64)
    dist.all_reduce(sums, "sum")  # every rank gets the same bits, so early stopping agrees
    return {"loss": float(sums[0] / sums[2]), "accuracy": float(sums[1] / sums[2])}


def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> dict[str, Any]:
    """Mean NLL, accuracy, predicted labels and the log-probabilities themselves on (X, y)."""
    logp = predict_log_proba(model, X, batch_size)
    pred = logp.argmax(1)
    return {"loss": float(F.nll_loss(logp, y)), "accuracy": float((pred == y).float().mean()),
            "pred": pred.cpu().numpy(), "logp": logp}


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """cm[i, j] = number of rows of true class i predicted as j."""
    return np.bincount(np.asarray(y_true) * n_classes + np.asarray(y_pred), minlength=n_classes ** 2
                       ).reshape(n_classes, n_classes)


def _save_atomic(state: dict, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic on POSIX: readers see the old or the new file


def _tensorboard(logdir):
    if logdir is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("tensorboard requested but the 'tensorboard' package is not installed; skipping it")
        return None
    return SummaryWriter(log_dir=str(logdir))


def show_progress() -> None:
    """Epoch lines on stderr in a process whose logging nobody configured (a pool worker)
    unless its driver was asked to be quiet (``-q`` sets ``HPCML_QUIET``); where logging is
    configured (``hpcml run``), its level decides."""
    if not logging.getLogger().handlers and not log.handlers and not os.environ.get("HPCML_QUIET"):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def _log_epoch(writer, model: nn.Module, row: dict[str, float], cfg: TrainConfig) -> None:
    if cfg.label is not None:
        log.info("%s epoch %d/%d: train_loss %.4f, val_loss %.4f, val_accuracy %.4f, %.2f s", cfg.label,
                 row["epoch"], cfg.epochs, row["train_loss"], row["val_loss"], row["val_accuracy"], row["seconds"])
    if writer is None:
        return
    for k in ("train_loss", "val_loss", "val_accuracy", "lr", "seconds"):
        writer.add_scalar(k, row[k], row["epoch"])
    for name, p in model.named_parameters():  # weight histograms, one per parameter tensor
        writer.add_histogram(name, p.detach().cpu(), row["epoch"])


def _hparams(writer, history: list[dict[str, float]], best_epoch: int, cfg: TrainConfig) -> None:
    """The HParams plugin's row of this training: its parameters and final metrics."""
    if writer is None or cfg.hparams is None or not history:
        return
    final = history[best_epoch - 1] if cfg.patience and best_epoch else history[-1]
    hp = {k: v if isinstance(v, (bool, int, float, str)) else json.dumps(v, default=str)
          for k, v in cfg.hparams.items() if v is not None}
    metrics = {f"hparam/{k}": float(final[k]) for k in ("val_accuracy", "val_loss", "train_loss")}
    writer.add_hparams(hp, metrics, run_name=".")  # "." : the training's own run, not a subfolder


def train(model: nn.Module, X: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, seed: int,
          X_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None,
          dist: DistContext | None = None) -> TrainResult:
    """Train ``model`` on tensors (X: (n, C, H, W) float32, y: (n,) int64) for ``cfg.epochs``.

    Resumes from ``cfg.checkpoint_dir/last.pt`` when it exists and matches this config/seed.
    With ``cfg.patience`` and validation data, stops after ``patience`` epochs without a
    lower validation loss, and the returned model has the best-validation weights.
    ``dist`` (default: the one set by :func:`distributed`) makes the run data-parallel.
    """
    dist = dist if dist is not None else _ACTIVE
    if dist is not None and dist.world == 1:
        dist = None
    device = resolve_device(cfg.device)
    old_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    old_det = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)  # warn, not fail, for ops without one
    fork = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=fork):
            return _train(model.to(device), X.to(device), y.to(device), cfg, int(seed), device,
                          None if X_val is None else X_val.to(device), None if y_val is None else y_val.to(device),
                          dist)
    finally:
        torch.use_deterministic_algorithms(old_det)
        torch.set_num_threads(old_threads)


def _checkpoint_path(cfg: TrainConfig, dist: DistContext | None) -> Path | None:
    if cfg.checkpoint_dir is None:
        return None
    # Each rank keeps its own RNG states, so each rank has its own file.
    name = CHECKPOINT if dist is None or dist.rank == 0 else f"last.rank{dist.rank}.pt"
    return Path(cfg.checkpoint_dir) / name


def _agreed_start(dist: DistContext | None, start: int) -> bool:
    """Do all ranks resume from the same epoch? (A kill between two ranks' saves can split them.)"""
    if dist is None:
        return True
    lo, hi = torch.tensor([start]), torch.tensor([start])
    dist.all_reduce(lo, "min")
    dist.all_reduce(hi, "max")
    return int(lo) == int(hi)


def _train(model, X, y, cfg, seed, device, X_val, y_val, dist: DistContext | None = None) -> TrainResult:
    rank, world = (dist.rank, dist.world) if dist is not None else (0, 1)
    net = dist.wrap(model) if dist is not None else model  # forward/backward through DDP's hooks
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg)
    gen = torch.Generator()  # batch order; CPU generator so orders match across devices
    gen.manual_seed(seed)  # the same on every rank: all ranks walk one permutation
    torch.manual_seed((seed + 1 + rank) % 2 ** 63)  # dropout masks (global RNG, forked by caller)
    has_val = X_val is not None and len(X_val) > 0
    history: list[dict[str, float]] = []
    best = {"loss": float("inf"), "epoch": 0, "state": None, "bad": 0}
    ckpt = _checkpoint_path(cfg, dist)
    fp = cfg.fingerprint(seed, model, X.shape[0], world)
    start, stopped, state = 0, False, None
    if ckpt is not None and ckpt.exists():
        # CPU first: RNG states must stay CPU ByteTensors; load_state_dict moves the rest.
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        if state.get("fingerprint") != fp:
            log.warning("%s: checkpoint is from another config or seed; starting afresh", ckpt)
            state = None
        elif int(state["epoch"]) > cfg.epochs:
            log.warning("%s: checkpoint is past epoch %d; starting afresh", ckpt, cfg.epochs)
            state = None
    if not _agreed_start(dist, int(state["epoch"]) if state is not None else 0):
        log.warning("%s: ranks hold checkpoints of different epochs; all start afresh", ckpt)
        state = None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if sched is not None:
            sched.load_state_dict(state["scheduler"])
        gen.set_state(state["shuffle_rng"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        history, best, stopped = list(state["history"]), dict(state["best"]), bool(state["stopped"])
        start = int(state["epoch"])
    resumed_from = start
    writer = _tensorboard(cfg.tensorboard_dir) if rank == 0 else None
    n, bs = X.shape[0], int(cfg.batch_size)
    for epoch in range(start + 1, cfg.epochs + 1):
        if stopped:
            break
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen).to(device)
        loss_sum = 0.0
        # The hot loop: index a permutation slice, step. Nothing else per batch.
        if world == 1:
            for i in range(0, n, bs):
                idx = perm[i:i + bs]
                opt.zero_grad()
                loss = F.nll_loss(net(X[idx]), y[idx])
                loss.backward()
                opt.step()
                loss_sum += loss.item() * idx.shape[0]
        else:
            for i in range(0, n - world + 1, bs):  # a last batch smaller than world is dropped
                idx = perm[i:i + bs]
                mine = idx[rank::world]
                opt.zero_grad()
                loss = F.nll_loss(net(X[mine]), y[mine])
                # DDP averages gradients over ranks; weight by share so the step is the full batch's.
                (loss * (mine.shape[0] * world / idx.shape[0])).backward()
                opt.step()
                loss_sum += loss.item() * mine.shape[0]
            total = torch.tensor([loss_sum], dtype=torch.float64)
            dist.all_reduce(total, "sum")
            loss_sum = float(total)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        if sched is not None:
            sched.step()
        row = {"epoch": epoch, "train_loss": loss_sum / max(n, 1), "val_loss": float("nan"),
               "val_accuracy": float("nan"), "lr": opt.param_groups[0]["lr"], "seconds": seconds}
        if has_val:
            ev = evaluate_shared(model, X_val, y_val, dist, cfg.eval_batch_size)
            row["val_loss"], row["val_accuracy"] = ev["loss"], ev["accuracy"]
            if ev["loss"] < best["loss"]:
                best = {"loss": ev["loss"], "epoch": epoch, "bad": 0,
                        "state": {k: v.detach().clone() for k, v in model.state_dict().items()}
                        if cfg.patience else None}
            else:
                best["bad"] += 1
            stopped = cfg.patience is not None and best["bad"] >= cfg.patience
        history.append(row)
        if rank == 0:
            _log_epoch(writer, model, row, cfg)
        if ckpt is not None:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            _save_atomic({
                "fingerprint": fp, "epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict() if sched is not None else None, "history": history,
                "best": best, "stopped": stopped, "shuffle_rng": gen.get_state(), "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            }, ckpt)
    if best["state"] is not None:
        model.load_state_dict(best["state"])  # with patience, return the best-validation weights
    best_epoch = best["epoch"] if has_val else len(history)
    if writer is not None:
        if start < len(history):  # not when a finished training is only reloaded
            _hparams(writer, history, best_epoch, cfg)
        writer.close()
    return TrainResult(model=model, history=history, best_epoch=best_epoch, epochs_run=len(history),
                       stopped_early=stopped, resumed_from=resumed_from, device=str(device))
