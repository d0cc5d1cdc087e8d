"""A small VGG-style CNN for the synthetic world (about 0.3 M parameters at the default width).

Four stages of 3x3 convolutions with batch norm and ReLU, 2x2 max pooling between
stages, global average pooling and one linear layer. Every activation and pooling
call site has its own module (no module is used twice in ``forward``), which
Captum's DeepLift and GuidedBackprop hooks need.

Example:
    >>> net = build_small_cnn(classes=8)
    >>> net(torch.zeros(2, 3, 64, 64)).shape
    torch.Size([2, 8])
    >>> 200_000 < sum(p.numel() for p in net.parameters()) < 500_000
    True
"""
from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn as nn

from ..errors import UsageError


def _conv(cin: int, cout: int) -> List[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class SmallCNN(nn.Module):
    """Stages of (conv-BN-ReLU) blocks; ``widths[k]`` channels in stage ``k``; any input size >= 8.

    The network takes *normalised* images; wrap it in
    :class:`fisherattr.models.Classifier` for [0,1] inputs.
    """

    def __init__(self, classes: int = 8, widths: Sequence[int] = (16, 32, 64, 128),
                 blocks: Sequence[int] = (1, 2, 2, 2), in_channels: int = 3) -> None:
        super().__init__()
        if classes < 2:
            raise UsageError(f"classes must be >= 2, got {classes}")
        if len(widths) != len(blocks) or not widths:
            raise UsageError("widths and blocks must be non-empty and of the same length")
        layers: List[nn.Module] = []
        cin = in_channels
        for k, (w, b) in enumerate(zip(widths, blocks)):
            for _ in range(b):
                layers += _conv(cin, w)
                cin = w
            if k < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.features(x))))


def build_small_cnn(classes: int = 8, widths: Sequence[int] = (16, 32, 64, 128),
                    blocks: Sequence[int] = (1, 2, 2, 2)) -> SmallCNN:
    """Builder used by :func:`fisherattr.models.save_classifier` / ``load_classifier`` (bare network)."""
    return SmallCNN(classes=int(classes), widths=tuple(int(w) for w in widths), blocks=tuple(int(b) for b in blocks))
