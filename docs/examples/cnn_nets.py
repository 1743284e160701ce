"""Two networks of the lecture notes, defined by the user rather than built into hpcml.

Train either with the ``cnn`` kind by naming the class in the job spec:

    model:
      kind: cnn
      arch: docs/examples/cnn_nets.py:PscBnDropout     # or  mypkg.nets:PscBnDropout
      arch_params: {dense: 128, dense_dropout: 0.5}     # the constructor's keyword arguments

hpcml passes ``input_shape`` (C, H, W) and ``n_classes`` to constructors that take them, and
``arch_params`` as keyword arguments. ``forward`` may return logits or log-probabilities.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PscBnDropout(nn.Module):
    """PSC "Deep learning in an afternoon": the two-conv MNIST net with batch normalisation
    after each block and dropout before the output (Keras layers, written in PyTorch)."""

    def __init__(self, input_shape=(1, 28, 28), n_classes=10, filters=(32, 64), dense=128,
                 conv_dropout=0.25, dense_dropout=0.5):
        super().__init__()
        c = input_shape[0]
        self.features = nn.Sequential(
            nn.Conv2d(c, filters[0], 3), nn.ReLU(), nn.BatchNorm2d(filters[0]),
            nn.Conv2d(filters[0], filters[1], 3), nn.ReLU(), nn.MaxPool2d(2), nn.BatchNorm2d(filters[1]),
            nn.Dropout(conv_dropout), nn.Flatten())
        self.features.eval()  # measure the flattened size without touching BatchNorm statistics
        with torch.no_grad():
            flat = self.features(torch.zeros(1, *input_shape)).shape[1]
        self.features.train()
        self.head = nn.Sequential(nn.Linear(flat, dense), nn.ReLU(), nn.BatchNorm1d(dense),
                                  nn.Dropout(dense_dropout), nn.Linear(dense, n_classes))

    def forward(self, x):
        return self.head(self.features(x))  # logits: hpcml applies log_softmax


class MyNet(nn.Module):
    """SDSC CIML "NNs and CNNs with PyTorch": Conv2d(1, numfilt, k) -> ReLU -> MaxPool2d(3, 2)
    -> Linear(., 16) -> ReLU -> Linear(16, 10) -> log_softmax, as in the notes."""

    def __init__(self, numfilt=8, kernel_size=3, input_shape=(1, 28, 28)):
        super().__init__()
        size = input_shape[1] - kernel_size + 1  # the convolution (no padding)
        reduced_size = (size - 3) // 2 + 1  # the 3x3 max-pool with stride 2
        self.conv1 = nn.Conv2d(in_channels=input_shape[0], out_channels=numfilt, kernel_size=kernel_size)
        self.linear1 = nn.Linear(numfilt * reduced_size * reduced_size, 16)
        self.linear2 = nn.Linear(16, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 3, 2)
        x = F.relu(self.linear1(torch.flatten(x, 1)))
        return F.log_softmax(self.linear2(x), dim=1)
