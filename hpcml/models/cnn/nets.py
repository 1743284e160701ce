"""The network ladder of the lecture notes, built by name for any (C, H, W) input.

Every net ends in ``LogSoftmax``: outputs are log-probabilities and the loss is
``nll_loss`` everywhere (equal to cross-entropy on logits, but one convention for all).
Flattened sizes are measured with a dummy forward pass, so the same names work on
28x28 (MNIST, Fashion-MNIST) and 8x8 (sklearn digits).

Small inputs: where a net's convolutions would shrink an 8x8 image to nothing, the
convolutions get padding (see ``sdsc_mynet`` and ``alcf_net``); for 28x28 inputs the
nets are exactly those of the notes.
"""
from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn
import torch.nn.functional as F
from hpcml.models.python_function import module_from_file


def _flat_size(features: Callable, input_shape: Sequence[int], module: nn.Module | None = None) -> int:
    # Eval mode: the probe must not update BatchNorm statistics nor draw dropout masks
    # (which would consume torch's RNG and change every later initialisation).
    module = module if module is not None else features
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            return int(features(torch.zeros(1, *input_shape)).numel())
    finally:
        module.train(was_training)


def _check_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (channels, height, width), got {tuple(input_shape)}")
    c, h, w = (int(s) for s in input_shape)
    return c, h, w


