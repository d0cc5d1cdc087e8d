"""Insertion / Deletion AUC and their difference (DifAUC), with the presets of docs/evaluation.md.

Deletion starts from the image and replaces the top-ranked pixels by a baseline,
step by step; insertion starts from a substrate and puts the top-ranked pixels
back. The target's score is recorded after every step and the curve is
summarised by its area over the fraction of pixels changed, on [0, 1].

Ranking: the channel-summed map (``[B,C,H,W]`` or per-pixel ``[B,1,H,W]``) is
sorted in descending order with a *stable* sort, so pixels with equal values
keep their raster (row-major) order: ties go to the smaller pixel index.

Model passes: the clean image is passed once (target, normalisation, and it is
deletion's first point and insertion's last point); deletion's last image and
insertion's first image are passed once when they coincide (``inputiba``: both
all black). Every other curve point is one image through the model, in chunks
of ``batch_size`` that may mix points of several images.

Example:
    >>> import torch, fisherattr
    >>> from fisherattr.metrics.insertion_deletion import insertion_deletion
    >>> model = fisherattr.load_classifier()                            # doctest: +SKIP
    >>> x = fisherattr.load_image("chelsea")                            # doctest: +SKIP
    >>> maps = fisherattr.get_method("saliency", model).attribute(x)    # doctest: +SKIP
    >>> r = insertion_deletion(model, x, maps, preset="inputiba")       # doctest: +SKIP
    >>> r.difauc.shape, r.insertion_curve.shape                         # doctest: +SKIP
    (torch.Size([1]), torch.Size([1, 101]))
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn

from ..batching import check_batch_size, resolve_batch_size
from ..errors import InputError, UsageError
from ..methods.base import Target, check_images, check_logits, model_device, resolve_target
from ..methods.paths.blur import delta_kernel, delta_kernel_blur
from ..models.classifier import normalized_zero

#: Substrate names understood by :class:`InsDelPreset` (what removed pixels become).
SUBSTRATES = ("black", "normalized_zero", "blur")
#: AUC conventions: trapezoid over the fraction changed; plain mean of the points (ExplainAttr);
#: trapezoid over equally spaced steps, ``(sum - first/2 - last/2) / n`` (RISE's ``auc``).
AUC_KINDS = ("trapezoid", "mean", "steps")


@dataclass(frozen=True)
class InsDelPreset:
    """One insertion/deletion protocol.

    Exactly one of ``step_fraction`` (fraction of the pixels changed per step)
    and ``step_pixels`` (pixels per step at ``reference_pixels`` image area,
    scaled with the area; ``small_step_pixels`` per step on images whose longer
    side is at most ``small_side``) is set.

    Example:
        >>> p = InsDelPreset("mine", step_fraction=0.1)
        >>> p.steps_and_counts(10, 10)[1][:3]
        [0, 10, 20]
    """

    name: str
    step_fraction: Optional[float] = None
    step_pixels: Optional[int] = None
    deletion_baseline: str = "black"
    insertion_start: str = "black"
    score: str = "softmax"            # 'softmax' | 'logit'
    normalise_by_full: bool = False
    auc: str = "trapezoid"            # 'trapezoid' | 'mean' | 'steps'
    insertion_only: bool = False
    reference_pixels: int = 224 * 224
    small_step_pixels: Optional[int] = None
    small_side: int = 64
    blur_size: int = 11
    blur_sigma: float = 5.0
    small_blur_size: Optional[int] = None
    description: str = ""

    def __post_init__(self) -> None:
        if (self.step_fraction is None) == (self.step_pixels is None):
            raise UsageError(f"preset {self.name!r}: set exactly one of step_fraction and step_pixels")
        if self.step_fraction is not None and not 0 < self.step_fraction <= 1:
            raise UsageError(f"preset {self.name!r}: step_fraction must be in (0, 1], got {self.step_fraction}")
        if self.step_pixels is not None and self.step_pixels < 1:
            raise UsageError(f"preset {self.name!r}: step_pixels must be >= 1, got {self.step_pixels}")
        for what, v in (("deletion_baseline", self.deletion_baseline), ("insertion_start", self.insertion_start)):
            if v not in SUBSTRATES:
                raise UsageError(f"preset {self.name!r}: {what} must be one of {', '.join(SUBSTRATES)}, got {v!r}")
        if self.score not in ("softmax", "logit"):
            raise UsageError(f"preset {self.name!r}: score must be 'softmax' or 'logit', got {self.score!r}")
        if self.auc not in AUC_KINDS:
            raise UsageError(f"preset {self.name!r}: auc must be one of {', '.join(AUC_KINDS)}, got {self.auc!r}")

    def pixels_per_step(self, h: int, w: int) -> int:
        """Pixels changed per step on an ``h x w`` image (the last step may change fewer)."""
        area = h * w
        if self.step_fraction is not None:
            return max(1, round(self.step_fraction * area))
        if self.small_step_pixels is not None and max(h, w) <= self.small_side:
            return self.small_step_pixels
        return max(1, round(self.step_pixels * area / self.reference_pixels))

    def blur_window(self, h: int, w: int) -> int:
        """The insertion blur's kernel size on an ``h x w`` image (``small_blur_size`` on small images)."""
        if self.small_blur_size is not None and max(h, w) <= self.small_side:
            return self.small_blur_size
        return self.blur_size

    def steps_and_counts(self, h: int, w: int) -> Tuple[int, List[int]]:
        """``(n, counts)``: the number of steps and the pixels changed after each of the n+1 points.

        With ``step_fraction`` the counts are ``round(k * area / n)`` for
        ``n = round(1 / step_fraction)`` (exact fractions k/n of the image);
        with ``step_pixels`` they are ``min(k * step, area)``.
        """
        area = h * w
        if self.step_fraction is not None:
            n = max(1, round(1.0 / self.step_fraction))
            return n, [round(k * area / n) for k in range(n + 1)]
        step = self.pixels_per_step(h, w)
        n = math.ceil(area / step)
        return n, [min(k * step, area) for k in range(n + 1)]


