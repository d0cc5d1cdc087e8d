"""Cascading model-parameter randomisation (Adebayo 2018; docs/evaluation.md).

Layers are found generically: every module that owns parameters directly
(``parameters(recurse=False)``), ordered **output -> input** by the order in
which a forward pass calls them (reversed). On a deep copy of the model,
layers are re-initialised one more at a time with the layer's own
``reset_parameters()`` (modules without one get N(0, 0.02^2) weights and zero
biases) under a fixed seed (``seed + layer index``, inside ``torch.random.fork_rng``
so the caller's global RNG is untouched). After each step (or after each of
``steps`` evenly spaced groups) the attribution is recomputed and compared with
the original map: SSIM (scikit-image, ``data_range=1``) of the absolute,
channel-summed, min-max normalised maps, and Spearman's rank correlation of the
same maps. Lower is better (the map should depend on the weights).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity

from ..errors import UsageError
from ..methods.base import Target
from .common import as_batch, targets_for


def normalised_map(attribution: torch.Tensor) -> np.ndarray:
    """``[C,H,W]`` or ``[H,W]`` -> |channel sum|, min-max normalised to [0,1] (all zeros if constant)."""
    a = attribution.detach().float().cpu()
    m = (a.sum(0) if a.dim() == 3 else a).abs().double().numpy()
    lo, hi = m.min(), m.max()
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


def map_ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """SSIM of two attributions after :func:`normalised_map` (1.0 for identical maps)."""
    x, y = normalised_map(a), normalised_map(b)
    win = min(7, x.shape[0], x.shape[1])
    win = win if win % 2 == 1 else win - 1
    return float(structural_similarity(x, y, data_range=1.0, win_size=win))


def map_spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of the two normalised maps (NaN if one is constant)."""
    x, y = normalised_map(a).ravel(), normalised_map(b).ravel()
    if x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def parameter_layers(model: nn.Module, example: torch.Tensor) -> List[Tuple[str, nn.Module]]:
    """Modules owning parameters, ordered output -> input by their call order on ``example``."""
    owners = {id(m): (n, m) for n, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))}
    order: List[int] = []
    hooks = [m.register_forward_hook(lambda mod, i, o: order.append(id(mod))) for _, m in owners.values()]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    seen, out = set(), []
    for k in order:  # first call decides the position
        if k not in seen:
            seen.add(k)
            out.append(owners[k])
    return list(reversed(out))


def reinitialise(module: nn.Module, seed: int) -> None:
    """Re-initialise ``module``'s own parameters with its default init under ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        with torch.no_grad():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
            else:
                for name, p in module.named_parameters(recurse=False):
                    if "bias" in name:
                        p.zero_()
                    else:
                        p.normal_(0.0, 0.02)


@dataclass
class RandomisationResult:
    """``layers`` (name of the last layer randomised at each step, output -> input),
    ``ssim`` and ``spearman`` [B, steps], ``logit_change`` [steps] (mean |change| of the
    target logit, proof that the randomisation bites)."""

    layers: List[str]
    ssim: torch.Tensor
    spearman: torch.Tensor
    logit_change: List[float] = field(default_factory=list)


def cascading_randomisation(make_method: Callable[[nn.Module], object], model: nn.Module, images: torch.Tensor,
                            attributions: Optional[torch.Tensor] = None, target: Target = None,
                            steps: Optional[int] = None, seed: int = 0) -> RandomisationResult:
    """Cascading randomisation of ``model`` for the method built by ``make_method(model)``.

    ``steps``: None = one step per layer; else that many evenly spaced cut points
    (the last one randomises every layer).

    Example:
        >>> from fisherattr import get_method
        >>> r = cascading_randomisation(lambda m: get_method("saliency", m), model, images)  # doctest: +SKIP
        >>> r.ssim.mean(0)   # per layer, output -> input  # doctest: +SKIP
    """
    images = images.detach().float().cpu()
    t = targets_for(model, images, target)
    if attributions is None:
        attributions = make_method(model).attribute(images, t)
    attr = as_batch(attributions, images)
    work = copy.deepcopy(model).eval()
    dev = next((p.device for p in work.parameters()), torch.device("cpu"))
    layers = parameter_layers(work, images[:1].to(dev))
    if not layers:
        raise UsageError("the model has no parameterised layers to randomise")
    n = len(layers)
    if steps is None or int(steps) >= n:
        cuts = list(range(1, n + 1))
    else:
        if int(steps) < 1:
            raise UsageError(f"steps must be >= 1, got {steps}")
        cuts = sorted({max(1, round(n * (k + 1) / int(steps))) for k in range(int(steps))})
    with torch.no_grad():
        ref_logits = work(images.to(dev)).float().cpu().gather(1, t.view(-1, 1)).squeeze(1)
    ssim = torch.zeros(images.shape[0], len(cuts), dtype=torch.float64)
    spear = torch.zeros_like(ssim)
    names, change, done = [], [], 0
    for k, cut in enumerate(cuts):
        for j in range(done, cut):
            reinitialise(layers[j][1], seed + j)
        done = cut
        names.append(layers[cut - 1][0] or type(layers[cut - 1][1]).__name__)
        with torch.no_grad():
            lg = work(images.to(dev)).float().cpu().gather(1, t.view(-1, 1)).squeeze(1)
        change.append(float((lg - ref_logits).abs().mean()))
        rand = as_batch(make_method(work).attribute(images, t), images)
        for i in range(images.shape[0]):
            ssim[i, k] = map_ssim(attr[i], rand[i])
            spear[i, k] = map_spearman(attr[i], rand[i])
    return RandomisationResult(layers=names, ssim=ssim, spearman=spear, logit_change=change)


__all__ = ["RandomisationResult", "cascading_randomisation", "map_ssim", "map_spearman", "normalised_map",
           "parameter_layers", "reinitialise"]
