"""HSIC-Attribution (Novello, Fel, Vigouroux, NeurIPS 2022).

Black-box: draw ``designs`` binary masks on a ``grid x grid`` grid from a
quasi-Monte-Carlo design (scrambled Sobol by default, or Latin hypercube;
a cell is kept when its coordinate is < 0.5), upsample them (nearest) to the
image, perturb ``x * M`` (zero baseline in [0,1] pixel space), record the
target's score ``y``, and score each cell by the HSIC between its mask bit and
``y``:

- input kernel: Dirac on the bit, ``k(a, b) = 1[a == b]``;
- output kernel: RBF ``l(y, y') = exp(-(y - y')^2 / (2 w^2))`` with ``w`` the
  median of the ``n`` output values (linear-interpolated 50th percentile, as
  ``numpy.median``; Xplique's choice); if that is 0, the standard deviation;
- estimator: the biased HSIC ``tr(K H L H) / (n - 1)^2`` with
  ``H = I - 11^T/n``; for a Dirac kernel on a bit ``b`` this equals
  ``2 * c^T L c / (n - 1)^2`` with ``c = H b`` (computed for all cells at once).

The 7x7 scores are resized (bicubic) to the image.
"""
from __future__ import annotations

import warnings
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..errors import UsageError
from .base import AttributionMethod
from .iba import check_positive
from .registry import register

SAMPLERS = ("sobol", "lhs")
SCORES = ("prob", "logit")


def binary_designs(n: int, cells: int, sampler: str = "sobol", seed: int = 0) -> torch.Tensor:
    """``[n, cells]`` binary (0/1 float) designs from a seeded scipy QMC sampler, thresholded at 0.5."""
    from scipy.stats import qmc

    if sampler == "sobol":
        engine = qmc.Sobol(d=cells, scramble=True, seed=seed)
    elif sampler == "lhs":
        engine = qmc.LatinHypercube(d=cells, seed=seed)
    else:
        raise UsageError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Sobol warns when n is not a power of two
        u = engine.random(n)
    return torch.from_numpy((u < 0.5).astype(np.float32))


def rbf_median_gram(y: torch.Tensor) -> torch.Tensor:
    """``exp(-(y_i - y_j)^2 / (2 w^2))`` with ``w`` = median of ``y`` (std of ``y`` if the median is 0)."""
    y = y.double().reshape(-1)
    w = torch.quantile(y, 0.5).abs()
    if w <= 1e-12:
        w = y.std()
    if not torch.isfinite(w) or w <= 1e-12:
        w = torch.tensor(1.0, dtype=y.dtype, device=y.device)
    return torch.exp(-(y[:, None] - y[None, :]) ** 2 / (2 * w ** 2))


def hsic_dirac(bits: torch.Tensor, gram_y: torch.Tensor) -> torch.Tensor:
    """Biased HSIC ``tr(K H L H)/(n-1)^2`` per column of ``bits`` ``[n, d]`` with a Dirac input kernel."""
    n = bits.shape[0]
    c = bits.double() - bits.double().mean(0, keepdim=True)
    return 2.0 * ((gram_y.double() @ c) * c).sum(0) / (n - 1) ** 2


@register("hsic", "hsic-attribution")
class HSICAttribution(AttributionMethod):
    """HSIC-Attribution (Novello 2022): dependence between grid-cell masks and the output; [B,1,H,W].

    Args:
        grid_size: cells per side (paper: 7).
        designs: number of masks (paper: 1536).
        sampler: "sobol" (scrambled Sobol, default) or "lhs" (Latin hypercube), seeded by ``seed``.
        score: "prob" (softmax probability of the target, default) or "logit".
        internal_batch_size: masked images per model call (None: automatic, see :mod:`fisherattr.batching`).

    Example:
        >>> hsic = HSICAttribution(model, designs=1536)   # doctest: +SKIP
        >>> maps = hsic.attribute(x)                       # [B,1,H,W]  # doctest: +SKIP
    """

    per_pixel = True

    def __init__(self, model: nn.Module, *, grid_size: int = 7, designs: int = 1536, sampler: str = "sobol",
                 score: str = "prob", seed: int = 0, internal_batch_size: Optional[int] = None,
                 progress: bool = False) -> None:
        super().__init__(model, seed=seed, internal_batch_size=internal_batch_size, progress=progress)
        check_positive("grid_size", grid_size, integer=True)
        check_positive("designs", designs, integer=True)
        if designs < 4:
            raise UsageError(f"designs must be >= 4, got {designs}")
        if sampler not in SAMPLERS:
            raise UsageError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
        if score not in SCORES:
            raise UsageError(f"score must be one of {', '.join(SCORES)}, got {score!r}")
        self.grid_size, self.designs, self.sampler, self.score = int(grid_size), int(designs), sampler, score
        self._bits: Optional[torch.Tensor] = None

    def masks_low(self) -> torch.Tensor:
        """The ``[designs, 1, grid, grid]`` binary masks (same for every image and call)."""
        if self._bits is None:
            self._bits = binary_designs(self.designs, self.grid_size ** 2, self.sampler, self.seed)
        return self._bits.view(self.designs, 1, self.grid_size, self.grid_size)

    def _scores(self, x: torch.Tensor, t: int, low: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ys = []
        bs = self.forward_batch(x)
        for i in range(0, low.shape[0], bs):
            m = F.interpolate(low[i:i + bs].to(x), size=(h, w), mode="nearest")
            with torch.no_grad():
                logits = self.model(x * m)
            val = logits.softmax(1) if self.score == "prob" else logits
            ys.append(val[:, t])
        return torch.cat(ys)

    def _attribute(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        low = self.masks_low()
        bits = low.flatten(1)
        h, w = images.shape[-2:]
        out = []
        for b in tqdm(range(images.shape[0]), desc="hsic", disable=not self.progress):
            y = self._scores(images[b:b + 1], int(target[b]), low)
            s = hsic_dirac(bits.to(y.device), rbf_median_gram(y)).float()
            grid = s.view(1, 1, self.grid_size, self.grid_size)
            out.append(F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False))
        return torch.cat(out)
