"""Perturbation baselines through Captum: Occlusion, LIME and KernelSHAP.

All three remove whole pixels (the three colour channels together) and put
the same value in every channel, so they return per-pixel maps ``[B,1,H,W]``
(``per_pixel = True``). Removed pixels take the baseline value: black (0 in
[0,1] space, as in the deletion metrics) or the model's mean colour.

LIME and KernelSHAP work on super-pixels from scikit-image's SLIC (on each
image; deterministic). Their random coalitions come from Captum's sampler,
which draws from torch's global RNG: we run it per image under the method's
``seed`` and restore the caller's RNG state afterwards, so results are
reproducible and a batch equals its images one by one.
"""
from __future__ import annotations

from abc import abstractmethod
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .base import AttributionMethod
from .captum_support import (baseline_image, check_baseline, positive_float, positive_int, quiet_captum,
                             seeded_global_rng)
from .captum_surrogate import WeightedRidge
from .registry import register

#: Occlusion window and stride for 224x224 inputs; other sizes scale them by min(H, W) / 224.
OCCLUSION_WINDOW_224 = 16
OCCLUSION_STRIDE_224 = 8


def superpixels(image: torch.Tensor, n_segments: int = 50, compactness: float = 10.0) -> torch.Tensor:
    """SLIC super-pixels of one ``[3,H,W]`` image in [0,1]: a long ``[H,W]`` map with labels 0..K-1.

    Example:
        >>> seg = superpixels(torch.rand(3, 32, 32), n_segments=8)
        >>> seg.shape, int(seg.min())
        (torch.Size([32, 32]), 0)
    """
    from skimage.segmentation import slic

    arr = image.detach().permute(1, 2, 0).cpu().double().numpy()
    labels = slic(arr, n_segments=int(n_segments), compactness=float(compactness), start_label=0,
                  channel_axis=-1)
    _, dense = np.unique(labels, return_inverse=True)
    return torch.from_numpy(dense.reshape(labels.shape).astype(np.int64)).to(image.device)


def occlusion_geometry(size: Tuple[int, int], window: Optional[int], stride: Optional[int]) -> Tuple[int, int]:
    """(window, stride) in pixels: the given values, or the 224-pixel defaults scaled to ``size``."""
    scale = min(size) / 224.0
    w = window if window is not None else max(1, int(round(OCCLUSION_WINDOW_224 * scale)))
    s = stride if stride is not None else max(1, int(round(OCCLUSION_STRIDE_224 * scale)))
    return min(w, min(size)), s


