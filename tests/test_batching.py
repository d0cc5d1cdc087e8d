"""Automatic forward batch sizes: the pixel budget on CPU, the cap elsewhere, and no change in results."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from fisherattr.batching import PIXEL_BUDGET, forward_batch_size, resolve_batch_size
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
