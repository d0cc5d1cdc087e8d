"""The Guided IG path (Kapishnikov et al. 2021): an adaptive path that moves the
features with the smallest gradient first."""
from __future__ import annotations

from typing import Iterator

import torch
from tqdm.auto import tqdm

from ...errors import UsageError
from .core import BaselineSpec, Path, ScoreFunction, Segment, check_baseline, check_choice, check_positive_int, \
    resolve_baseline

#: Which features a round may move: the ``fraction`` of all features (the authors' code) or of the remaining ones.
SELECTIONS = ("all", "remaining")


def _l1(t: torch.Tensor) -> torch.Tensor:
    return t.abs().flatten(1).sum(1)


class GuidedIGPath(Path):
    """Guided IG: per step, move the lowest-|gradient| features towards the image.

    Step ``k`` (of ``steps``) must bring the L1 distance to the image down to
    ``(1 - k/steps)`` of its start value. Every feature stays within
    ``alpha in [k/steps - max_dist, k/steps + max_dist]`` of the straight line
    (features that fall behind are pulled up to the lower edge). Repeatedly,
    the ``fraction`` of the remaining features (those not yet at the upper
    edge) with the smallest ``|gradient|`` at the step's start point move to
    the upper edge, the last group only as far as needed. The gradient is
    not re-evaluated inside a step. Batched over images (the path is
    sequential in k); ``steps + 1`` points are evaluated.

    ``selection='all'`` (default) is the authors' rule (PAIR ``saliency``
    0.2.1 ``guided_ig_impl``): features that cannot move count as ``+inf``
    and the threshold is the ``fraction`` quantile (``'lower'``) of *all*
    features' ``|gradient|``, so late in a step a round may take every
    remaining feature. ``'remaining'`` takes the fraction of the features
    still free (METHODS.md's wording; this library's rule before issue 17).

    Example:
        >>> path = GuidedIGPath(steps=200, fraction=0.25, max_dist=0.02)
    """

    def __init__(self, steps: int = 200, fraction: float = 0.25, max_dist: float = 0.02,
                 baseline: BaselineSpec = "black", selection: str = "all") -> None:
        self.steps = check_positive_int("steps", steps)
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
            raise UsageError(f"fraction must be a number in (0, 1]; got {fraction!r}")
        if isinstance(max_dist, bool) or not isinstance(max_dist, (int, float)) or not 0 <= max_dist <= 1:
            raise UsageError(f"max_dist must be a number in [0, 1]; got {max_dist!r}")
        self.fraction = float(fraction)
        self.max_dist = float(max_dist)
        self.baseline = check_baseline(baseline)
        self.selection = check_choice("selection", selection, SELECTIONS)

    def _select(self, absg: torch.Tensor, free: torch.Tensor) -> torch.Tensor:
        """Per image: the free features with |g| at most the threshold of :attr:`selection` (ties included)."""
        if self.selection == "all":
            key = torch.where(free, absg, torch.full_like(absg, float("inf")))
            k = int(self.fraction * (key.shape[1] - 1)) + 1     # numpy quantile, method='lower'
            thr = key.kthvalue(k, dim=1).values
            return free & (key <= thr[:, None])
        sel = torch.zeros_like(free)
        for b in range(absg.shape[0]):
            vals = absg[b][free[b]]
            if vals.numel() == 0:
                continue
            k = int(self.fraction * (vals.numel() - 1)) + 1
            thr = vals.kthvalue(k).values
            sel[b] = free[b] & (absg[b] <= thr)
        return sel

    def segments(self, images: torch.Tensor, score: ScoreFunction, progress: bool = False) -> Iterator[Segment]:
        shape = images.shape
        x_in = images.flatten(1)
        x_base = resolve_baseline(self.baseline, images, score.model).flatten(1)
        total = x_in - x_base
        moving = total != 0
        l1_total = _l1(total)
        tol = 1e-6 * l1_total
        x = x_base.clone()
        f, g = score(x.view(1, *shape))
        f, g = f[0], g[0]
        for step in tqdm(range(self.steps), desc="guided path", disable=not progress, leave=False):
            x_old = x.clone()
            absg = g.flatten(1).abs()
            alpha = (step + 1) / self.steps
            a_min, a_max = max(alpha - self.max_dist, 0.0), min(alpha + self.max_dist, 1.0)
            x_min, x_max = x_base + a_min * total, x_base + a_max * total
            l1_target = l1_total * (1 - alpha)
            pending = l1_total > 0
            while True:
                frac = torch.where(moving, (x - x_base) / torch.where(moving, total, torch.ones_like(total)),
                                   torch.full_like(x, a_max))
                x = torch.where(frac < a_min, x_min, x)
                gap = _l1(x - x_in) - l1_target
                pending = pending & (gap > tol)
                if not pending.any():
                    break
                free = moving & (x != x_max) & pending[:, None]
                sel = self._select(absg, free)
                l1_s = (x - x_max).abs().mul(sel).sum(1)
                gamma = torch.where(l1_s > 0, gap / torch.where(l1_s > 0, l1_s, torch.ones_like(l1_s)),
                                    torch.full_like(gap, float("inf")))
                full = gamma > 1
                partial_x = x + gamma.clamp(max=1.0)[:, None] * (x_max - x)
                x = torch.where(sel & full[:, None], x_max, torch.where(sel, partial_x, x))
                # a partial move closes the gap; no selectable feature means no progress is possible
                pending = pending & full & (l1_s > 0)
            if step == self.steps - 1:
                x = x_in.clone()
            f_new, g_new = score(x.view(1, *shape))
            f_new, g_new = f_new[0], g_new[0]
            yield Segment(x_old.view(shape), x.view(shape), f, f_new, g, g_new, (x - x_old).view(shape), "start")
            f, g = f_new, g_new
