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


@pytest.fixture(scope="session")
def lite0() -> Classifier:
    from fisherattr import load_classifier

    return load_classifier("efficientnet_lite0")


@pytest.fixture(scope="session")
def chelsea() -> torch.Tensor:
    from fisherattr import load_image

    return load_image("chelsea")
