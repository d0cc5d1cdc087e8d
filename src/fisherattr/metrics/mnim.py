"""MNIM: minimum necessary information (DiffIB paper; docs/evaluation.md).

Rank the features (pixel-channel values; a per-pixel map ranks pixels with all
their channels), start from an image filled with noise, put the original
values back in rank order, and find the smallest count ``N`` at which the
target's softmax probability reaches ``threshold``. ``MNIM = N / d``; 1.0 if
the threshold is never reached (not even by the full image).

Search (documented, exact under monotonicity): the probability is evaluated
on a coarse grid of ``grid + 1`` evenly spaced counts ``0, d/grid, ..., d``
(one batched pass); in the first grid interval whose right end reaches the
threshold, bisection finds the smallest count (to ``resolution`` units)
assuming the curve is monotone inside that interval. Model passes per image:
``grid + 1 + ceil(log2(interval / resolution))`` at most.

Noise: ``"gaussian"`` draws N(0, noise_std^2) in the model's *normalised* space
(so it has the data set's mean and spread in pixel space); ``"uniform"`` draws
U[0,1] in pixel space. One seeded stream per image (batch = single images).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn

from ..errors import UsageError
from ..methods.base import Target
from .common import Scorer, as_batch, rank_desc, targets_for

NOISES = ("gaussian", "uniform")


@dataclass
class MNIMResult:
    """Per-image MNIM (``values``, fraction in [0,1]), the counts ``n`` in ranking units
    (features, or pixels for per-pixel maps), ``units`` per image, whether the threshold
    was ``reached``, and ``model_calls`` (images passed through the model)."""

    values: torch.Tensor
    n: torch.Tensor
    units: int
    reached: torch.Tensor
    model_calls: int


def noise_image(model: nn.Module, image: torch.Tensor, noise: str, noise_std: float, seed: int) -> torch.Tensor:
    """The noise start for one ``[C,H,W]`` image (pixel space, may leave [0,1] for Gaussian noise)."""
    g = torch.Generator().manual_seed(int(seed))
    if noise == "uniform":
        return torch.rand(image.shape, generator=g)
    z = torch.randn(image.shape, generator=g) * noise_std
    mean = getattr(model, "mean", None)
    std = getattr(model, "std", None)
    if isinstance(mean, torch.Tensor) and isinstance(std, torch.Tensor):
        return z * std.detach().cpu().view(-1, 1, 1) + mean.detach().cpu().view(-1, 1, 1)
    return z


def _composite(x: torch.Tensor, noise: torch.Tensor, pos: torch.Tensor, counts: torch.Tensor,
               per_pixel: bool) -> torch.Tensor:
    """Images with the ``k`` top-ranked units restored, one per ``k`` in ``counts``."""
    keep = pos.view(1, -1) < counts.view(-1, 1)  # [K, units]
    c, h, w = x.shape
    keep = keep.view(-1, 1, h, w) if per_pixel else keep.view(-1, c, h, w)
    return torch.where(keep, x.unsqueeze(0), noise.unsqueeze(0))


def mnim(model: nn.Module, images: torch.Tensor, attributions: torch.Tensor, target: Target = None,
         threshold: float = 0.9, noise: str = "gaussian", noise_std: float = 1.0, grid: int = 32,
         resolution: int = 1, batch_size: Optional[int] = None, seed: int = 0) -> MNIMResult:
    """MNIM for each image.

    Example:
        >>> r = mnim(model, images, maps)           # doctest: +SKIP
        >>> r.values                                # fraction of features needed, per image  # doctest: +SKIP
    """
    if not 0 < threshold <= 1:
        raise UsageError(f"threshold must be in (0, 1], got {threshold}")
    if noise not in NOISES:
        raise UsageError(f"noise must be one of {', '.join(NOISES)}, got {noise!r}")
    if int(grid) < 1 or int(resolution) < 1:
        raise UsageError("grid and resolution must be >= 1")
    images = images.detach().float().cpu()
    attr = as_batch(attributions, images)
    per_pixel = attr.shape[1] == 1 and images.shape[1] != 1
    t = targets_for(model, images, target)
    scorer = Scorer(model, batch_size, "prob")
    b = images.shape[0]
    units = attr[0].numel()
    ns, reached = torch.full((b,), units, dtype=torch.long), torch.zeros(b, dtype=torch.bool)
    grid_counts = torch.tensor(sorted({round(j * units / grid) for j in range(grid + 1)}), dtype=torch.long)
    for i in range(b):
        order = rank_desc(attr[i].reshape(-1))
        pos = torch.empty_like(order)
        pos[order] = torch.arange(units)
        x, z = images[i], noise_image(model, images[i], noise, noise_std, seed + i)
        p = scorer.scores(_composite(x, z, pos, grid_counts, per_pixel), int(t[i]))
        ok = (p >= threshold).nonzero()
        if ok.numel() == 0:
            continue
        j = int(ok[0])
        reached[i] = True
        if j == 0:
            ns[i] = int(grid_counts[0])
            continue
        lo, hi = int(grid_counts[j - 1]), int(grid_counts[j])
        while hi - lo > resolution:
            mid = (lo + hi) // 2
            pm = scorer.scores(_composite(x, z, pos, torch.tensor([mid]), per_pixel), int(t[i]))
            if float(pm[0]) >= threshold:
                hi = mid
            else:
                lo = mid
        ns[i] = hi
    values = torch.where(reached, ns.double() / units, torch.ones(b, dtype=torch.float64))
    return MNIMResult(values=values, n=ns, units=units, reached=reached, model_calls=scorer.calls)


def max_model_calls(units: int, grid: int = 32, resolution: int = 1) -> int:
    """Upper bound on model passes per image for :func:`mnim` (grid pass + bisection)."""
    interval = math.ceil(units / grid)
    return grid + 1 + max(0, math.ceil(math.log2(max(1, interval / resolution))))
