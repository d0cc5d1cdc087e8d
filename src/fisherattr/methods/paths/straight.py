"""The straight-line path of Integrated Gradients (Sundararajan 2017)."""
from __future__ import annotations

from typing import Iterator

import torch
from tqdm.auto import tqdm

from .core import BaselineSpec, Path, ScoreFunction, Segment, check_baseline, check_choice, \
    check_positive_int, resolve_baseline


class StraightLinePath(Path):
    """``x(alpha) = x' + alpha * (x - x')`` at ``alpha = j / steps``, ``j = 0..steps``.

    All ``steps + 1`` points are evaluated (score and gradient), batched over
    path points: ``max(1, batch_size // B)`` points per model call.
    ``anchor='start'`` pairs each step with the gradient at its start (the
    left Riemann sum, Captum's ``riemann_left``), ``'end'`` with its end
    (``riemann_right``).

    Example:
        >>> path = StraightLinePath(steps=50, baseline="black")
        >>> # integrate(path, Riemann(), images, ScoreFunction(model, target))
    """

    def __init__(self, steps: int = 200, baseline: BaselineSpec = "black", anchor: str = "start") -> None:
        self.steps = check_positive_int("steps", steps)
        self.baseline = check_baseline(baseline)
        self.anchor = check_choice("anchor", anchor, ("start", "end"))

    def alphas(self) -> torch.Tensor:
        return torch.arange(self.steps + 1, dtype=torch.float64) / self.steps

    def segments(self, images: torch.Tensor, score: ScoreFunction, progress: bool = False) -> Iterator[Segment]:
        base = resolve_baseline(self.baseline, images, score.model)
        diff = images - base
        delta = diff / self.steps
        alphas = self.alphas().tolist()
        per_call = max(1, score.batch_size // images.shape[0])
        prev = None  # (point, value, grad) of the last point evaluated
        bar = tqdm(total=len(alphas), desc="path", disable=not progress, leave=False)
        for c in range(0, len(alphas), per_call):
            chunk = alphas[c:c + per_call]
            pts = torch.stack([base + a * diff for a in chunk])
            f, g = score(pts)
            bar.update(len(chunk))
            for i in range(len(chunk)):
                if prev is not None:
                    yield Segment(prev[0], pts[i], prev[1], f[i], prev[2], g[i], delta, self.anchor)
                prev = (pts[i], f[i], g[i])
        bar.close()
