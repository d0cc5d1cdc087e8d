"""Completeness gap of path methods (docs/evaluation.md).

``gap = |sum A - (f(x) - f(baseline))| / |f(x) - f(baseline)|`` with ``f`` the
target's logit (what IG-type methods explain; ``score="prob"`` for methods that
explain probabilities). 0 means exactly complete. When ``f(x) == f(baseline)``
the relative gap is undefined and NaN is returned for that image.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from ..methods.base import Target
from .common import Scorer, as_batch, targets_for


def completeness_gap(model: nn.Module, images: torch.Tensor, attributions: torch.Tensor,
                     baselines: Optional[torch.Tensor] = None, target: Target = None,
                     score: str = "logit", batch_size: Optional[int] = None) -> torch.Tensor:
    """Relative completeness gap per image (``baselines`` default: black, like IG's default).

    Example:
        >>> completeness_gap(model, images, ig_maps)   # near 0 for converged IG  # doctest: +SKIP
    """
    images = images.detach().float().cpu()
    attr = as_batch(attributions, images).double()
    base = torch.zeros_like(images) if baselines is None else torch.as_tensor(baselines).float().cpu()
    base = base.expand_as(images)
    t = targets_for(model, images, target)
    scorer = Scorer(model, batch_size, score)
    delta = (scorer.scores(images, t) - scorer.scores(base, t)).double()
    total = attr.flatten(1).sum(1)
    gap = (total - delta).abs() / delta.abs()
    return torch.where(delta.abs() > 0, gap, torch.full_like(gap, float("nan")))
