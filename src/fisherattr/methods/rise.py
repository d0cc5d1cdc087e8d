"""RISE: Randomized Input Sampling for Explanation (Petsiuk, Das, Saenko, BMVC 2018).

``N`` random binary grids of ``s x s`` cells (each cell kept with probability
``p``) are upsampled (bilinear) to ``(s+1) * ceil(H/s)`` and cropped at a random
shift in ``[0, ceil(H/s))`` per axis, giving smooth masks ``M_n`` in [0,1]. The
saliency is ``sum_n f(x * M_n) * M_n / (N * p)`` with ``f`` the target's
softmax probability; masking is in [0,1] pixel space (zero = black).
Masks depend only on ``seed`` and the image size, so every image of a batch
sees the same masks (batch == single).
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..errors import UsageError
from .base import AttributionMethod
from .iba import check_positive
from .registry import register


class RiseMasks:
    """Seeded RISE masks, made chunk by chunk so that memory stays bounded.

    Example:
        >>> masks = RiseMasks(100, (32, 32), grid_size=7, p=0.5, generator=torch.Generator().manual_seed(0))
        >>> masks.chunk(0, 10).shape
        torch.Size([10, 1, 32, 32])
    """

    def __init__(self, n: int, size: Tuple[int, int], grid_size: int, p: float, generator: torch.Generator) -> None:
        self.n, self.size, self.grid_size, self.p = n, size, grid_size, p
        self.cell = (math.ceil(size[0] / grid_size), math.ceil(size[1] / grid_size))
        self.grid = (torch.rand(n, 1, grid_size, grid_size, generator=generator,
                                device=generator.device) < p).float()
        self.shift_y = torch.randint(0, self.cell[0], (n,), generator=generator, device=generator.device)
        self.shift_x = torch.randint(0, self.cell[1], (n,), generator=generator, device=generator.device)

    def chunk(self, start: int, stop: int) -> torch.Tensor:
        """Masks ``start..stop-1`` as ``[k,1,H,W]`` in [0,1]."""
        up = ((self.grid_size + 1) * self.cell[0], (self.grid_size + 1) * self.cell[1])
        big = F.interpolate(self.grid[start:stop], size=up, mode="bilinear", align_corners=False)
        h, w = self.size
        out = [big[i, :, int(sy):int(sy) + h, int(sx):int(sx) + w]
               for i, (sy, sx) in enumerate(zip(self.shift_y[start:stop], self.shift_x[start:stop]))]
        return torch.stack(out).clamp_(0, 1)


@register("rise")
class RISE(AttributionMethod):
    """RISE (Petsiuk 2018): probability-weighted average of random smooth masks; [B,1,H,W].

    Args:
        n_masks: number of masks N (paper: 4000 for ResNet-50 / 8000 for VGG16; default 4000).
        grid_size: cells per side s (paper: 7).
        p: probability of keeping a cell (paper: 0.5).
        internal_batch_size: masked images per model call (None: automatic, see :mod:`fisherattr.batching`).

    Example:
        >>> rise = RISE(model, n_masks=4000)   # doctest: +SKIP
        >>> maps = rise.attribute(x)           # [B,1,H,W]  # doctest: +SKIP
    """

    per_pixel = True

    def __init__(self, model: nn.Module, *, n_masks: int = 4000, grid_size: int = 7, p: float = 0.5,
                 seed: int = 0, internal_batch_size: Optional[int] = None, progress: bool = False) -> None:
        super().__init__(model, seed=seed, internal_batch_size=internal_batch_size, progress=progress)
        check_positive("n_masks", n_masks, integer=True)
        check_positive("grid_size", grid_size, integer=True)
        if not isinstance(p, (int, float)) or not 0 < p <= 1:
            raise UsageError(f"p must be in (0, 1], got {p!r}")
        self.n_masks, self.grid_size, self.p = int(n_masks), int(grid_size), float(p)

    def _attribute(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        size = (images.shape[-2], images.shape[-1])
        masks = RiseMasks(self.n_masks, size, self.grid_size, self.p, self.generator())
        sal = torch.zeros(images.shape[0], 1, *size, device=images.device, dtype=torch.float64)
        bs = self.forward_batch(images)
        steps = range(0, self.n_masks, bs)
        for start in tqdm(steps, desc="rise", disable=not self.progress):
            m = masks.chunk(start, start + bs).to(images)
            for b in range(images.shape[0]):
                with torch.no_grad():
                    prob = self.model(images[b:b + 1] * m).softmax(1)[:, target[b]]
                sal[b] += (prob.double()[:, None, None, None] * m.double()).sum(0)
        return (sal / (self.n_masks * self.p)).float()