PRESETS: Dict[str, InsDelPreset] = {
    "inputiba": InsDelPreset(
        "inputiba", step_fraction=0.01, deletion_baseline="black", insertion_start="black",
        score="softmax", auc="trapezoid",
        description="InputIBA / Fisher / DiffIB papers: 100 steps of 1%, black, softmax, trapezoid"),
    "rise": InsDelPreset(
        "rise", step_pixels=224, deletion_baseline="normalized_zero",
        insertion_start="blur", score="softmax", auc="steps",
        description="RISE (Petsiuk 2018) CausalMetric as in its notebook: 224 px/step at 224x224 (scaled with "
                    "area), deletion to the normalised zero, insertion from gkern(11, 5) blur in normalised "
                    "space, softmax, AUC = trapezoid over equal steps"),
    "samp": InsDelPreset(
        "samp", step_pixels=224 * 8, small_step_pixels=10, deletion_baseline="normalized_zero",
        insertion_start="blur", score="logit", normalise_by_full=True, auc="mean", blur_size=31,
        small_blur_size=11,
        description="ExplainAttr (SAMP, Zhang 2023) Metric as run_benchmark.py sets it: metric_step 224*8 px "
                    "at 224x224 (10 px on images <= 64 px, its MNIST/CIFAR setting), deletion to the "
                    "normalised zero, insertion from gkern(31, 5) blur (gkern(11, 5) on small images), logit "
                    "divided by the full-image logit, AUC = mean of the points"),
    "idgi": InsDelPreset(
        "idgi", step_fraction=0.05, insertion_start="black", score="softmax", auc="trapezoid",
        insertion_only=True,
        description="IDGI's Table 1: insertion only from black, 5% steps, probability and probability ratio"),
    "quick": InsDelPreset(
        "quick", step_fraction=0.05, deletion_baseline="black", insertion_start="black",
        score="softmax", auc="trapezoid",
        description="inputiba with 5% steps (21 points instead of 101, 5x fewer model calls): "
                    "a coarser trapezoid of the same curves, for demos and quick looks"),
}


@dataclass
class InsDelResult:
    """Scores of one :func:`insertion_deletion` call (all tensors on the CPU).

    ``deletion``/``difauc`` are NaN and ``deletion_curve`` is None for
    insertion-only presets. ``extras`` holds preset-specific values
    (``idgi``: ``insertion_ratio`` and ``insertion_ratio_curve``; always
    ``full_score``, the clean image's score, and ``target``).
    ``model_calls`` counts the images passed through the model.
    """

    preset: str
    fractions: torch.Tensor
    insertion: torch.Tensor
    deletion: torch.Tensor
    difauc: torch.Tensor
    insertion_curve: torch.Tensor
    deletion_curve: Optional[torch.Tensor]
    extras: Dict[str, torch.Tensor] = field(default_factory=dict)
    model_calls: int = 0


