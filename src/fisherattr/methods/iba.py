"""IBA: Per-Sample Information Bottleneck Attribution (Schulz et al., ICLR 2020).

At a hidden layer with output ``r``, replace ``r`` by
``z = lam*r + (1-lam)*(std*eps + mean)`` with ``lam = smooth(sigmoid(alpha))``,
``eps ~ N(0,1)`` and the layer's per-feature ``mean``/``std`` estimated over a
data set (``std`` bounded below by ``min_std`` = 0.01, and ``z`` multiplied by
the active-neuron mask, both as the official IBA package does). Optimise ``alpha`` (one value per feature, per image) to minimise
``CE(f(z), y) + beta * mean(capacity)``, where ``capacity`` is the KL of the
bottleneck's distribution to the noise distribution (:func:`bottleneck_kl`),
masked to the active neurons. The map is the capacity in bits summed over
channels, resized (bilinear) to the input.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..errors import UsageError
from ..models import companion
from .base import AttributionMethod
from .bottleneck import (MIN_SAMPLES, MIN_STD, BottleneckEstimate, GaussianSmoothing, bottleneck_kl, capture_features,
                         default_layer, get_layer, load_or_estimate, replace_output)
from .registry import register


def check_positive(name: str, value: float, integer: bool = False, allow_zero: bool = False) -> None:
    """Raise :class:`UsageError` unless ``value`` is a (strictly, unless ``allow_zero``) positive number."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if integer:
        ok = ok and float(value).is_integer()
    if not ok or value < 0 or (value == 0 and not allow_zero):
        kind = "integer" if integer else "number"
        raise UsageError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} {kind}, got {value!r}")


