"""What this install offers, readable without importing torch (for ``fisherattr list`` and ``--help``).

The registries (:func:`fisherattr.list_methods`, :func:`fisherattr.metrics.list_metrics`,
:data:`fisherattr.metrics.insertion_deletion.PRESETS`, the sample photos and the
built-in model names) live next to code that imports torch, captum and scipy,
which takes seconds. This module repeats their names and one-line descriptions
as plain data so that the command line starts in well under a second;
``tests/test_catalog.py`` checks that every entry here matches the registries.

Example:
    >>> METHODS["fda"].shape, METHODS["gradcam"].shape
    ('[C,H,W]', '[1,H,W]')
    >>> "inputiba" in INSDEL_PRESETS
    True
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Dict, List, Tuple


@dataclass(frozen=True)
class MethodInfo:
    """One attribution method as ``fisherattr list methods`` shows it."""

    family: str
    cost: str       # fast | medium | slow (see COST_CLASSES)
    shape: str      # [C,H,W] (per feature) or [1,H,W] (per pixel / cell / region)
    summary: str    # one line, plain text


#: Cost classes on a CPU at 224 px (ratios to Captum Integrated Gradients with 200 steps; README "Speed").
COST_CLASSES: Dict[str, str] = {
    "fast": "a few model passes (well under 1 s per image at 224 on a CPU)",
    "medium": "hundreds of passes or an optimisation: about 0.2-1.5x Captum IG-200",
    "slow": "thousands of forward passes: more than 1.5x Captum IG-200",
}

_C, _P = "[C,H,W]", "[1,H,W]"
#: Every registered method (``fisherattr.list_methods()``), alphabetical.
METHODS: Dict[str, MethodInfo] = {
    "blur-ig": MethodInfo("path", "medium", _C, "Blur IG (Xu 2020): integrate gradients along a blur path"),
    "deeplift": MethodInfo("Captum", "fast", _C, "DeepLIFT, rescale rule, from a black image"),
    "diffib": MethodInfo("information", "medium", _C,
                         "diffusion information bottleneck: information (nats) each feature keeps, via a denoiser"),
    "fda": MethodInfo("information", "medium", _C,
                      "Fisher-divergence attribution: per-pixel diffusion noise levels that keep the prediction; "
                      "map = information retained (nats)"),
    "gradcam": MethodInfo("Captum", "fast", _P, "Grad-CAM at the last conv block, upsampled to the image"),
    "guided-backprop": MethodInfo("Captum", "fast", _C, "Guided Backpropagation (Springenberg 2015)"),
    "guided-gradcam": MethodInfo("Captum", "fast", _C, "Guided Backprop times the upsampled Grad-CAM"),
    "guided-ig": MethodInfo("path", "medium", _C, "Guided Integrated Gradients (Kapishnikov 2021)"),
    "hsic": MethodInfo("sampling", "slow", _P, "HSIC-Attribution (Novello 2022): dependence of output on cell masks"),
    "iba": MethodInfo("bottleneck", "medium", _P, "per-sample information bottleneck at a hidden layer (Schulz 2020)"),
    "idgi-blur-ig": MethodInfo("path", "medium", _C, "IDGI on the Blur IG path"),
    "idgi-guided-ig": MethodInfo("path", "medium", _C, "IDGI on the Guided IG path"),
    "idgi-ig": MethodInfo("path", "medium", _C,
                          "IDGI (Yang 2023): IG steps kept only along the gradient direction; straight line"),
    "ig": MethodInfo("path", "medium", _C,
                     "Integrated Gradients on fisherattr's own path code (the base of idgi-ig); "
                     "same maps as integrated-gradients"),
    "input-iba": MethodInfo("bottleneck", "slow", _P,
                            "InputIBA (Zhang 2021): feature IBA -> WGAN input mask -> input bottleneck"),
    "input-x-gradient": MethodInfo("Captum", "fast", _C, "input times gradient (Shrikumar 2016)"),
    "integrated-gradients": MethodInfo("Captum", "medium", _C,
                                       "Integrated Gradients (Sundararajan 2017) through Captum, 200 steps from black "
                                       "(the reference implementation; same maps as ig)"),
    "kernelshap": MethodInfo("Captum", "medium", _P, "KernelSHAP on SLIC super-pixels"),
    "lime": MethodInfo("Captum", "medium", _P, "LIME on SLIC super-pixels"),
    "occlusion": MethodInfo("Captum", "medium", _P, "sliding-square occlusion (Zeiler & Fergus 2014)"),
    "rise": MethodInfo("sampling", "slow", _P, "RISE (Petsiuk 2018): 4000 random smooth masks"),
    "saliency": MethodInfo("Captum", "fast", _C, "gradient of the target logit (Simonyan 2014)"),
    "samp": MethodInfo("path", "medium", _P, "SAMP: greedy manipulation paths, most salient pixels first"),
    "samp++": MethodInfo("path", "medium", _P, "SAMP++: SAMP with the infinitesimal constraint and momentum"),
    "smoothgrad": MethodInfo("Captum", "medium", _C, "SmoothGrad: saliency averaged over 50 noisy copies"),
}

#: Why there are two Integrated Gradients (shown by ``fisherattr list methods``).
IG_NOTE = ("ig and integrated-gradients compute the same Integrated Gradients (200 steps, black baseline; "
           "maps agree to float error): integrated-gradients calls Captum, the reference; ig runs on "
           "fisherattr's path code, which IDGI, Guided IG and Blur IG share, so idgi-ig is compared with "
           "exactly its own base.")

#: Insertion/deletion presets (``fisherattr.metrics.insertion_deletion.PRESETS``), in their order.
INSDEL_PRESETS: Tuple[str, ...] = ("inputiba", "rise", "samp", "idgi", "quick")

#: Built-in model names -> what they are (``load_classifier(name)``).
MODELS: Dict[str, str] = {
    "efficientnet_lite0": "ImageNet EfficientNet-Lite0, offline weights from an installed package (default)",
    "synthetic": "small CNN of the synthetic world (64 px, 8 classes), shipped",
    "synthetic-robust": "the same CNN trained with VP-noise augmentation, shipped",
}

#: Model families that need an optional library: prefix -> (module to import, what it gives).
MODEL_LIBRARIES: Dict[str, Tuple[str, str]] = {
    "torchvision": ("torchvision", "torchvision:<name>, e.g. torchvision:resnet50 (weights from the local cache)"),
    "timm": ("timm", "timm:<name>, e.g. timm:resnet50 (weights from the local cache)"),
}

#: Other ways to name a model (always available).
MODEL_FORMS: Tuple[Tuple[str, str], ...] = (
    ("<file.pt>", "a TorchScript file (+ optional <file>.json with mean/std/classes/input_size)"),
    ("<folder>", "a folder written by fisherattr.save_classifier"),
    ("<module:function>", "any importable function returning an nn.Module (or a fisherattr.Classifier)"),
)

#: Sample photos shipped with installed packages (``fisherattr.list_samples()``).
SAMPLES: Dict[str, str] = {
    "chelsea": "a tabby cat (scikit-image)",
    "coffee": "a cup of espresso (scikit-image)",
    "rocket": "a rocket on its launch pad (scikit-image)",
    "astronaut": "astronaut Eileen Collins (scikit-image)",
    "motorcycle": "a motorcycle, left stereo view (scikit-image)",
    "grace_hopper": "Grace Hopper in uniform (matplotlib)",
}
#: Extra photos when scikit-learn is installed.
OPTIONAL_SAMPLES: Dict[str, str] = {
    "china": "a Chinese temple (scikit-learn)",
    "flower": "a flower (scikit-learn)",
}

#: Metrics of ``fisherattr evaluate`` (``fisherattr.metrics.list_metrics()``): name -> (needs, description).
METRICS: Dict[str, Tuple[str, str]] = {
    "insdel": ("none", "insertion / deletion AUC and DifAUC under the preset's protocol"),
    "mnim": ("none", "minimum necessary information: fraction of features needed from noise to reach p >= 0.9"),
    "sensitivity_n": ("none",
                      "Sensitivity-N: Pearson(sum of removed attributions, score drop), mean over log-spaced N"),
    "mu_fidelity": ("none", "mu-Fidelity (Bhatt 2020): Sensitivity-N correlation at 20% of the features"),
    "completeness": ("method",
                     "path methods: |sum A - (f(x) - f(baseline))| / |f(x) - f(baseline)| (the method's score)"),
    "randomisation": ("method",
                      "cascading parameter randomisation: SSIM / Spearman to the original map, mean over steps"),
    "pic": ("none", "SIC / AIC performance information curves (PIC); table = AUC of the aggregated curves"),
    "ehr": ("region", "effective heat ratio inside the mask / boxes"),
    "box_ratio": ("boxes", "fraction of the top-N (N from MNIM) features in the boxes"),
    "seg_ratio": ("mask", "fraction of the top-N (N from MNIM) features in the mask"),
    "pointing_game": ("region", "1 if the map's maximum is within 15 px of the object"),
    "wsl": ("region", "weakly supervised localisation: ROC-AUC, best F1, MAE of the normalised map"),
    "grid_pointing": ("mosaic", "2x2 mosaics: positive mass in the explained class's cell / total (chance 0.25)"),
}


def library_available(module: str) -> bool:
    """Whether ``module`` is installed, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def sample_names() -> List[str]:
    """The sample photos available here (the optional ones when scikit-learn is installed)."""
    names = list(SAMPLES)
    if library_available("sklearn"):
        names += list(OPTIONAL_SAMPLES)
    return names


__all__ = ["COST_CLASSES", "IG_NOTE", "INSDEL_PRESETS", "METHODS", "METRICS", "MODELS", "MODEL_FORMS",
           "MODEL_LIBRARIES", "MethodInfo", "OPTIONAL_SAMPLES", "SAMPLES", "library_available", "sample_names"]
