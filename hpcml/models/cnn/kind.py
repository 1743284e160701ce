"""The ``cnn`` model kind: a network of ``hpcml.models.cnn.nets`` trained by ``hpcml.models.cnn.train``.

Seeds: three integers drawn from the task's generator, in order: model init, training
(batch order + dropout), validation split. Same task seed -> same weights, bit for bit,
for the same torch build and thread count.

Bootstrap weights are observation counts: rows with weight 0 are left out and the rest
repeated by their (rounded, at least 1) count. The validation split is drawn from the
distinct rows first, so a duplicated row never sits on both sides.
"""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, field_validator

from hpcml.models.base import Dataset, FitContext, ModelKind, ModelParams, register_model
from hpcml.models.cnn.nets import ARCHITECTURES, build_model, count_parameters, is_user_arch, probe, user_arch_class
from hpcml.models.cnn.train import (TrainConfig, active_dist, confusion_matrix, evaluate, predict_log_proba,
                                show_progress, to_tensors, train)



@dataclass
class NNFit:
    """What ``fit`` returns: a CPU model in eval mode plus its training record."""

    model: torch.nn.Module
    arch: str
    image_shape: tuple[int, ...]
    classes: list[Any]
    history: list[dict[str, float]]
    outputs: dict[str, float]
    confusion: np.ndarray | None = None
    artifacts: list[str] = field(default_factory=list)
    class_names: list[str] | None = None  # the data set's names of the classes (Fashion-MNIST's)


def encode_labels(y: np.ndarray, classes: list[Any]) -> np.ndarray:
    """Labels -> class indices 0..K-1 (labels that already are such codes pass through)."""
    y = np.asarray(y)
    uniq, inv = np.unique(y, return_inverse=True)
    pos = {c: i for i, c in enumerate(classes)}
    if all(u in pos for u in uniq.tolist()):
        return np.array([pos[u] for u in uniq.tolist()], dtype=np.int64)[inv]
    if np.issubdtype(y.dtype, np.integer) and uniq.min() >= 0 and uniq.max() < len(classes):
        return y.astype(np.int64)
    raise ValueError(f"labels {uniq[:10].tolist()} do not match classes {list(classes)[:10]}")