@register("occlusion")
class Occlusion(AttributionMethod):
    """Occlusion (Zeiler & Fergus 2014): slide a baseline-coloured square, record the logit drop.

    Args:
        window: side of the square in pixels (default 16 at 224x224, scaled with min(H, W)).
        stride: step in pixels (default 8 at 224x224, scaled): 27x27 = 729 model
            calls per 224x224 image.
        baseline: ``"black"`` or ``"mean"`` (the model's mean colour).

    Example:
        >>> maps = Occlusion(model).attribute(images)      # [B,1,H,W]  # doctest: +SKIP
    """

    per_pixel = True

    def __init__(self, model: nn.Module, *, window: Optional[int] = None, stride: Optional[int] = None,
                 baseline: str = "black", seed: int = 0, internal_batch_size: Optional[int] = None,
                 progress: bool = False) -> None:
        super().__init__(model, seed=seed, internal_batch_size=internal_batch_size, progress=progress)
        self.window = positive_int("window", window) if window is not None else None
        self.stride = positive_int("stride", stride) if stride is not None else None
        self.baseline = check_baseline(baseline)

    def _attribute(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from captum.attr import Occlusion as CaptumOcclusion

        w, s = occlusion_geometry((images.shape[2], images.shape[3]), self.window, self.stride)
        occ = CaptumOcclusion(self.model)
        outs = []
        with quiet_captum():
            for i in range(images.shape[0]):  # one image per call: every window batch is full
                x = images[i:i + 1]
                a = occ.attribute(x, sliding_window_shapes=(x.shape[1], w, w), strides=(x.shape[1], s, s),
                                  baselines=baseline_image(self.model, x, self.baseline), target=target[i:i + 1],
                                  perturbations_per_eval=self.forward_batch(x), show_progress=self.progress)
                outs.append(a[:, :1].detach())
        return torch.cat(outs).float()


class _SuperpixelSurrogate(AttributionMethod):
    """LIME / KernelSHAP on SLIC super-pixels: options and the per-image loop."""

    per_pixel = True

    def __init__(self, model: nn.Module, *, n_samples: int, n_segments: int, compactness: float,
                 baseline: str, seed: int, internal_batch_size: Optional[int], progress: bool) -> None:
        super().__init__(model, seed=seed, internal_batch_size=internal_batch_size, progress=progress)
        self.n_samples = positive_int("n_samples", n_samples, minimum=2)
        self.n_segments = positive_int("n_segments", n_segments)
        self.compactness = positive_float("compactness", compactness)
        self.baseline = check_baseline(baseline)

    def segments(self, image: torch.Tensor) -> torch.Tensor:
        """The super-pixel map ``[H,W]`` (labels 0..K-1) used for one ``[3,H,W]`` image."""
        return superpixels(image, self.n_segments, self.compactness)

    @abstractmethod
    def _explainer(self):
        """The Captum explainer (``Lime`` or ``KernelShap``) for this model."""

    def _attribute(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        explainer = self._explainer()
        outs = []
        with quiet_captum():
            for i in tqdm(range(images.shape[0]), desc=self.method_name, disable=not self.progress):
                x = images[i:i + 1]
                mask = self.segments(x[0])[None, None].expand_as(x)
                base = baseline_image(self.model, x, self.baseline)
                if int(mask.max()) == 0:  # one segment: its value is f(x) - f(baseline) (Captum needs >= 2)
                    with torch.no_grad():
                        delta = self.model(torch.cat([x, base]))[:, target[i]]
                    outs.append((delta[0] - delta[1]).reshape(1, 1, 1, 1).expand(1, 1, *x.shape[2:]).clone())
                    continue
                with seeded_global_rng(self.seed, x.device):
                    a = explainer.attribute(x, baselines=base,
                                            target=target[i:i + 1], feature_mask=mask, n_samples=self.n_samples,
                                            perturbations_per_eval=self.forward_batch(x),
                                            return_input_shape=True, show_progress=self.progress)
                outs.append(a[:, :1].detach())
        return torch.cat(outs).float()


@register("lime")
class Lime(_SuperpixelSurrogate):
    """LIME (Ribeiro et al. 2016) on SLIC super-pixels via Captum's ``Lime``.

    Coalitions: each super-pixel kept with probability 1/2 (Captum's default);
    weights: exponential kernel on the cosine distance between the image and
    the perturbed image (width ``kernel_width``); surrogate: weighted ridge
    regression (``alpha``), solved exactly, as in the reference LIME code.

    Args:
        n_samples: model calls per image (500: ~10 per super-pixel at the default 50).
        n_segments: SLIC target number of super-pixels (50).
        compactness: SLIC compactness (10, scikit-image's default for colour images).
        kernel_width: similarity kernel width on cosine distance (0.25, as lime_image).
        alpha: ridge penalty (1.0, as lime_image; 0 = plain weighted least squares).
        baseline: colour of removed super-pixels, ``"black"`` or ``"mean"``.

    Example:
        >>> maps = Lime(model, n_samples=500, seed=0).attribute(images)  # [B,1,H,W]  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, *, n_samples: int = 500, n_segments: int = 50, compactness: float = 10.0,
                 kernel_width: float = 0.25, alpha: float = 1.0, baseline: str = "black", seed: int = 0,
                 internal_batch_size: Optional[int] = None, progress: bool = False) -> None:
        super().__init__(model, n_samples=n_samples, n_segments=n_segments, compactness=compactness,
                         baseline=baseline, seed=seed, internal_batch_size=internal_batch_size, progress=progress)
        self.kernel_width = positive_float("kernel_width", kernel_width)
        self.alpha = positive_float("alpha", alpha, allow_zero=True)

    def _explainer(self):
        from captum.attr import Lime as CaptumLime
        from captum.attr._core.lime import get_exp_kernel_similarity_function

        return CaptumLime(self.model, interpretable_model=WeightedRidge(alpha=self.alpha),
                          similarity_func=get_exp_kernel_similarity_function("cosine", self.kernel_width))


@register("kernelshap", "kernel-shap")
class KernelShap(_SuperpixelSurrogate):
    """KernelSHAP (Lundberg & Lee 2017) on SLIC super-pixels via Captum's ``KernelShap``.

    Captum samples coalitions from the Shapley kernel and gives the empty and
    full coalitions a very large weight; the weighted linear regression is
    solved exactly (:mod:`fisherattr.methods.captum_surrogate`). On a model
    that is linear in the super-pixels the values are exact Shapley values.

    Args:
        n_samples: model calls per image (500; more gives steadier values).
        n_segments: SLIC target number of super-pixels (50).
        compactness: SLIC compactness (10).
        baseline: colour of removed super-pixels, ``"black"`` or ``"mean"``.

    Example:
        >>> maps = KernelShap(model, n_samples=500, seed=0).attribute(images)  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, *, n_samples: int = 500, n_segments: int = 50, compactness: float = 10.0,
                 baseline: str = "black", seed: int = 0, internal_batch_size: Optional[int] = None,
                 progress: bool = False) -> None:
        super().__init__(model, n_samples=n_samples, n_segments=n_segments, compactness=compactness,
                         baseline=baseline, seed=seed, internal_batch_size=internal_batch_size, progress=progress)

    def _explainer(self):
        from captum.attr import KernelShap as CaptumKernelShap

        ks = CaptumKernelShap(self.model)
        ks.interpretable_model = WeightedRidge(alpha=0.0)  # Captum's default needs scikit-learn
        return ks
