"""Registered path methods: IG, Guided IG, Blur IG and their IDGI versions."""
from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn as nn

from ...errors import UsageError
from ..base import AttributionMethod
from ..registry import register
from .blur import BlurPath
from .core import SCORES, BaselineSpec, Path, PointAverage, Rule, ScoreFunction, Trapezoid, check_choice, integrate, \
    make_rule
from .guided import GuidedIGPath
from .straight import StraightLinePath


class PathAttribution(AttributionMethod):
    """Any :class:`Path` with any :class:`Rule` as an attribution method.

    Args:
        model: the classifier ([0,1] images in, logits out).
        path: the path to walk.
        rule: ``'riemann'``, ``'trapezoid'``, ``'idgi'`` or a :class:`Rule`.
        score: ``'logit'`` or ``'probability'`` (softmax) of the target.

    Example (IDGI on a path of your own):
        >>> method = PathAttribution(model, MyPath(), rule="idgi", score="probability")  # doctest: +SKIP
        >>> maps = method.attribute(images)                                              # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, path: Path, rule: Union[str, Rule] = "riemann", *,
                 score: str = "logit", seed: int = 0, internal_batch_size: Optional[int] = None,
                 progress: bool = False) -> None:
        super().__init__(model, seed=seed, internal_batch_size=internal_batch_size, progress=progress)
        if not isinstance(path, Path):
            raise UsageError(f"path must be a fisherattr Path, got {type(path).__name__}")
        self.path = path
        self._rule = make_rule(rule)
        self.rule = self._rule.name
        self.score = check_choice("score", score, SCORES)

    def score_function(self, target: torch.Tensor, images: torch.Tensor) -> ScoreFunction:
        return ScoreFunction(self.model, target, self.score, self.gradient_batch(images))

    def _attribute(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return integrate(self.path, self._rule, images, self.score_function(target, images), progress=self.progress)



#: IG's sums: left / right Riemann (Captum), trapezoid, and PAIR's mean over all points.
IG_RULES = ("left", "right", "trapezoid", "pair")


@register("ig")
class IG(PathAttribution):
    """Integrated Gradients on the straight line from a baseline (black by default).

    ``rule='left'`` equals Captum's ``IntegratedGradients(method='riemann_left')``
    with ``n_steps=steps``; ``'right'`` and ``'trapezoid'`` are the other sums;
    ``'pair'`` is PAIR ``saliency``'s ``IntegratedGradients`` with
    ``x_steps=steps+1``: the mean gradient over the ``steps + 1`` points
    ``j/steps`` (both ends included) times ``x - baseline``.
    ``steps + 1`` points are evaluated, ``max(1, internal_batch_size // B)``
    per model call. Score: the target's logit (as Captum) unless
    ``score='probability'``.

    Example:
        >>> ig = IG(model, steps=200, baseline="black")  # doctest: +SKIP
        >>> maps = ig.attribute(images)                  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, *, steps: int = 200, baseline: BaselineSpec = "black",
                 rule: str = "left", score: str = "logit", seed: int = 0, internal_batch_size: Optional[int] = None,
                 progress: bool = False) -> None:
        check_choice("rule", rule, IG_RULES)
        path = StraightLinePath(steps, baseline, anchor="end" if rule == "right" else "start")
        rule_obj = {"trapezoid": Trapezoid(), "pair": PointAverage(path.steps)}.get(rule, "riemann")
        super().__init__(model, path, rule_obj, score=score, seed=seed,
                         internal_batch_size=internal_batch_size, progress=progress)
        self.steps, self.baseline, self.rule = path.steps, path.baseline, rule