def fc(input_shape, n_classes, hidden: Sequence[int] = (64, 64), dropout: float = 0.0) -> nn.Module:
    """Fully connected: FC(64,64), FC(512,512), FC(512,512,512) of the notes."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = int(h)
    layers += [nn.Linear(width, n_classes), nn.LogSoftmax(dim=1)]
    return nn.Sequential(*layers)


def cnn1(input_shape, n_classes, filters: int = 32, kernel_size: int = 3, dense: int = 100) -> nn.Module:
    """One conv layer: 32 filters 3x3 -> max-pool 2 -> dense 100."""
    c, _, _ = _check_shape(input_shape)
    feats = nn.Sequential(nn.Conv2d(c, filters, kernel_size), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
    n = _flat_size(feats, input_shape)
    return nn.Sequential(feats, nn.Linear(n, dense), nn.ReLU(), nn.Linear(dense, n_classes), nn.LogSoftmax(dim=1))


def _cnn2(input_shape, n_classes, filters=(32, 64), kernel_size=3, dense=128, batch_norm=False, dropout=(0.0, 0.0)):
    c, _, _ = _check_shape(input_shape)
    layers: list[nn.Module] = []
    for f in filters:
        layers.append(nn.Conv2d(c, int(f), kernel_size))
        if batch_norm:
            layers.append(nn.BatchNorm2d(int(f)))
        layers.append(nn.ReLU())
        c = int(f)
    layers.append(nn.MaxPool2d(2))
    if dropout[0]:
        layers.append(nn.Dropout(dropout[0]))
    layers.append(nn.Flatten())
    feats = nn.Sequential(*layers)
    n = _flat_size(feats, input_shape)
    head: list[nn.Module] = [nn.Linear(n, dense), nn.ReLU()]
    if dropout[1]:
        head.append(nn.Dropout(dropout[1]))
    head += [nn.Linear(dense, n_classes), nn.LogSoftmax(dim=1)]
    return nn.Sequential(feats, *head)


def cnn2(input_shape, n_classes, filters=(32, 64), kernel_size=3, dense=128) -> nn.Module:
    """Two conv layers (32, 64 filters 3x3) -> max-pool 2 -> dense 128."""
    return _cnn2(input_shape, n_classes, filters, kernel_size, dense)


def cnn2_dropout(input_shape, n_classes, filters=(32, 64), kernel_size=3, dense=128,
                 conv_dropout: float = 0.25, dense_dropout: float = 0.5) -> nn.Module:
    """cnn2 with dropout 0.25 after the conv block and 0.5 before the output layer."""
    return _cnn2(input_shape, n_classes, filters, kernel_size, dense, dropout=(conv_dropout, dense_dropout))


def cnn2_bn(input_shape, n_classes, filters=(32, 64), kernel_size=3, dense=128) -> nn.Module:
    """cnn2 with batch normalisation after each convolution (before the ReLU)."""
    return _cnn2(input_shape, n_classes, filters, kernel_size, dense, batch_norm=True)


def sdsc_mynet(input_shape, n_classes, numfilt: int = 8, kernel_size: int = 3, padding: int | None = None) -> nn.Module:
    """SDSC notes: Conv2d(1,numfilt,k) -> ReLU -> MaxPool2d(3,2) -> Linear(.,16) -> ReLU -> Linear(16,10).

    ``padding=None`` means 0 unless the conv output would be smaller than the 3x3 pool
    window (e.g. kernel 9 on 8x8 digits); then just enough padding to leave 3x3.
    """
    c, h, w = _check_shape(input_shape)
    if padding is None:
        padding = max(0, math.ceil((kernel_size + 2 - min(h, w)) / 2))
    feats = nn.Sequential(nn.Conv2d(c, numfilt, kernel_size, padding=padding), nn.ReLU(),
                          nn.MaxPool2d(3, 2), nn.Flatten())
    n = _flat_size(feats, input_shape)
    return nn.Sequential(feats, nn.Linear(n, 16), nn.ReLU(), nn.Linear(16, n_classes), nn.LogSoftmax(dim=1))


class AlcfNet(nn.Module):
    """ALCF notes' MNIST net (the PyTorch example): two 5x5 convs, 320 -> 50 -> 10 on 28x28.

    Default padding is 0 for inputs of 16 px and up and 2 ("same") below that, so on 8x8
    digits the maps go 8 -> 8 -> pool 4 -> 4 -> pool 2 and fc1 sees 20*2*2 = 80 features.
    """

    def __init__(self, input_shape, n_classes, padding: int | None = None, dropout: float = 0.5):
        super().__init__()
        c, h, w = _check_shape(input_shape)
        if padding is None:
            padding = 0 if min(h, w) >= 16 else 2
        self.conv1 = nn.Conv2d(c, 10, kernel_size=5, padding=padding)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5, padding=padding)
        self.conv2_drop = nn.Dropout2d()
        self.dropout = dropout
        self.fc1 = nn.Linear(_flat_size(self._features, input_shape, self), 50)
        self.fc2 = nn.Linear(50, n_classes)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(self._features(x)))
        x = F.dropout(x, self.dropout, training=self.training)
        return F.log_softmax(self.fc2(x), dim=1)


def alcf_net(input_shape, n_classes, padding: int | None = None, dropout: float = 0.5) -> nn.Module:
    return AlcfNet(input_shape, n_classes, padding=padding, dropout=dropout)


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "fc": fc,
    "cnn1": cnn1,
    "cnn2": cnn2,
    "cnn2_dropout": cnn2_dropout,
    "cnn2_bn": cnn2_bn,
    "sdsc_mynet": sdsc_mynet,
    "alcf_net": alcf_net,
}

# The ladder of the notes, as (label, arch, arch_params), for benchmarks and reports.
LADDER: list[tuple[str, str, dict]] = [
    ("FC(64,64)", "fc", {"hidden": [64, 64]}),
    ("FC(512,512)", "fc", {"hidden": [512, 512]}),
    ("FC(512,512,512)", "fc", {"hidden": [512, 512, 512]}),
    ("CNN1", "cnn1", {}),
    ("CNN2", "cnn2", {}),
    ("CNN2+dropout", "cnn2_dropout", {}),
    ("CNN2+BN", "cnn2_bn", {}),
    ("SDSC mynet", "sdsc_mynet", {}),
    ("ALCF net", "alcf_net", {}),
]


def is_user_arch(arch: str) -> bool:
    """``package.module:Class`` or ``path/to/file.py:Class``: the user's own ``torch.nn.Module``."""
    return ":" in arch


