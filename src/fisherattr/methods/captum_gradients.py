"""Gradient baselines through Captum: Saliency, Input x Gradient, Integrated Gradients,
SmoothGrad, Guided Backprop and DeepLIFT.

Each class is a thin adapter: options are validated here, the maths is
Captum's. Images are processed in chunks of ``internal_batch_size`` so memory
stays bounded; random parts (SmoothGrad's noise) are drawn per image under the
method's ``seed``, so a batch gives the same maps as its images one by one.
"""
from __future__ import annotations

import warnings
from abc import abstractmethod
from typing import Iterable, List, Optional, Tuple

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from ..errors import UsageError
from .base import AttributionMethod
from .captum_activations import GuidedReLU6, PatchedCopy, RescaleReLU6, deeplift_unsupported
from .captum_support import (baseline_image, check_baseline, image_chunks, positive_float, positive_int,
                             quiet_captum, seeded_global_rng)
from .registry import register

#: Integration rules Captum's IntegratedGradients accepts.
IG_RULES = ("gausslegendre", "riemann_right", "riemann_left", "riemann_middle", "riemann_trapezoid")


class ChunkedCaptumMethod(AttributionMethod):
    """Base of the Captum adapters: runs :meth:`_chunk_on` over slices of the batch, quietly.

    Subclasses implement ``_chunk_on(net, images, target)`` and may override
    ``_chunk_size`` (images per Captum call; default ``internal_batch_size``)
    and ``_prepare`` (the module Captum runs on).

    Example:
        >>> class Grad(ChunkedCaptumMethod):
        ...     def _chunk_on(self, net, images, target):
        ...         from captum.attr import Saliency
        ...         return Saliency(net).attribute(images, target=target, abs=False)
    """

    def _chunk_size(self, images: torch.Tensor) -> int:
        return self.gradient_batch(images)

    def _prepare(self) -> nn.Module:
        """The module Captum runs on (a patched copy for hook-based methods)."""
        return self.model

    def _attribute(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        net = self._prepare()
        chunks: List[Tuple[torch.Tensor, torch.Tensor]] = list(image_chunks(images, target, self._chunk_size(images)))
        show = self.progress and len(chunks) > 1
        outs = []
        with quiet_captum():
            it: Iterable = tqdm(chunks, desc=self.method_name, disable=not show)
            for x, t in it:
                outs.append(self._chunk_on(net, x, t).detach())
        return torch.cat(outs).float()

    @abstractmethod
    def _chunk_on(self, net: nn.Module, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Captum's attribution for one slice, computed on ``net`` (see :meth:`_prepare`)."""


@register("saliency", "gradient", "vanilla-gradient")
class Saliency(ChunkedCaptumMethod):
    """Gradient of the target logit w.r.t. the [0,1] image (Simonyan et al. 2014), via Captum.

    Args:
        abs: return ``|gradient|`` (Captum's default and the paper's map); False keeps the sign.

    Example:
        >>> import fisherattr
        >>> model = fisherattr.load_classifier()               # doctest: +SKIP
        >>> maps = Saliency(model).attribute(images, target=285)  # [B,3,H,W]  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, *, abs: bool = True, seed: int = 0, internal_batch_size: Optional[int] = None,
                 progress: bool = False) -> None:
        super().__init__(model, seed=seed, internal_batch_size=internal_batch_size, progress=progress)
        self.abs = bool(abs)

    def _chunk_on(self, net: nn.Module, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from captum.attr import Saliency as CaptumSaliency

        return CaptumSaliency(net).attribute(images, target=target, abs=self.abs)


@register("input-x-gradient", "inputxgradient", "input-times-gradient")
class InputXGradient(ChunkedCaptumMethod):
    """``x * df/dx`` on the [0,1] image (Shrikumar et al. 2016), via Captum.

    Example:
        >>> maps = InputXGradient(model).attribute(images)   # [B,3,H,W]  # doctest: +SKIP
    """

    def _chunk_on(self, net: nn.Module, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from captum.attr import InputXGradient as CaptumIxG

        return CaptumIxG(net).attribute(images, target=target)


@register("integrated-gradients", "integrated_gradients")
class IntegratedGradients(ChunkedCaptumMethod):
    """Integrated Gradients (Sundararajan et al. 2017) from a black image, via Captum.

    ``sum(A) ~= f(x) - f(baseline)`` on the target logit (completeness).

    Args:
        n_steps: integration steps (200, as in the papers this project follows).
        method: Captum's integration rule (``gausslegendre`` converges fastest).
        baseline: ``"black"`` (zeros in [0,1] space) or ``"mean"`` (the model's mean colour).

    Example:
        >>> ig = IntegratedGradients(model, n_steps=200, internal_batch_size=50)  # doctest: +SKIP
        >>> maps = ig.attribute(images, target=285)                              # doctest: +SKIP
    """

    #: attributions sum to f(x) - f(baseline) (read by the completeness metric)
    complete = True

    def __init__(self, model: nn.Module, *, n_steps: int = 200, method: str = "gausslegendre",
                 baseline: str = "black", seed: int = 0, internal_batch_size: Optional[int] = None,
                 progress: bool = False) -> None:
        super().__init__(model, seed=seed, internal_batch_size=internal_batch_size, progress=progress)
        self.n_steps = positive_int("n_steps", n_steps)
        if method not in IG_RULES:
            raise UsageError(f"method must be one of {', '.join(IG_RULES)}; got {method!r}")
        self.method = method
        self.baseline = check_baseline(baseline)

    def _chunk_on(self, net: nn.Module, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from captum.attr import IntegratedGradients as CaptumIG

        ig = CaptumIG(net, multiply_by_inputs=True)
        return ig.attribute(images, baselines=baseline_image(self.model, images, self.baseline), target=target,
                            n_steps=self.n_steps, method=self.method,
                            internal_batch_size=max(self.gradient_batch(images), images.shape[0]))


@register("smoothgrad", "smooth-grad")
class SmoothGrad(ChunkedCaptumMethod):
    """SmoothGrad (Smilkov et al. 2017): Captum's NoiseTunnel over Saliency.

    The gradient map is averaged over ``n_samples`` copies of the image with
    Gaussian noise of standard deviation ``noise_level`` (in [0,1] pixel units,
    i.e. a fraction of the input range as in the paper).

    Args:
        n_samples: noisy copies per image (50; the paper finds little change beyond 50).
        noise_level: noise standard deviation as a fraction of the [0,1] range
            (0.15; the paper recommends 10-20%).
        abs: average ``|gradient|`` (Captum's Saliency default) rather than the signed gradient.

    Example:
        >>> maps = SmoothGrad(model, n_samples=50, noise_level=0.15, seed=0).attribute(images)  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, *, n_samples: int = 50, noise_level: float = 0.15, abs: bool = True,
                 seed: int = 0, internal_batch_size: Optional[int] = None, progress: bool = False) -> None:
        super().__init__(model, seed=seed, internal_batch_size=internal_batch_size, progress=progress)
        self.n_samples = positive_int("n_samples", n_samples)
        self.noise_level = positive_float("noise_level", noise_level)
        self.abs = bool(abs)

    def _chunk_size(self, images: torch.Tensor) -> int:
        return 1  # one noise stream per image: batch results equal single-image results

    def _chunk_on(self, net: nn.Module, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from captum.attr import NoiseTunnel
        from captum.attr import Saliency as CaptumSaliency

        nt = NoiseTunnel(CaptumSaliency(net))
        with seeded_global_rng(self.seed, images.device):
            return nt.attribute(images, nt_type="smoothgrad", nt_samples=self.n_samples,
                                nt_samples_batch_size=min(self.n_samples, self.gradient_batch(images)),
                                stdevs=self.noise_level, target=target, abs=self.abs)


@register("guided-backprop", "guided-backpropagation", "guidedbackprop")
class GuidedBackprop(ChunkedCaptumMethod):
    """Guided Backpropagation (Springenberg et al. 2015) via Captum.

    Captum only modifies ``nn.ReLU`` modules; ``nn.ReLU6`` modules are swapped
    for an equivalent ReLU subclass on a copy of the model first (see
    :mod:`fisherattr.methods.captum_activations`). ReLUs applied as functions
    (``F.relu``) inside ``forward`` cannot be hooked and pass plain gradients.

    Example:
        >>> maps = GuidedBackprop(model).attribute(images)  # [B,3,H,W]  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, *, seed: int = 0, internal_batch_size: Optional[int] = None,
                 progress: bool = False) -> None:
        super().__init__(model, seed=seed, internal_batch_size=internal_batch_size, progress=progress)
        self._patched = PatchedCopy(GuidedReLU6)

    def _prepare(self) -> nn.Module:
        return self._patched.get(self.model)

    def _chunk_on(self, net: nn.Module, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from captum.attr import GuidedBackprop as CaptumGBP

        return CaptumGBP(net).attribute(images, target=target)


@register("deeplift", "deep-lift")
class DeepLift(ChunkedCaptumMethod):
    """DeepLIFT with the rescale rule (Shrikumar et al. 2017) from a black image, via Captum.

    ``sum(A) = f(x) - f(baseline)`` on the target logit (summation-to-delta)
    for networks of linear layers, BatchNorm in eval mode, pooling and the
    activations Captum supports. ``nn.ReLU6`` is rewritten on a copy as
    ``relu(x) - relu(x - 6)`` (same values; exact rescale rule). Activation
    types Captum has no rule for (SiLU, GELU, ...) pass plain gradients; a
    warning names them.

    Args:
        baseline: ``"black"`` (zeros in [0,1] space) or ``"mean"`` (the model's mean colour).

    Example:
        >>> maps = DeepLift(model).attribute(images, target=285)  # doctest: +SKIP
    """

    #: attributions sum to f(x) - f(baseline) (read by the completeness metric)
    complete = True

    def __init__(self, model: nn.Module, *, baseline: str = "black", seed: int = 0,
                 internal_batch_size: Optional[int] = None, progress: bool = False) -> None:
        super().__init__(model, seed=seed, internal_batch_size=internal_batch_size, progress=progress)
        self.baseline = check_baseline(baseline)
        self._patched = PatchedCopy(RescaleReLU6)
        missing = deeplift_unsupported(model)
        if missing:
            warnings.warn(f"deeplift: Captum has no DeepLIFT rule for {', '.join(missing)}; "
                          "those modules pass plain gradients and completeness may not hold", stacklevel=2)

    def _chunk_size(self, images: torch.Tensor) -> int:
        return max(1, self.gradient_batch(images) // 2)  # Captum runs inputs and baselines in one batch


    def _prepare(self) -> nn.Module:
        return self._patched.get(self.model)

    def _chunk_on(self, net: nn.Module, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from captum.attr import DeepLift as CaptumDeepLift

        return CaptumDeepLift(net, multiply_by_inputs=True).attribute(
            images, baselines=baseline_image(self.model, images, self.baseline), target=target)
