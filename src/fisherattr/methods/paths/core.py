"""The path abstraction shared by IG, Guided IG, Blur IG and IDGI.

A :class:`Path` walks from a start point (a baseline, a blurred image, ...) to
the image. For every step it reports a :class:`Segment`: the two end points,
the model's score and its gradient at both ends (each pair from one forward +
backward pass), and the path's displacement over the step. A :class:`Rule`
turns one segment into an attribution increment; the attribution is the sum
over segments (:func:`integrate`).

Rules:

- ``riemann``: ``g * delta`` with the gradient the path pairs with the step
  (the start point for IG / Guided IG, the sharper end for Blur IG).
- ``trapezoid``: ``(g_start + g_end) / 2 * delta``.
- ``idgi`` (Yang et al. 2023): ``g*g * (f_end - f_start) / (g . g)``; the
  increments telescope, so ``sum(A) == f(x_N) - f(x_0)`` exactly.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Iterator, Optional, Union

import torch
import torch.nn as nn

from ...errors import UsageError
from ...models import normalized_zero

#: The scalars a path method can integrate.
SCORES = ("logit", "probability")

BaselineSpec = Union[str, float, int, torch.Tensor]


def check_choice(option: str, value: str, choices) -> str:
    """Return ``value`` if it is one of ``choices``, else raise a one-line :class:`UsageError`."""
    if not isinstance(value, str) or value not in choices:
        raise UsageError(f"{option} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_positive_int(option: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{option} must be an integer >= 1; got {value!r}")
    return int(value)


def check_baseline(spec: BaselineSpec) -> BaselineSpec:
    """Validate a baseline option: 'black', 'white', 'mean', a number in [0,1] or a tensor."""
    if isinstance(spec, torch.Tensor):
        return spec
    if isinstance(spec, bool):
        raise UsageError(f"baseline must be 'black', 'white', 'mean', a number or a tensor; got {spec!r}")
    if isinstance(spec, (int, float)):
        return float(spec)
    return check_choice("baseline", spec, ("black", "white", "mean"))


def resolve_baseline(spec: BaselineSpec, images: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """The baseline image(s) for ``images`` in [0,1] pixel space.

    ``'black'`` = 0, ``'white'`` = 1, ``'mean'`` = zero in the model's
    normalised space (:func:`fisherattr.models.normalized_zero`), a number =
    a constant image, a tensor = broadcast to ``images``' shape.
    """
    if isinstance(spec, torch.Tensor):
        b = spec.detach().to(images)
        try:
            return b.expand_as(images).clone()
        except RuntimeError:
            raise UsageError(f"baseline of shape {tuple(spec.shape)} does not broadcast to the images' "
                             f"shape {tuple(images.shape)}") from None
    if isinstance(spec, float):
        return torch.full_like(images, spec)
    if spec == "black":
        return torch.zeros_like(images)
    if spec == "white":
        return torch.ones_like(images)
    return normalized_zero(model, images)


class ScoreFunction:
    """The scalar a path method integrates, with its gradient.

    ``kind='logit'`` is the target's logit, ``'probability'`` its softmax
    probability. Calling it on points ``[K, B', C, H, W]`` (K points for each of
    B' images; ``rows`` says which images of the batch, default all) returns
    values ``[K, B']`` and gradients ``[K, B', C, H, W]``, running the model on
    at most ``batch_size`` inputs at a time. ``calls`` counts model calls.

    Example:
        >>> f = ScoreFunction(model, target=torch.tensor([3]), kind="probability")  # doctest: +SKIP
        >>> values, grads = f(torch.rand(5, 1, 3, 16, 16))                           # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, target: torch.Tensor, kind: str = "logit", batch_size: int = 16) -> None:
        self.model = model
        self.target = target.long().reshape(-1)
        self.kind = check_choice("score", kind, SCORES)
        self.batch_size = check_positive_int("internal_batch_size", batch_size)
        self.calls = 0

    def values(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        out = logits.log_softmax(1).exp() if self.kind == "probability" else logits
        return out.gather(1, target[:, None]).squeeze(1)

    def __call__(self, points: torch.Tensor, rows: Optional[torch.Tensor] = None):
        k, b = points.shape[:2]
        tgt = self.target if rows is None else self.target[rows]
        flat = points.reshape(k * b, *points.shape[2:])
        t = tgt.repeat(k)
        vals, grads = [], []
        for i in range(0, k * b, self.batch_size):
            xi = flat[i:i + self.batch_size].detach().requires_grad_(True)
            with torch.enable_grad():
                v = self.values(self.model(xi), t[i:i + self.batch_size])
                (g,) = torch.autograd.grad(v.sum(), xi)
            self.calls += 1
            vals.append(v.detach())
            grads.append(g.detach())
        return torch.cat(vals).view(k, b), torch.cat(grads).view(k, b, *points.shape[2:])


@dataclass
class Segment:
    """One step of a path, for a batch of B images.

    Attributes:
        start, end: the step's end points ``[B,C,H,W]``.
        f_start, f_end: the score at them ``[B]``.
        g_start, g_end: the score's gradient at them ``[B,C,H,W]``.
        delta: the path's displacement over the step (usually ``end - start``;
            Blur IG uses the finite-difference tangent of its paper).
        anchor: which end's gradient the path pairs with ``delta``
            (``'start'`` or ``'end'``); the Riemann and IDGI rules use it.
    """

    start: torch.Tensor
    end: torch.Tensor
    f_start: torch.Tensor
    f_end: torch.Tensor
    g_start: torch.Tensor
    g_end: torch.Tensor
    delta: torch.Tensor
    anchor: str = "start"

    @property
    def grad(self) -> torch.Tensor:
        return self.g_start if self.anchor == "start" else self.g_end


class Path(ABC):
    """A path from a start point to the image, walked for a batch of images.

    Subclasses implement :meth:`segments`, yielding one :class:`Segment` per
    step in order from the start point to the image; they evaluate points
    only through ``score`` (so that ``internal_batch_size`` bounds memory) and
    should evaluate each point once.

    Example (a two-step straight path from black):
        >>> class TwoSteps(Path):
        ...     def segments(self, images, score, progress=False):
        ...         pts = torch.stack([images * 0, images * 0.5, images])
        ...         f, g = score(pts)
        ...         for j in range(2):
        ...             yield Segment(pts[j], pts[j + 1], f[j], f[j + 1], g[j], g[j + 1],
        ...                           pts[j + 1] - pts[j])
    """

    @abstractmethod
    def segments(self, images: torch.Tensor, score: ScoreFunction, progress: bool = False) -> Iterator[Segment]:
        """Walk the path for ``images`` ``[B,C,H,W]``; yield its segments in order."""


class Rule(ABC):
    """Turns one :class:`Segment` into an attribution increment ``[B,C,H,W]``."""

    name: str = "rule"

    def begin(self) -> None:
        """Called by :func:`integrate` before the first segment of a path (rules with state reset here)."""

    @abstractmethod
    def __call__(self, seg: Segment) -> torch.Tensor:
        """The increment for ``seg``."""


class Riemann(Rule):
    """``g * delta`` with the gradient the path pairs with the step."""

    name = "riemann"

    def __call__(self, seg: Segment) -> torch.Tensor:
        return seg.grad * seg.delta


class Trapezoid(Rule):
    """``(g_start + g_end) / 2 * delta``."""

    name = "trapezoid"

    def __call__(self, seg: Segment) -> torch.Tensor:
        return 0.5 * (seg.g_start + seg.g_end) * seg.delta


class PointAverage(Rule):
    """PAIR ``saliency``'s IG sum: the mean gradient over all ``steps + 1`` points (both ends) times the
    total displacement, ``sum_j g_j * delta * steps / (steps + 1)`` for a path of equal steps ``delta``.

    Example:
        >>> rule = PointAverage(steps=4)     # 5 points, each weighted 1/5 of the whole path
    """

    name = "points"

    def __init__(self, steps: int) -> None:
        self.weight = steps / (steps + 1.0)
        self._first = True

    def begin(self) -> None:
        self._first = True

    def __call__(self, seg: Segment) -> torch.Tensor:
        g = seg.g_end + seg.g_start if self._first else seg.g_end
        self._first = False
        return self.weight * g * seg.delta


class IDGI(Rule):
    """Important-direction rule: ``g*g * (f_end - f_start) / (g . g)``.

    The step's change of score is shared out in proportion to the squared
    gradient; a zero gradient contributes nothing. Computed with the gradient
    scaled by its maximum so that tiny gradients (saturated probabilities) do
    not underflow.
    """

    name = "idgi"

    def __call__(self, seg: Segment) -> torch.Tensor:
        g = seg.grad
        view = (-1,) + (1,) * (g.dim() - 1)
        gmax = g.abs().flatten(1).amax(1)
        gn = g / torch.where(gmax > 0, gmax, torch.ones_like(gmax)).view(view)
        w = gn * gn
        norm = w.flatten(1).sum(1)
        df = seg.f_end - seg.f_start
        scale = torch.where(norm > 0, df / torch.where(norm > 0, norm, torch.ones_like(norm)), torch.zeros_like(df))
        return w * scale.view(view)


RULES = {"riemann": Riemann, "trapezoid": Trapezoid, "idgi": IDGI}


def make_rule(rule: Union[str, Rule]) -> Rule:
    """A :class:`Rule` from its name (``'riemann'``, ``'trapezoid'``, ``'idgi'``) or itself."""
    if isinstance(rule, Rule):
        return rule
    return RULES[check_choice("rule", rule, tuple(RULES))]()


def integrate(path: Path, rule: Rule, images: torch.Tensor, score: ScoreFunction,
              progress: bool = False) -> torch.Tensor:
    """Sum ``rule`` over the segments of ``path`` for ``images`` (accumulated in float64)."""
    total = torch.zeros(images.shape, dtype=torch.float64, device=images.device)
    rule.begin()
    for seg in path.segments(images, score, progress=progress):
        total += rule(seg).double()
    return total.to(images.dtype)