def fit_feature_bottleneck(model: nn.Module, layer: nn.Module, x: torch.Tensor, target: torch.Tensor,
                           est: BottleneckEstimate, *, beta: float, steps: int, lr: float, copies: int,
                           init_alpha: float, smooth: Optional[nn.Module],
                           generators: List[torch.Generator], min_std: float = MIN_STD,
                           mask_output: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
    """Optimise one bottleneck per image of ``x``; return ``(lam, capacity_nats)``, each ``[B,C,h,w]``.

    As the official IBA: ``std`` is clamped to at least ``min_std`` and (with
    ``mask_output``) the bottleneck output ``z`` is multiplied by the
    active-neuron mask, so dead features pass zeros downstream.

    Images are independent: each has its own ``alpha`` (Adam is elementwise and
    the loss is a sum of per-image losses) and its own noise stream
    (``generators[i]``), so a batch gives the single-image results.
    """
    b = x.shape[0]
    with torch.no_grad():
        r = capture_features(model, layer, x)
    if tuple(r.shape[1:]) != est.feature_shape:
        raise UsageError(f"the estimate has feature shape {est.feature_shape} but layer output is "
                         f"{tuple(r.shape[1:])}; estimate at this image size")
    est = est.to(r.device)
    mean, std, active = est.mean, est.std.clamp_min(float(min_std)), est.active
    alpha = torch.full_like(r, float(init_alpha)).requires_grad_(True)
    opt = torch.optim.Adam([alpha], lr=lr)
    xb = x.repeat_interleave(copies, 0)
    tb = target.repeat_interleave(copies)
    state = {}

    def lam_of(a: torch.Tensor) -> torch.Tensor:
        lam = torch.sigmoid(a)
        return smooth(lam) if smooth is not None else lam

    def bottleneck(out: torch.Tensor) -> torch.Tensor:
        lam = state["lam"].repeat_interleave(copies, 0)
        z = lam * out + (1 - lam) * (std * state["eps"] + mean)
        return z * active if mask_output else z

    with replace_output(layer, bottleneck):
        for _ in range(int(steps)):
            lam = lam_of(alpha)
            state["lam"] = lam
            state["eps"] = torch.cat([torch.randn((copies,) + tuple(r.shape[1:]), generator=g, device=r.device)
                                      for g in generators])
            logits = model(xb)
            ce = F.cross_entropy(logits, tb, reduction="none").view(b, copies).mean(1)
            info = (bottleneck_kl(r, lam, mean, std) * active).flatten(1).mean(1)
            loss = (ce + beta * info).sum()
            (grad,) = torch.autograd.grad(loss, alpha)
            alpha.grad = grad
            opt.step()
            opt.zero_grad(set_to_none=True)
    with torch.no_grad():
        lam = lam_of(alpha)
        cap = bottleneck_kl(r, lam, mean, std) * active
    return lam.detach(), cap.detach()


def capacity_map(capacity: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Capacity (nats, ``[B,C,h,w]``) -> bits summed over channels, bilinear-resized to ``size``: ``[B,1,H,W]``."""
    bits = capacity.sum(1, keepdim=True) / math.log(2)
    if tuple(bits.shape[-2:]) == tuple(size):
        return bits
    return F.interpolate(bits, size=size, mode="bilinear", align_corners=False)


class _BottleneckBase(AttributionMethod):
    """Layer choice and estimate handling shared by IBA and InputIBA."""

    per_pixel = True
    #: EfficientNet block used when no layer is given (see :func:`default_layer`).
    lite_block: int = 4
    #: output stride of the generic default layer for other models (see :func:`default_layer`).
    default_stride: int = 8

    def __init__(self, model: nn.Module, *, layer: Optional[str], estimate: Optional[str], estimate_data: str,
                 estimate_samples: int, seed: int, internal_batch_size: int, progress: bool) -> None:
        super().__init__(model, seed=seed, internal_batch_size=internal_batch_size, progress=progress)
        self.layer = layer if layer is not None else default_layer(model, self.lite_block, self.default_stride)
        if not isinstance(self.layer, str):
            raise UsageError(f"layer must be a dotted module name, got {type(self.layer).__name__}")
        self._layer = get_layer(model, self.layer)
        self.estimate = None if estimate is None else str(estimate)
        if estimate_data is None:  # the classifier's own world may name it (Classifier.companions)
            estimate_data = companion(model, "estimate_data", "samples")
        self.estimate_data = str(estimate_data)
        check_positive("estimate_samples", estimate_samples, integer=True)
        self.estimate_samples = int(estimate_samples)
        self._estimates = {}
        if self.estimate is not None:
            self._estimates["file"] = load_or_estimate(model, self.layer, (0, 0), estimate=self.estimate)

    def _estimate_for(self, size: Tuple[int, int]) -> BottleneckEstimate:
        if "file" in self._estimates:
            return self._estimates["file"]
        if size not in self._estimates:
            self._estimates[size] = load_or_estimate(self.model, self.layer, size, data=self.estimate_data,
                                                     samples=self.estimate_samples, progress=True,
                                                     batch_size=self.internal_batch_size)
        return self._estimates[size]


@register("iba", "per-sample-iba")
class IBA(_BottleneckBase):
    """IBA (Schulz 2020): per-sample information bottleneck at a hidden layer; capacity in bits per pixel.

    Args:
        layer: dotted name of the bottleneck layer (default: :func:`default_layer`, e.g.
            ``net._blocks.4`` for EfficientNet-Lite0).
        estimate: a file saved by ``fisherattr estimate-bottleneck``; when None the
            estimate is computed on first use from ``estimate_data`` and cached.
        beta: weight of the information term (paper: 10).
        steps, lr: Adam steps and learning rate (paper: 10, 1).
        noise_copies: noisy copies of the image per step (paper: 10).
        init_alpha: initial ``alpha`` (paper: 5, i.e. ``lam`` ~ 0.993).
        sigma: Gaussian smoothing of ``lam`` in feature pixels (paper: 1; 0 = none).
        min_std: lower bound on the estimated std (official IBA: 0.01; before issue 17: 1e-5).
        mask_output: multiply the bottleneck output by the active-neuron mask (official: yes).
        estimate_data / estimate_samples: "samples", "synthetic" or a folder, and the sample count
            (default: the classifier's ``estimate_data`` companion, else "samples").
        internal_batch_size: forward-pass batch (images x noise copies).

    Example:
        >>> iba = IBA(model, estimate="lite0-blocks4.safetensors")   # doctest: +SKIP
        >>> maps = iba.attribute(x)                                   # [B,1,H,W], bits  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, *, layer: Optional[str] = None, estimate: Optional[str] = None,
                 beta: float = 10.0, steps: int = 10, lr: float = 1.0, noise_copies: int = 10,
                 init_alpha: float = 5.0, sigma: float = 1.0, min_std: float = MIN_STD, mask_output: bool = True,
                 estimate_data: Optional[str] = None, estimate_samples: int = MIN_SAMPLES, seed: int = 0,
                 internal_batch_size: int = 20, progress: bool = False) -> None:
        check_positive("beta", beta, allow_zero=True)
        check_positive("min_std", min_std)
        check_positive("steps", steps, integer=True)
        check_positive("lr", lr)
        check_positive("noise_copies", noise_copies, integer=True)
        check_positive("sigma", sigma, allow_zero=True)
        if not isinstance(init_alpha, (int, float)) or not math.isfinite(init_alpha):
            raise UsageError(f"init_alpha must be a finite number, got {init_alpha!r}")
        super().__init__(model, layer=layer, estimate=estimate, estimate_data=estimate_data,
                         estimate_samples=estimate_samples, seed=seed, internal_batch_size=internal_batch_size,
                         progress=progress)
        self.beta, self.steps, self.lr = float(beta), int(steps), float(lr)
        self.noise_copies, self.init_alpha, self.sigma = int(noise_copies), float(init_alpha), float(sigma)
        self.min_std, self.mask_output = float(min_std), bool(mask_output)

    def _attribute(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        size = (images.shape[-2], images.shape[-1])
        est = self._estimate_for(size)
        smooth = GaussianSmoothing(self.sigma).to(images.device) if self.sigma > 0 else None
        per_chunk = max(1, self.gradient_batch(images) // self.noise_copies)
        out = []
        for i in tqdm(range(0, images.shape[0], per_chunk), desc="iba", disable=not self.progress):
            x, t = images[i:i + per_chunk], target[i:i + per_chunk]
            _, cap = fit_feature_bottleneck(self.model, self._layer, x, t, est, beta=self.beta, steps=self.steps,
                                            lr=self.lr, copies=self.noise_copies, init_alpha=self.init_alpha,
                                            smooth=smooth, generators=self.generators(x.shape[0]),
                                            min_std=self.min_std, mask_output=self.mask_output)
            out.append(capacity_map(cap, size))
        return torch.cat(out)
