"""Shared fixtures: tiny classifiers built in the tests, and the real model (session-scoped)."""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn as nn

from fisherattr.models import Classifier

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


class TinyCNN(nn.Module):
    """A small random CNN with 5 classes: enough structure for gradients and hooks."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(self.pool(x).flatten(1))


@pytest.fixture
def tiny_model() -> Classifier:
    torch.manual_seed(0)
    return Classifier(TinyCNN(), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                      classes=[f"c{i}" for i in range(5)], input_size=(16, 16), name="tiny").eval()


@pytest.fixture
def tiny_images() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(3, 3, 16, 16, generator=g)


class PatchModel(nn.Module):
    """Two classes decided by the mean brightness of the 4x4 patch at rows/cols 4..7 of a 16x16 image:
    only the patch matters (the known answer of the FDA/DiffIB toys)."""

    def __init__(self, size: int = 16) -> None:
        super().__init__()
        w = torch.zeros(3, size, size)
        w[:, 4:8, 4:8] = 1.0
        self.register_buffer("w", w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = ((x * self.w).sum((1, 2, 3)) / self.w.sum() - 0.7) * 10
        return torch.stack([v, -v], 1)


def patch_mask() -> torch.Tensor:
    """The decisive patch of :class:`PatchModel` as a ``[16,16]`` bool mask."""
    m = torch.zeros(16, 16, dtype=torch.bool)
    m[4:8, 4:8] = True
    return m


@pytest.fixture
def patch_model() -> Classifier:
    return Classifier(PatchModel(), classes=["bright", "dark"], input_size=(16, 16)).eval()


@pytest.fixture
def patch_images() -> torch.Tensor:
    """Two 16x16 images: a bright patch (0.9) on grey (0.5), with a little noise."""
    x = torch.full((2, 3, 16, 16), 0.5)
    x[:, :, 4:8, 4:8] = 0.9
    x = x + 0.05 * torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
    return x.clamp(0, 1)


@pytest.fixture
def one_thread():
    """Tiny toys: one thread avoids oversubscription on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def lite0() -> Classifier:
    from fisherattr import load_classifier

    return load_classifier("efficientnet_lite0")


@pytest.fixture(scope="session")
def chelsea() -> torch.Tensor:
    from fisherattr import load_image

    return load_image("chelsea")