# ----------------------------------------------------------------- helpers
def gaussian_kernel(size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """The ``size x size`` blur kernel of RISE's and ExplainAttr's ``gkern``.

    Built as their code builds it: ``scipy.ndimage.gaussian_filter`` (mode
    ``'reflect'``, truncated at 4 sigma) applied to a centred delta. For
    ``sigma`` large against the window this is *not* a truncated normalised
    Gaussian: the reflected tails fold back into the window (sum still 1).

    Example:
        >>> k = gaussian_kernel(11, 5.0)
        >>> tuple(k.shape), round(float(k.sum()), 6)
        ((11, 11), 1.0)
    """
    return delta_kernel(size, sigma)


def _normalize(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    fn = getattr(model, "normalize", None)
    return fn(x) if callable(fn) else x


def _denormalize(model: nn.Module, z: torch.Tensor) -> torch.Tensor:
    fn = getattr(model, "denormalize", None)
    return fn(z) if callable(fn) else z


def blur_substrate(model: nn.Module, images: torch.Tensor, size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """The images blurred in the model's normalised space (zero padding), returned in [0,1] units.

    Padding with zeros in normalised space means the border fades towards the
    model's mean colour. Values may leave [0,1] slightly; the model accepts them.
    """
    return _denormalize(model, delta_kernel_blur(_normalize(model, images), size, sigma))


def substrate(model: nn.Module, images: torch.Tensor, kind: str, preset: Optional[InsDelPreset] = None) -> torch.Tensor:
    """The image a removed pixel takes its value from: ``black``, ``normalized_zero`` or ``blur``."""
    if kind == "black":
        return torch.zeros_like(images)
    if kind == "normalized_zero":
        return normalized_zero(model, images)
    if kind == "blur":
        p = preset or PRESETS["rise"]
        return blur_substrate(model, images, p.blur_window(*images.shape[-2:]), p.blur_sigma)
    raise UsageError(f"unknown substrate {kind!r}; choose one of {', '.join(SUBSTRATES)}")


def pixel_ranks(attributions: torch.Tensor) -> torch.Tensor:
    """Rank of every pixel (0 = most important) as ``[B, H*W]``.

    Channel-summed map, descending, stable sort: ties keep raster order.
    """
    scores = attributions.sum(dim=1).flatten(1)
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order).contiguous())
    return ranks


def auc(curve: torch.Tensor, fractions: torch.Tensor, kind: str) -> torch.Tensor:
    """Area of ``curve`` ``[B, n+1]`` over ``fractions`` ``[n+1]`` (see :data:`AUC_KINDS`).

    Example:
        >>> c = torch.tensor([[1.0, 0.5, 0.0]]); f = torch.tensor([0.0, 0.8, 1.0])
        >>> [round(float(auc(c, f, k)), 3) for k in AUC_KINDS]
        [0.65, 0.5, 0.5]
    """
    if kind == "mean":
        return curve.mean(dim=1)
    if kind == "steps":
        n = curve.shape[1] - 1
        return (curve.sum(dim=1) - 0.5 * (curve[:, 0] + curve[:, -1])) / max(n, 1)
    return torch.trapezoid(curve, fractions.to(curve), dim=1)


def _check_attributions(attributions: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    if not isinstance(attributions, torch.Tensor):
        raise InputError(f"attributions must be a torch.Tensor, got {type(attributions).__name__}")
    a = attributions.detach()
    if a.dim() == 3:
        a = a.unsqueeze(1)
    b, _, h, w = images.shape
    if a.dim() != 4 or a.shape[0] != b or a.shape[2:] != (h, w):
        raise InputError(f"attributions must have shape [B,C,H,W] or [B,1,H,W] matching the images "
                         f"{tuple(images.shape)}; got {tuple(attributions.shape)}")
    if not torch.isfinite(a).all():
        raise InputError("attributions contain NaN or infinite values")
    return a.float()


# ------------------------------------------------------------------- metric
def insertion_deletion(model: nn.Module, images: torch.Tensor, attributions: torch.Tensor,
                       target: Target = None, preset: Union[str, InsDelPreset] = "inputiba",
                       batch_size: Optional[int] = None) -> InsDelResult:
    """Insertion and deletion AUC of ``attributions`` for ``model`` on ``images`` under ``preset``.

    Args:
        model: a classifier taking [0,1] images (a :class:`fisherattr.Classifier`
            supplies the normalised space that ``rise``/``samp`` use).
        images: ``[B,3,H,W]`` in [0,1].
        attributions: ``[B,C,H,W]`` or per-pixel ``[B,1,H,W]``; pixels are ranked by the channel sum.
        target: None (top-1 on the clean image), an int or a ``[B]`` tensor.
        preset: a name in :data:`PRESETS` or an :class:`InsDelPreset`.
        batch_size: images per model call (``None``: from the image size and device,
            :func:`fisherattr.batching.forward_batch_size`).

    Example:
        >>> r = insertion_deletion(model, x, maps, preset="rise")   # doctest: +SKIP
        >>> float(r.difauc[0])                                       # doctest: +SKIP
    """
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise UsageError(f"unknown insertion/deletion preset {preset!r}; choose one of {', '.join(PRESETS)}")
        preset = PRESETS[preset]
    check_batch_size(batch_size)
    check_images(images, channels=getattr(model, "in_channels", None))
    device = model_device(model)
    batch_size = resolve_batch_size(batch_size, images, device=device)
    x = images.detach().to(device, dtype=torch.float32).clone()
    a = _check_attributions(attributions, images).to(device)

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return _run(model, x, a, target, preset, batch_size)
    finally:
        model.train(was_training)


def _run(model: nn.Module, x: torch.Tensor, a: torch.Tensor, target: Target, preset: InsDelPreset,
         batch_size: int) -> InsDelResult:
    b, _, h, w = x.shape
    calls = 0

    def forward(batch: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        out = model(batch)
        check_logits(out, batch.shape[0])
        calls += batch.shape[0]
        return out.float()

    clean_logits = torch.cat([forward(x[i:i + batch_size]) for i in range(0, b, batch_size)])
    if not torch.isfinite(clean_logits).all():
        raise InputError("the model returned NaN or infinite logits on the clean images")
    t = resolve_target(clean_logits, target)

    def score(logits: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        vals = logits.softmax(dim=1) if preset.score == "softmax" else logits
        return vals.gather(1, tgt.view(-1, 1)).squeeze(1)

    full = score(clean_logits, t)
    n, counts = preset.steps_and_counts(h, w)
    fractions = torch.tensor(counts, dtype=torch.float64) / (h * w)
    ranks = pixel_ranks(a).view(b, 1, h, w)
    counts_t = torch.tensor(counts, device=x.device)

    # Each job: (curve, image index, step k). The clean image and a shared
    # all-substrate image are not re-run (see the module docstring).
    curves = {"insertion": torch.full((b, n + 1), float("nan"), device=x.device)}
    subs = {"insertion": substrate(model, x, preset.insertion_start, preset)}
    curves["insertion"][:, n] = full
    jobs: List[Tuple[str, int, int]] = []
    shared_end = False
    if not preset.insertion_only:
        curves["deletion"] = torch.full((b, n + 1), float("nan"), device=x.device)
        subs["deletion"] = substrate(model, x, preset.deletion_baseline, preset)
        curves["deletion"][:, 0] = full
        shared_end = preset.deletion_baseline == preset.insertion_start
        jobs += [("deletion", i, k) for i in range(b) for k in range(1, n + 1)]
    jobs += [("insertion", i, k) for i in range(b) for k in range(0, n) if not (shared_end and k == 0)]

    def build(curve: str, i: int, k: int) -> torch.Tensor:
        changed = ranks[i] < counts_t[k]                     # [1,H,W] top-ranked pixels
        if curve == "deletion":
            return torch.where(changed, subs["deletion"][i], x[i])
        return torch.where(changed, x[i], subs["insertion"][i])

    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        logits = forward(torch.stack([build(*j) for j in chunk]))
        idx = torch.tensor([j[1] for j in chunk], device=x.device)
        vals = score(logits, t[idx])
        for (curve, i, k), v in zip(chunk, vals):
            curves[curve][i, k] = v
    if shared_end:
        curves["insertion"][:, 0] = curves["deletion"][:, n]

    if preset.normalise_by_full:
        curves = {k: v / full.view(-1, 1) for k, v in curves.items()}
    ins_curve = curves["insertion"].cpu()
    ins = auc(ins_curve, fractions, preset.auc).float()
    extras: Dict[str, torch.Tensor] = {"full_score": full.cpu(), "target": t.cpu()}
    if preset.insertion_only:
        del_curve = None
        dele = torch.full_like(ins, float("nan"))
        ratio_curve = ins_curve / full.cpu().view(-1, 1)
        extras["insertion_ratio_curve"] = ratio_curve
        extras["insertion_ratio"] = auc(ratio_curve, fractions, preset.auc).float()
    else:
        del_curve = curves["deletion"].cpu()
        dele = auc(del_curve, fractions, preset.auc).float()
    return InsDelResult(preset=preset.name, fractions=fractions.float(), insertion=ins, deletion=dele,
                        difauc=ins - dele, insertion_curve=ins_curve, deletion_curve=del_curve,
                        extras=extras, model_calls=calls)


__all__ = ["AUC_KINDS", "InsDelPreset", "InsDelResult", "PRESETS", "SUBSTRATES", "auc", "blur_substrate", "gaussian_kernel",
           "insertion_deletion", "pixel_ranks", "substrate"]
