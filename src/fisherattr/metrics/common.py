"""Helpers every metric family shares: maps, rankings, batched scoring, targets.

Conventions (docs/evaluation.md): "rank pixels" ranks the channel-summed map,
"rank features" keeps channels separate; ties are broken by the flat index
(earlier index first), which :func:`rank_desc` implements with a stable sort.
"""
from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch
import torch.nn as nn

from ..batching import check_batch_size, resolve_batch_size
from ..errors import InputError, UsageError
from ..methods.base import Target, model_device, resolve_target

SCORES = ("prob", "logit")


def as_batch(attributions: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Check that ``attributions`` is ``[B,C,H,W]`` (C = image channels or 1) matching ``images``."""
    a = torch.as_tensor(attributions)
    if a.dim() == 3:
        a = a.unsqueeze(1)
    if a.dim() != 4:
        raise InputError(f"attributions must be [B,C,H,W] or [B,H,W]; got shape {tuple(a.shape)}")
    if a.shape[0] != images.shape[0] or a.shape[-2:] != images.shape[-2:]:
        raise InputError(f"attributions {tuple(a.shape)} do not match images {tuple(images.shape)}")
    if a.shape[1] not in (1, images.shape[1]):
        raise InputError(f"attributions have {a.shape[1]} channels; expected 1 or {images.shape[1]}")
    return a.detach().float().cpu()


def pixel_map(attributions: torch.Tensor, reduce: str = "sum") -> torch.Tensor:
    """``[B,C,H,W]`` -> ``[B,H,W]``: channel sum, then ``reduce`` in {"sum" (raw), "abs", "positive"}."""
    m = attributions.float().sum(dim=1)
    if reduce == "abs":
        return m.abs()
    if reduce == "positive":
        return m.clamp(min=0)
    if reduce in ("sum", "raw"):
        return m
    raise UsageError(f"reduce must be 'sum', 'abs' or 'positive', got {reduce!r}")


def rank_desc(values: torch.Tensor) -> torch.Tensor:
    """Indices of ``values`` (flattened per row of ``[B,N]``) from largest to smallest, ties by index."""
    return torch.sort(-values, dim=-1, stable=True).indices


def targets_for(model: nn.Module, images: torch.Tensor, target: Target = None) -> torch.Tensor:
    """The long ``[B]`` target: None means the model's top-1 class on the clean image."""
    with torch.no_grad():
        logits = model(images.to(model_device(model)))
    return resolve_target(logits, target).cpu()


class Scorer:
    """Batched, counted, gradient-free calls of a classifier on [0,1]-space images.

    ``scores(x, target)`` returns the target's softmax probability (``kind="prob"``)
    or logit, ``batch_size`` images per forward pass (``None``: chosen from the
    image size and device by :func:`fisherattr.batching.forward_batch_size`);
    :attr:`calls` counts images passed through the model (one "model pass" = one image).

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
        >>> s = Scorer(net, batch_size=2)
        >>> s.scores(torch.rand(5, 3, 2, 2), torch.zeros(5, dtype=torch.long)).shape, s.calls
        (torch.Size([5]), 5)
    """

    def __init__(self, model: nn.Module, batch_size: Optional[int] = None, kind: str = "prob") -> None:
        check_batch_size(batch_size)
        if kind not in SCORES:
            raise UsageError(f"score must be one of {', '.join(SCORES)}, got {kind!r}")
        self.model, self.kind, self.calls = model, kind, 0
        self.batch_size = None if batch_size is None else int(batch_size)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        dev = model_device(self.model)
        bs = resolve_batch_size(self.batch_size, x, device=dev)
        outs = []
        with torch.no_grad():
            for i in range(0, x.shape[0], bs):
                outs.append(self.model(x[i:i + bs].to(dev)).float().cpu())
        self.calls += int(x.shape[0])
        return torch.cat(outs)

    def scores(self, x: torch.Tensor, target: Union[int, torch.Tensor]) -> torch.Tensor:
        """Score of ``target`` (int, or one class per image) for each image of ``x``."""
        lg = self.logits(x)
        t = torch.as_tensor(target, dtype=torch.long).reshape(-1)
        if t.numel() == 1:
            t = t.expand(lg.shape[0])
        out = lg.softmax(dim=1) if self.kind == "prob" else lg
        return out.gather(1, t.view(-1, 1)).squeeze(1)


def trapezoid(y: np.ndarray, x: Optional[np.ndarray] = None) -> float:
    """Trapezoid-rule area (numpy-version independent)."""
    y = np.asarray(y, dtype=np.float64)
    x = np.linspace(0.0, 1.0, len(y)) if x is None else np.asarray(x, dtype=np.float64)
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)