@register("guided-ig", "gig")
class GuidedIG(PathAttribution):
    """Guided Integrated Gradients (Kapishnikov 2021); see :class:`GuidedIGPath`.

    ``selection='all'`` (default) is the authors' rule (PAIR ``saliency``
    ``GuidedIG``): each round moves the ``fraction`` of *all* features with
    the smallest |gradient|; ``'remaining'`` takes the fraction of the
    features not yet at the step's upper edge (this library before issue 17).

    Example:
        >>> maps = GuidedIG(model, steps=200).attribute(images)  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, *, steps: int = 200, fraction: float = 0.25, max_dist: float = 0.02,
                 baseline: BaselineSpec = "black", selection: str = "all", score: str = "logit", seed: int = 0,
                 internal_batch_size: Optional[int] = None, progress: bool = False) -> None:
        path = GuidedIGPath(steps, fraction, max_dist, baseline, selection)
        super().__init__(model, path, "riemann", score=score, seed=seed,
                         internal_batch_size=internal_batch_size, progress=progress)
        self.steps, self.fraction, self.max_dist, self.baseline = steps, path.fraction, path.max_dist, path.baseline
        self.selection = path.selection


@register("blur-ig", "blurig")
class BlurIG(PathAttribution):
    """Blur Integrated Gradients (Xu 2020); see :class:`BlurPath`.

    Example:
        >>> maps = BlurIG(model, max_sigma=50, steps=100).attribute(images)  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, *, max_sigma: float = 50.0, steps: int = 100, grad_step: float = 0.01,
                 sqrt: bool = False, score: str = "logit", seed: int = 0, internal_batch_size: Optional[int] = None,
                 progress: bool = False) -> None:
        path = BlurPath(max_sigma, steps, grad_step, sqrt)
        super().__init__(model, path, "riemann", score=score, seed=seed,
                         internal_batch_size=internal_batch_size, progress=progress)
        self.max_sigma, self.steps, self.grad_step, self.sqrt = path.max_sigma, path.steps, path.grad_step, path.sqrt


@register("idgi-ig", "idgi")
class IDGIIG(PathAttribution):
    """IDGI (Yang 2023) on the IG straight line; score = softmax probability (the paper).

    ``sum(A) == p(x) - p(baseline)`` exactly.

    Example:
        >>> maps = IDGIIG(model, steps=200).attribute(images)  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, *, steps: int = 200, baseline: BaselineSpec = "black",
                 score: str = "probability", seed: int = 0, internal_batch_size: Optional[int] = None,
                 progress: bool = False) -> None:
        path = StraightLinePath(steps, baseline)
        super().__init__(model, path, "idgi", score=score, seed=seed,
                         internal_batch_size=internal_batch_size, progress=progress)
        self.steps, self.baseline = path.steps, path.baseline


@register("idgi-guided-ig", "idgi-gig")
class IDGIGuidedIG(PathAttribution):
    """IDGI on the Guided IG path; score = softmax probability.

    Example:
        >>> maps = IDGIGuidedIG(model).attribute(images)  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, *, steps: int = 200, fraction: float = 0.25, max_dist: float = 0.02,
                 baseline: BaselineSpec = "black", selection: str = "all", score: str = "probability",
                 seed: int = 0, internal_batch_size: Optional[int] = None, progress: bool = False) -> None:
        path = GuidedIGPath(steps, fraction, max_dist, baseline, selection)
        super().__init__(model, path, "idgi", score=score, seed=seed,
                         internal_batch_size=internal_batch_size, progress=progress)
        self.steps, self.fraction, self.max_dist, self.baseline = steps, path.fraction, path.max_dist, path.baseline
        self.selection = path.selection


@register("idgi-blur-ig", "idgi-blurig")
class IDGIBlurIG(PathAttribution):
    """IDGI on the Blur IG path; score = softmax probability.

    Example:
        >>> maps = IDGIBlurIG(model).attribute(images)  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, *, max_sigma: float = 50.0, steps: int = 100, grad_step: float = 0.01,
                 sqrt: bool = False, score: str = "probability", seed: int = 0,
                 internal_batch_size: Optional[int] = None,
                 progress: bool = False) -> None:
        path = BlurPath(max_sigma, steps, grad_step, sqrt)
        super().__init__(model, path, "idgi", score=score, seed=seed,
                         internal_batch_size=internal_batch_size, progress=progress)
        self.max_sigma, self.steps, self.grad_step, self.sqrt = path.max_sigma, path.steps, path.grad_step, path.sqrt