def user_arch_class(arch: str) -> type[nn.Module]:
    """The class named by ``package.module:Class`` or ``file.py:Class`` (ValueError saying what is wrong)."""
    where, _, name = arch.rpartition(":")
    if not where or not name:
        raise ValueError("expected `package.module:Class` or `path/to/file.py:Class`")
    if where.endswith(".py"):
        if not Path(where).is_file():
            raise ValueError(f"file {where} not found (relative paths are from the working directory)")
        try:
            module = module_from_file(where)
        except Exception as e:
            raise ValueError(f"cannot import {where}: {type(e).__name__}: {e}") from None
    else:
        try:
            module = importlib.import_module(where)
        except Exception as e:
            raise ValueError(f"cannot import {where}: {type(e).__name__}: {e}") from None
    obj: object = module
    for part in name.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ValueError(f"{where} defines no {name!r}")
    if not isinstance(obj, type):
        raise ValueError(f"{name} is a {type(obj).__name__}, not a torch.nn.Module subclass")
    if not issubclass(obj, nn.Module):
        raise ValueError(f"{name} is a class but not a torch.nn.Module subclass")
    return obj


def _as_log_probs(module: nn.Module, args, output: torch.Tensor) -> torch.Tensor:
    # Idempotent on log-probabilities, so a user's net may end in logits or in log_softmax.
    return F.log_softmax(output, dim=1)


def _build_user(arch: str, shape: tuple[int, int, int], n_classes: int, arch_params: dict) -> nn.Module:
    cls = user_arch_class(arch)
    kwargs = dict(arch_params)
    try:
        accepted = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        accepted = {}
    # The input shape and class count are given to constructors that ask for them by name.
    for key, value in (("input_shape", shape), ("n_classes", n_classes)):
        if key in accepted and key not in kwargs:
            kwargs[key] = value
    try:
        model = cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"bad arch_params for {arch!r}: {e}") from e
    except Exception as e:
        raise ValueError(f"{arch!r} could not be built: {type(e).__name__}: {e}") from e
    model.register_forward_hook(_as_log_probs)
    return model


def probe(model: nn.Module, input_shape: Sequence[int], n_classes: int) -> None:
    """One forward pass of two zero images (eval mode, no RNG, no BatchNorm update); ValueError
    unless the output is (2, n_classes)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *input_shape))
    except Exception as e:
        raise ValueError(f"cannot take input {tuple(input_shape)}: {type(e).__name__}: {e}") from e
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, n_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"must return (batch, {n_classes}) class scores, returned {got}")


def build_model(arch: str, input_shape: Sequence[int], n_classes: int, **arch_params) -> nn.Module:
    """A fresh network ``arch`` for inputs of shape (C, H, W); initialised from torch's global RNG.

    ``arch`` is a built-in name (``ARCHITECTURES``) or the user's own ``torch.nn.Module`` as
    ``package.module:Class`` / ``file.py:Class``, built with ``arch_params`` as keyword
    arguments (plus ``input_shape`` and ``n_classes`` when its constructor takes them). A user's
    net may return logits or log-probabilities: its output goes through ``log_softmax``.
    """
    shape = _check_shape(input_shape)
    if is_user_arch(arch):
        return _build_user(arch, shape, int(n_classes), arch_params)
    try:
        factory = ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(f"unknown arch {arch!r}; choose from {sorted(ARCHITECTURES)}") from None
    try:
        return factory(shape, int(n_classes), **arch_params)
    except TypeError as e:  # unknown arch_params key
        raise ValueError(f"bad arch_params for {arch!r}: {e}") from e
    except RuntimeError as e:  # input too small for the net's convolutions
        raise ValueError(f"{arch!r} cannot take input {shape}: {e}") from e


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
