"""Sensitivity-N (Ancona 2018) and mu-Fidelity (Bhatt 2020).

For a subset size N, draw ``n_subsets`` random subsets S of features (of pixels,
all channels, for a per-pixel map), set them to the baseline, and correlate
(Pearson, over the subsets) ``sum_{i in S} A_i`` with the score drop
``f(x) - f(x with S removed)``. Sensitivity-N is that correlation as a function
of N (log-spaced sizes); mu-Fidelity is the correlation at one subset size,
``fraction`` of the features (20%, Bhatt 2020).

The score is the target's logit by default (the attribution methods explain
logits; an exactly additive logit gives correlation 1 with its exact
attribution); ``score="prob"`` uses the softmax probability. Baseline
``"mean"`` = zero in the model's normalised space (the data set mean colour),
``"black"`` = 0 in pixel space.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..errors import UsageError
from ..methods.base import Target
from ..models.classifier import normalized_zero
from .common import Scorer, as_batch, targets_for

BASELINES = ("mean", "black")


@dataclass
class SensitivityResult:
    """``ns`` (subset sizes, ranking units), ``correlations`` [B, len(ns)] (NaN where undefined),
    ``units`` per image, ``model_calls``."""

    ns: list
    correlations: torch.Tensor
    units: int
    model_calls: int


def default_sizes(units: int, points: int = 10) -> list:
    """Log-spaced subset sizes from 1 to 80% of the units (distinct integers)."""
    hi = max(1, int(0.8 * units))
    return sorted({int(round(v)) for v in np.logspace(0, np.log10(hi), points)})


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    den = float(a.norm() * b.norm())
    return float((a * b).sum()) / den if den > 0 else float("nan")


def _baseline(model: nn.Module, images: torch.Tensor, baseline: str) -> torch.Tensor:
    if baseline not in BASELINES:
        raise UsageError(f"baseline must be one of {', '.join(BASELINES)}, got {baseline!r}")
    return normalized_zero(model, images).cpu() if baseline == "mean" else torch.zeros_like(images)


def sensitivity_n(model: nn.Module, images: torch.Tensor, attributions: torch.Tensor, target: Target = None,
                  ns: Optional[Sequence[int]] = None, n_subsets: int = 100, baseline: str = "mean",
                  score: str = "logit", batch_size: Optional[int] = None, seed: int = 0) -> SensitivityResult:
    """Sensitivity-N curves for each image.

    Example:
        >>> r = sensitivity_n(model, images, maps, ns=[10, 100])  # doctest: +SKIP
        >>> r.correlations.shape                                   # [B, 2]  # doctest: +SKIP
    """
    if int(n_subsets) < 3:
        raise UsageError(f"n_subsets must be >= 3, got {n_subsets}")
    images = images.detach().float().cpu()
    attr = as_batch(attributions, images)
    per_pixel = attr.shape[1] == 1 and images.shape[1] != 1
    units = attr[0].numel()
    sizes = default_sizes(units) if ns is None else [int(n) for n in ns]
    if not sizes or min(sizes) < 1 or max(sizes) > units:
        raise UsageError(f"subset sizes must be in 1..{units}, got {sizes}")
    base = _baseline(model, images, baseline)
    t = targets_for(model, images, target)
    scorer = Scorer(model, batch_size, score)
    b = images.shape[0]
    corr = torch.full((b, len(sizes)), float("nan"), dtype=torch.float64)
    c, h, w = images.shape[1:]
    for i in range(b):
        g = torch.Generator().manual_seed(int(seed) + i)
        f0 = float(scorer.scores(images[i:i + 1], int(t[i]))[0])
        flat_a = attr[i].reshape(-1)
        for k, n in enumerate(sizes):
            masks = torch.zeros(n_subsets, units, dtype=torch.bool)
            for s in range(n_subsets):
                masks[s, torch.randperm(units, generator=g)[:n]] = True
            sums = (masks.double() * flat_a.double()).sum(1)
            m = masks.view(n_subsets, 1, h, w) if per_pixel else masks.view(n_subsets, c, h, w)
            x = torch.where(m, base[i].unsqueeze(0), images[i].unsqueeze(0))
            drops = f0 - scorer.scores(x, int(t[i])).double()
            corr[i, k] = _pearson(sums, drops)
    return SensitivityResult(ns=sizes, correlations=corr, units=units, model_calls=scorer.calls)


def mu_fidelity(model: nn.Module, images: torch.Tensor, attributions: torch.Tensor, target: Target = None,
                fraction: float = 0.2, n_subsets: int = 128, baseline: str = "mean", score: str = "logit",
                batch_size: Optional[int] = None, seed: int = 0) -> torch.Tensor:
    """mu-Fidelity per image: the Pearson correlation at subset size ``fraction`` of the features.

    Example:
        >>> mu_fidelity(model, images, maps)   # [B] in [-1, 1]  # doctest: +SKIP
    """
    if not 0 < fraction < 1:
        raise UsageError(f"fraction must be in (0, 1), got {fraction}")
    images = images.detach().float().cpu()
    units = as_batch(attributions, images)[0].numel()
    n = max(1, int(round(fraction * units)))
    r = sensitivity_n(model, images, attributions, target, ns=[n], n_subsets=n_subsets, baseline=baseline,
                      score=score, batch_size=batch_size, seed=seed)
    return r.correlations[:, 0]