def _rows(weights: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    if weights is None:
        return np.arange(n), np.ones(n, dtype=np.int64)
    w = np.asarray(weights, dtype=np.float64)
    idx = np.flatnonzero(w > 0)
    return idx, np.maximum(np.rint(w[idx]), 1).astype(np.int64)


def _short(value: Any) -> str:
    if isinstance(value, str) and is_user_arch(value):
        return value.rpartition(":")[2]  # the class name, not its file's path
    return json.dumps(value, separators=(",", ":"), sort_keys=True) if isinstance(value, (dict, list)) else str(value)


def _dotted(mapping: dict, prefix: str = ""):
    """(dotted key, value) of every leaf of a nested mapping, in its order."""
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            yield from _dotted(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def run_label(ctx: FitContext) -> str:
    """A training's name in logs and TensorBoard: its sweep grid point (``arch=cnn1,lr=0.01``),
    else its task id (``fit-000000``, ``bootstrap-000012``)."""
    grid = ctx.task_params.get("params") if isinstance(ctx.task_params, dict) else None
    if not grid:
        return (ctx.task_id or "fit").replace("/", "-")
    # The grid point, then the task's other parameters that are set (a repeat after the first);
    # a mapping one key each, as a person writes it: arch_params.c1=8,arch_params.c2=16.
    parts = {**grid, **{k: v for k, v in ctx.task_params.items() if k != "params" and v}}
    label = ",".join(f"{k}={_short(v)}" for k, v in _dotted(parts))
    return re.sub(r"[^\w.=,+-]", "_", label)[:150]


def hparams(params, ctx: FitContext) -> dict[str, Any]:
    """What TensorBoard's HParams table shows for a training: its model parameters (a user
    net's class name for ``arch``, ``arch_params`` one column each)."""
    skip = {"device", "tensorboard", "plots", "progress", "arch_params"}
    out = {k: (_short(v) if k == "arch" else v) for k, v in params.model_dump().items() if k not in skip}
    return {**out, **{f"arch_params.{k}": v for k, v in params.arch_params.items()}}


@register_model
class CNNKind(ModelKind):
    name = "cnn"
    needs_target = True
    task_type = "classification"
    primary_metric = "accuracy"
    greater_is_better = True

    class Params(ModelParams):
        code_file_fields: ClassVar[tuple[str, ...]] = ("arch",)
        arch: str = "cnn1"  # a built-in name, or the user's nn.Module: package.module:Class, file.py:Class
        arch_params: dict[str, Any] = {}  # keyword arguments of the net's constructor
        optimizer: Literal["sgd", "adam", "adadelta"] = "adam"
        lr: float = Field(1e-3, gt=0)
        momentum: float = Field(0.0, ge=0, lt=1)
        weight_decay: float = Field(0.0, ge=0)
        epochs: int = Field(5, ge=1)
        batch_size: int = Field(64, ge=1)
        step_size: int | None = Field(None, ge=1)
        gamma: float = Field(0.1, gt=0)
        val_fraction: float = Field(0.1, ge=0, lt=1)
        patience: int | None = Field(None, ge=1)
        device: Literal["auto", "cpu", "cuda"] = "auto"
        tensorboard: bool = False
        progress: bool = True  # a log line per epoch of each training
        plots: bool = True  # curves, first-layer filters, confusion matrix as PNGs beside the results

        @field_validator("arch")
        @classmethod
        def _known_arch(cls, v: str) -> str:
            if v not in ARCHITECTURES and not is_user_arch(v):
                raise ValueError(f"unknown arch; choose one of {', '.join(ARCHITECTURES)}, or your own "
                                 "torch.nn.Module as `package.module:Class` or `path/to/file.py:Class`")
            return v

    def one_task_in_driver(self, params) -> bool:
        # A one-task run of a built-in network trains in the driver, which imported torch and
        # read the images for its checks: a worker would import and read them again (seconds).
        # The user's own nn.Module, and several trainings, train in workers.
        return not is_user_arch(params.arch)

    def with_params(self, base, overrides: dict[str, Any]):
        """``base`` with a grid point applied; a grid's ``arch_params`` is merged into the
        base's key by key (the base's keys stay and are checked with the net, a typo too)."""
        if isinstance(overrides.get("arch_params"), dict):
            overrides = {**overrides, "arch_params": {**base.arch_params, **overrides["arch_params"]}}
        return super().with_params(base, overrides)

    def check(self, params, data: Dataset) -> list[tuple[str, Any, str]]:
        shape = data.image_shape
        if shape is None:
            return [("data", None, "the cnn kind needs image data (a source with image_shape)")]
        if len(shape) != 3 or int(np.prod(shape)) != data.X.shape[1]:
            return [("data", shape, f"image_shape {shape} does not match {data.X.shape[1]} columns")]
        user = is_user_arch(params.arch)
        n_classes = max(2, len(self._classes(data)))
        if user:  # the class itself: importable, an nn.Module
            try:
                user_arch_class(params.arch)
            except ValueError as e:
                return [("model.arch", params.arch, str(e))]
        try:
            with torch.random.fork_rng(devices=[]):  # a check must not move torch's global RNG
                model = build_model(params.arch, shape, n_classes, **params.arch_params)
        except ValueError as e:
            return [("model.arch_params", params.arch_params, str(e))]
        if user:
            try:
                probe(model, shape, n_classes)
            except ValueError as e:
                return [("model.arch", params.arch, str(e))]
        return []

    def _classes(self, data: Dataset) -> list[Any]:
        return list(data.classes) if data.classes is not None else np.unique(data.y).tolist()

    def fit(self, params, data: Dataset, weights, ctx: FitContext) -> NNFit:
        if data.image_shape is None:
            raise ValueError("the cnn kind needs image data (Dataset.image_shape is None)")
        shape = tuple(int(s) for s in data.image_shape)
        classes = self._classes(data)
        y = encode_labels(data.y, classes)
        init_seed, train_seed, split_seed = (int(s) for s in ctx.rng.integers(2 ** 63, size=3))
        if ctx.split_seed is not None:  # a sweep: every configuration validates on the same rows
            split_seed = int(ctx.split_seed)

        idx, counts = _rows(weights, data.n)
        order = np.random.default_rng(split_seed).permutation(len(idx))
        n_val = min(int(round(params.val_fraction * len(idx))), len(idx) - 1)
        val_rows = np.sort(idx[order[:n_val]])
        keep = np.sort(order[n_val:])
        train_rows = np.repeat(idx[keep], counts[keep])

        with torch.random.fork_rng(devices=[]):  # init from our seed, leave global RNG alone
            torch.manual_seed(init_seed)
            model = build_model(params.arch, shape, len(classes), **params.arch_params)

        scratch = Path(ctx.scratch) if ctx.scratch is not None else None
        cfg = TrainConfig(
            optimizer=params.optimizer, lr=params.lr, momentum=params.momentum, weight_decay=params.weight_decay,
            epochs=params.epochs, batch_size=params.batch_size, step_size=params.step_size, gamma=params.gamma,
            patience=params.patience, device=params.device, threads=ctx.threads,
            checkpoint_dir=scratch / "checkpoints" if scratch else None,
            tensorboard_dir=scratch.parent.parent / "tensorboard" / run_label(ctx) if (scratch and params.tensorboard)
            else None,
            label=run_label(ctx) if params.progress else None, hparams=hparams(params, ctx),
        )
        if params.progress:
            show_progress()
        Xt, yt = to_tensors(data.X[train_rows], y[train_rows], shape, "cpu")
        Xv, yv = to_tensors(data.X[val_rows], y[val_rows], shape, "cpu") if n_val else (None, None)
        res = train(model, Xt, yt, cfg, train_seed, Xv, yv)
        model = res.model

        # The confusion matrix is of the source's test split when it has one, else of the
        # validation rows. A real test split gives test_split_* outputs, named apart from the
        # test_* scores of the rows a plan holds out (sweep, cv): one name per metric and rows.
        test, cm = None, None
        has_test = data.test is not None and data.test.y is not None and data.test.n > 0
        if has_test:
            test = to_tensors(data.test.X, encode_labels(data.test.y, classes), shape, res.device)
        elif n_val:
            test = (Xv.to(res.device), yv.to(res.device))
        ev = evaluate(model, *test) if test is not None else None
        if ev is not None:
            cm = confusion_matrix(test[1].cpu().numpy(), ev["pred"], len(classes))
        model = model.cpu().eval()

        last = res.history[-1]
        if params.patience and n_val:  # the returned weights are the best epoch's: report those
            last = {**last, **{k: res.history[res.best_epoch - 1][k] for k in ("val_loss", "val_accuracy")}}
        outputs = {}
        if has_test:  # from the test split's one prediction above
            split = _accuracy_log_loss(ev["logp"].cpu(), test[1].cpu())
            outputs = {f"test_split_{k}": v for k, v in split.items()}
        outputs |= {
            "train_loss": last["train_loss"],
            "val_loss": last["val_loss"],
            "val_accuracy": last["val_accuracy"],
            "epochs_run": float(res.epochs_run),
            "best_epoch": float(res.best_epoch),
            "seconds_per_epoch": float(np.mean([h["seconds"] for h in res.history])),
            "n_parameters": float(count_parameters(model)),
        }
        fitted = NNFit(model, params.arch, shape, classes, res.history, outputs, cm,
                       class_names=data.meta.get("class_names"))
        dist = active_dist()
        if scratch is not None and (dist is None or dist.rank == 0):  # one writer in a DDP run
            fitted.artifacts = self._write_artifacts(scratch, fitted, ctx, params.plots)
        return fitted

    def _write_artifacts(self, scratch: Path, fitted: NNFit, ctx: FitContext, plots: bool = True) -> list[str]:
        scratch.mkdir(parents=True, exist_ok=True)
        hist = scratch / "history.csv"
        with open(hist, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(fitted.history[0]))
            w.writeheader()
            w.writerows(fitted.history)
        paths = [hist]
        if not plots:
            return [str(hist)]
        try:
            from hpcml.models.cnn.plots import write_training_plots  # matplotlib loads only where a run draws

            names = fitted.class_names or fitted.classes
            paths += write_training_plots(scratch, fitted.history, fitted.model, fitted.confusion, names,
                                          title=run_label(ctx))
        except Exception as e:  # a plot failure must not lose a finished training
            if ctx.log is not None:
                ctx.log.warning("cnn plots failed: %s", e)
        return [str(p) for p in paths]

    def outputs(self, params, fitted: NNFit, data: Dataset) -> dict[str, float]:
        return dict(fitted.outputs)

    def score(self, params, fitted: NNFit, data: Dataset, mask) -> dict[str, float]:
        X, y = (data.X, data.y) if mask is None else (data.X[mask], data.y[mask])
        if len(X) == 0:
            return {"accuracy": float("nan"), "log_loss": float("nan")}
        Xt, yt = to_tensors(X, encode_labels(y, fitted.classes), fitted.image_shape, "cpu")
        with torch.inference_mode():
            return _accuracy_log_loss(predict_log_proba(fitted.model, Xt), yt)

    def sweep_metric(self, params) -> tuple[str, bool]:
        # Model selection on the validation split: the held-out test rows choose nothing.
        return "val_accuracy", True

    def grid_summary(self, params, ok) -> dict[str, Any]:
        """The lecture notes' hyperparameter table: one row per configuration, best validation
        accuracy first, and the test accuracy of the chosen configuration only."""
        keys = [c for c in ok.columns if c.startswith("param_")]
        cols = [c for c in ("val_accuracy", "val_loss", "seconds_per_epoch", "epochs_run", "n_parameters")
                if c in ok.columns]
        tests = [c for c in ("test_accuracy", "test_log_loss", "test_split_accuracy", "test_split_log_loss")
                 if c in ok.columns]
        if ok.empty or not keys or "val_accuracy" not in cols:
            return {}
        grouped = ok.groupby(keys, dropna=False)
        board = grouped[cols + tests].mean().join(grouped.size().rename("repeats")).reset_index()
        board = board.sort_values("val_accuracy", ascending=False, kind="stable")
        # As records, not iterrows: each column keeps its type (an integer arch_params.c1 stays one).
        params = [{k[len("param_"):]: _plain(r[k]) for k in keys} for r in board.to_dict("records")]
        rows = [{**p, **{c: float(r[c]) for c in cols}} for p, r in zip(params, board.to_dict("records"))]
        top = board.iloc[0]
        chosen = {**params[0], **{c: float(top[c]) for c in cols + tests}, "repeats": int(top["repeats"])}
        table = [{**p, "val_accuracy": r["val_accuracy"], "s/epoch": r.get("seconds_per_epoch"),
                  "parameters": int(r["n_parameters"]) if "n_parameters" in r else None,
                  "epochs": int(r["epochs_run"]) if "epochs_run" in r else None}
                 for p, r in zip(params, rows)]
        named = ", ".join(f"{k}={v}" for k, v in params[0].items() if v is not None)
        held = ", ".join(f"{c} {chosen[c]:.4f}" for c in tests if not c.startswith("test_split_"))
        split = ", ".join(f"{c} {chosen[c]:.4f}" for c in tests if c.startswith("test_split_"))
        scores = "; ".join(part for part in (f"on the held-out rows {held}" if held else "",
                                             f"on the data's test split {split}" if split else "") if part) \
            or "no test rows"
        return {"leaderboard": rows, "table": table, "best": chosen,
                "notes": [f"chosen by validation accuracy ({chosen['val_accuracy']:.4f}): {named}; {scores}"]}


def _accuracy_log_loss(logp: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Accuracy and mean log loss of log-probabilities, the log loss clipped as sklearn's
    ``log_loss`` clips (one confident miss cannot give inf): the one definition of both."""
    nll = -logp.gather(1, y[:, None]).clamp(min=float(np.log(1e-15)))
    return {"accuracy": float((logp.argmax(1) == y).double().mean()), "log_loss": float(nll.double().mean())}


def _plain(v: Any) -> Any:
    """A parameter value as JSON has it (numpy scalars to Python, NaN to None)."""
    if v is pd.NA:  # a key this configuration's mapping lacks
        return None
    if isinstance(v, np.generic):
        v = v.item()
    return None if isinstance(v, float) and v != v else v
