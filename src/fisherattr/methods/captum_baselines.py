"""The classic attribution baselines, computed by Captum and registered by name.

Importing this module registers: ``saliency``, ``input-x-gradient``,
``integrated-gradients``, ``smoothgrad``, ``guided-backprop``, ``deeplift``,
``gradcam``, ``guided-gradcam``, ``occlusion``, ``lime`` and ``kernelshap``.
The classes live in ``captum_gradients`` (gradient methods), ``captum_cam``
(class activation maps) and ``captum_perturbation`` (perturbation methods);
see ``docs/baselines.md`` for options, defaults and costs.

Example:
    >>> import fisherattr
    >>> model = fisherattr.load_classifier()                                     # doctest: +SKIP
    >>> ig = fisherattr.get_method("integrated-gradients", model, n_steps=200)  # doctest: +SKIP
    >>> maps = ig.attribute(fisherattr.load_image("chelsea"), target=285)        # doctest: +SKIP
"""
from .captum_cam import GradCam, GuidedGradCam, last_conv_layer, resolve_layer
from .captum_gradients import DeepLift, GuidedBackprop, InputXGradient, IntegratedGradients, Saliency, SmoothGrad
from .captum_perturbation import KernelShap, Lime, Occlusion, superpixels

__all__ = ["DeepLift", "GradCam", "GuidedBackprop", "GuidedGradCam", "InputXGradient", "IntegratedGradients",
           "KernelShap", "Lime", "Occlusion", "Saliency", "SmoothGrad", "last_conv_layer", "resolve_layer",
           "superpixels"]
