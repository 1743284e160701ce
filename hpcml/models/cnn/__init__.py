"""CNN training: the lecture notes' nets (``nets``), the training loop with checkpoints and
data parallelism (``train``), the ``cnn`` model kind (``kind``) and its plots (``plots``).
Importing this package does not import torch."""
