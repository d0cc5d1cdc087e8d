"""Grad-CAM and Guided Grad-CAM (Selvaraju et al. 2017) through Captum.

The target layer is found automatically: the *last module in execution
order whose output is a 4-D map with more than one spatial position*, i.e.
the last convolutional block before global pooling (on EfficientNet-Lite0:
``net._act_head``, the ReLU6 after the 1x1 head convolution, a 7x7x1280 map at
224x224). Only modules called exactly once per forward pass qualify (a reused
module has no single output to explain). Because a container finishes after
its children, a block such as ResNet's ``layer4`` is preferred over its last
ReLU. The ``layer="dotted.name"`` option overrides the choice; names are
relative to the classifier, and for a :class:`~fisherattr.models.Classifier`
the ``net.`` prefix may be left out.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from ..errors import UsageError
from .base import AttributionMethod
from .captum_activations import GuidedReLU6, PatchedCopy
from .captum_support import image_chunks, quiet_captum
from .registry import register

UPSAMPLE_MODES = ("bilinear", "bicubic", "nearest")


def resolve_layer(model: nn.Module, name: str) -> str:
    """The full dotted name of submodule ``name`` of ``model`` (``net.`` prefix optional).

    Raises :class:`UsageError` when no such submodule exists.
    """
    key = str(name).strip()
    candidates = [key]
    if isinstance(getattr(model, "net", None), nn.Module) and not key.startswith("net."):
        candidates.append(f"net.{key}")
    for cand in candidates:
        if not cand:
            continue
        try:
            model.get_submodule(cand)
        except AttributeError:
            continue
        return cand
    examples = [n for n, _ in model.named_modules() if n][-3:]
    raise UsageError(f"layer {name!r} is not a submodule of the model (e.g. {', '.join(examples)})")


def last_conv_layer(model: nn.Module, images: torch.Tensor) -> str:
    """Name of the last module (in execution order) whose output is a 4-D map with H*W > 1.

    Runs one forward pass on the first image. Modules called more than once are skipped.
    """
    finished: List[str] = []
    calls: Dict[str, int] = {}
    spatial: Dict[str, bool] = {}
    handles = []

    def hook_for(name: str):
        def hook(_module: nn.Module, _inp, out) -> None:
            calls[name] = calls.get(name, 0) + 1
            spatial[name] = isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[2] * out.shape[3] > 1
            finished.append(name)
        return hook

    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_hook(hook_for(name)))
    try:
        with torch.no_grad():
            model(images[:1])
    finally:
        for h in handles:
            h.remove()
    for name in reversed(finished):
        if calls[name] == 1 and spatial[name]:
            return name
    raise UsageError("no module of the model outputs a spatial 4-D map (H*W > 1) for this input size; "
                     "pass layer='dotted.module.name'")


class _CamBase(AttributionMethod):
    """Layer choice shared by Grad-CAM and Guided Grad-CAM."""

    def __init__(self, model: nn.Module, *, layer: Optional[str] = None, upsample: str = "bilinear",
                 seed: int = 0, internal_batch_size: Optional[int] = None, progress: bool = False) -> None:
        super().__init__(model, seed=seed, internal_batch_size=internal_batch_size, progress=progress)
        self.layer = resolve_layer(model, layer) if layer is not None else None
        if upsample not in UPSAMPLE_MODES:
            raise UsageError(f"upsample must be one of {', '.join(UPSAMPLE_MODES)}; got {upsample!r}")
        self.upsample = upsample
        self._auto: Dict[Tuple[int, int], str] = {}

    def layer_name(self, size: Optional[Tuple[int, int]] = None) -> str:
        """The layer used for inputs of ``size`` (H, W) (default: the model's input size or 224x224)."""
        if self.layer is not None:
            return self.layer
        size = tuple(size or getattr(self.model, "input_size", None) or (224, 224))  # type: ignore[assignment]
        return self._layer_for(torch.zeros(1, 3, *size, device=self.device))

    def _layer_for(self, images: torch.Tensor) -> str:
        if self.layer is not None:
            return self.layer
        key = (int(images.shape[2]), int(images.shape[3]))
        if key not in self._auto:
            was_training = self.model.training
            self.model.eval()
            try:
                self._auto[key] = last_conv_layer(self.model, images)
            finally:
                self.model.train(was_training)
        return self._auto[key]


@register("gradcam", "grad-cam")
class GradCam(_CamBase):
    """Grad-CAM via Captum's ``LayerGradCam``, upsampled to the input size; ``[B,1,H,W]``.

    Args:
        layer: dotted module name of the target layer (default: the last
            convolutional block, found automatically; see :meth:`layer_name`).
        relu: keep only positive evidence (the paper's ReLU); False returns the signed map.
        upsample: ``bilinear`` (the paper), ``bicubic`` or ``nearest``.

    Example:
        >>> cam = GradCam(model)                    # doctest: +SKIP
        >>> cam.layer_name()                        # doctest: +SKIP
        'net._act_head'
        >>> cam.attribute(images).shape             # doctest: +SKIP
        torch.Size([1, 1, 224, 224])
    """

    per_pixel = True

    def __init__(self, model: nn.Module, *, layer: Optional[str] = None, relu: bool = True,
                 upsample: str = "bilinear", seed: int = 0, internal_batch_size: Optional[int] = None,
                 progress: bool = False) -> None:
        super().__init__(model, layer=layer, upsample=upsample, seed=seed,
                         internal_batch_size=internal_batch_size, progress=progress)
        self.relu = bool(relu)

    def _attribute(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from captum.attr import LayerAttribution, LayerGradCam

        module = self.model.get_submodule(self._layer_for(images))
        cam = LayerGradCam(self.model, module)
        outs = []
        with quiet_captum():
            for x, t in image_chunks(images, target, self.gradient_batch(images)):
                a = cam.attribute(x, target=t, relu_attributions=self.relu)
                outs.append(LayerAttribution.interpolate(a.detach(), tuple(x.shape[2:]), self.upsample))
        return torch.cat(outs).float()


@register("guided-gradcam", "guided-grad-cam")
class GuidedGradCam(_CamBase):
    """Guided Grad-CAM via Captum: Guided Backprop times the upsampled Grad-CAM; ``[B,3,H,W]``.

    ``nn.ReLU6`` modules are swapped for a ReLU subclass on a copy of the model
    so that Captum's Guided Backprop applies to them (see
    :mod:`fisherattr.methods.captum_activations`).

    Args:
        layer: as for ``gradcam``.
        upsample: ``bilinear`` (the paper), ``bicubic`` or ``nearest``.

    Example:
        >>> maps = GuidedGradCam(model).attribute(images)   # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, *, layer: Optional[str] = None, upsample: str = "bilinear",
                 seed: int = 0, internal_batch_size: Optional[int] = None, progress: bool = False) -> None:
        super().__init__(model, layer=layer, upsample=upsample, seed=seed,
                         internal_batch_size=internal_batch_size, progress=progress)
        self._patched = PatchedCopy(GuidedReLU6)

    def _attribute(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from captum.attr import GuidedGradCam as CaptumGGC

        name = self._layer_for(images)
        net = self._patched.get(self.model)
        ggc = CaptumGGC(net, net.get_submodule(name))
        outs = []
        with quiet_captum():
            for x, t in image_chunks(images, target, self.gradient_batch(images)):
                outs.append(ggc.attribute(x, target=t, interpolate_mode=self.upsample).detach())
        return torch.cat(outs).float()
