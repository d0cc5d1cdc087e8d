"""Automatic forward batch sizes: the pixel budget on CPU, the cap elsewhere, and no change in results."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import fisherattr
from fisherattr.batching import GRADIENT_PIXEL_BUDGET, PIXEL_BUDGET, forward_batch_size, gradient_batch_size, resolve_batch_size

from fisherattr.errors import UsageError
from fisherattr.metrics.common import Scorer


def test_cpu_batches_fit_the_pixel_budget_and_other_devices_get_the_cap() -> None:
    for side, want in ((224, 4), (112, 16), (64, 32), (32, 64), (16, 64), (1000, 1)):
        n = forward_batch_size(torch.zeros(1, 3, side, side))
        assert n == want, side
        assert n == 1 or n * side * side <= PIXEL_BUDGET
    assert forward_batch_size(torch.zeros(1, 3, 16, 16), cap=8) == 8
    assert forward_batch_size(torch.zeros(1, 3, 224, 224), device="cuda") == 64  # only the device type is read
    assert resolve_batch_size(7, torch.zeros(1, 3, 224, 224)) == 7


def test_automatic_scorer_batches_give_the_same_scores_and_count_every_image() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    x = torch.rand(9, 3, 150, 150)  # automatic batch: 8 per call
    auto, one = Scorer(net), Scorer(net, batch_size=1)
    torch.testing.assert_close(auto.scores(x, 2), one.scores(x, 2))
    assert auto.calls == one.calls == 9
    with pytest.raises(UsageError, match="batch_size"):
        Scorer(net, batch_size=0)


def test_gradient_batches_fit_their_budget_on_cpu_and_get_the_cap_elsewhere() -> None:
    for side, want in ((224, 8), (150, 16), (160, 8), (64, 16), (500, 1), (300, 4), (320, 2)):
        n = gradient_batch_size(torch.zeros(1, 3, side, side))
        assert n == want, side
        assert n == 1 or n * side * side <= GRADIENT_PIXEL_BUDGET
    assert gradient_batch_size(torch.zeros(1, 3, 224, 224), device="cuda") == 16


class _CountingNet(nn.Module):
    """Records the batch of every forward call."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.batches: list = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        return self.head(self.conv(x))


@pytest.mark.parametrize("name,options", [("ig", dict(steps=20)), ("integrated-gradients", dict(n_steps=20)),
                                          ("idgi-ig", dict(steps=20)), ("smoothgrad", dict(n_samples=20))])
def test_gradient_methods_default_to_the_automatic_batch_and_honour_a_given_one(name: str, options: dict) -> None:
    torch.manual_seed(0)
    x = torch.rand(1, 3, 224, 224)
    net = _CountingNet()
    auto = fisherattr.get_method(name, net, **options)
    assert auto.internal_batch_size is None and auto.gradient_batch(x) == 8
    a = auto.attribute(x, target=1)
    assert max(net.batches) == 8, net.batches  # the single no-grad target check is batch 1
    net.batches.clear()
    b = fisherattr.get_method(name, net, internal_batch_size=16, **options).attribute(x, target=1)
    assert max(net.batches) == 16, net.batches
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
