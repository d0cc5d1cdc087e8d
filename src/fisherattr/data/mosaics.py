"""2x2 (or rows x cols) mosaics for the grid pointing game (Boehle 2021, Rao 2022).

From any list of samples: classify each image alone, keep those classified
with probability >= ``threshold`` (confident; default 0.25 because ImageNet
models spread probability over near-synonym classes: EfficientNet-Lite0 gives
the shipped cat photo 0.39 for "Egyptian cat"), and build each mosaic from
images of *distinct* predicted classes, chosen with a ``numpy`` generator
seeded by ``seed`` (the same samples, model and seed give the same mosaics).
Each image is shrunk to its cell (bilinear, antialiased) and the cells are
tiled row-major; a :class:`MosaicSample` records each cell's class.

Example:
    >>> ms = build_mosaics(model, samples, n=2, seed=0)     # doctest: +SKIP
    >>> ms[0].cells, ms[0].grid                              # doctest: +SKIP
    ([285, 967, 812, 834], (2, 2))
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UsageError
from .dataset import Sample


@dataclass
class MosaicSample(Sample):
    """A mosaic: ``cells[k]`` is the class of cell ``k`` (row-major), ``sources[k]`` its image's name."""

    cells: List[int] = field(default_factory=list)
    grid: Tuple[int, int] = (2, 2)
    sources: List[str] = field(default_factory=list)


def classify(model: nn.Module, samples: List[Sample], batch_size: int = 16) -> Tuple[torch.Tensor, torch.Tensor]:
    """(top-1 class, its probability) of each sample's image alone."""
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    cls, prob = [], []
    with torch.no_grad():
        for i in range(0, len(samples), batch_size):
            x = torch.cat([s.image for s in samples[i:i + batch_size]]).to(dev)
            p = model(x).float().softmax(1).cpu()
            v, k = p.max(1)
            cls.append(k)
            prob.append(v)
    return torch.cat(cls), torch.cat(prob)


def tile(images: List[torch.Tensor], grid: Tuple[int, int], size: Tuple[int, int]) -> torch.Tensor:
    """Shrink ``rows*cols`` images ``[1,3,h,w]`` to their cells and tile them into ``[1,3,H,W]``."""
    rows, cols = grid
    h, w = size
    out = torch.zeros(1, 3, h, w)
    for k, img in enumerate(images):
        r, c = divmod(k, cols)
        y0, y1 = r * h // rows, (r + 1) * h // rows
        x0, x1 = c * w // cols, (c + 1) * w // cols
        out[..., y0:y1, x0:x1] = F.interpolate(img.float(), size=(y1 - y0, x1 - x0), mode="bilinear",
                                               align_corners=False, antialias=True).clamp(0, 1)
    return out


def build_mosaics(model: nn.Module, samples: List[Sample], n: Optional[int] = None, grid: Tuple[int, int] = (2, 2),
                  threshold: float = 0.25, seed: int = 0, size: Optional[Tuple[int, int]] = None) -> List[MosaicSample]:
    """Up to ``n`` mosaics (default: one per ``rows*cols`` confident images, at least 1 if possible).

    Returns fewer (possibly none) when there are not ``rows*cols`` confident images of distinct classes.
    """
    rows, cols = grid
    k = rows * cols
    if k < 2:
        raise UsageError(f"a mosaic needs at least 2 cells, got grid {grid}")
    if not samples:
        return []
    cls, prob = classify(model, samples)
    by_class: dict = {}
    for i, (c, p) in enumerate(zip(cls.tolist(), prob.tolist())):
        if p >= threshold:
            by_class.setdefault(c, []).append(i)
    if len(by_class) < k:
        return []
    confident = sum(len(v) for v in by_class.values())
    n = max(1, confident // k) if n is None else int(n)
    size = size or tuple(samples[0].image.shape[-2:])
    rng = np.random.default_rng(int(seed))
    classes = sorted(by_class)
    out: List[MosaicSample] = []
    seen = set()
    for _ in range(n * 20):  # bounded number of draws; duplicates are skipped
        if len(out) >= n:
            break
        chosen = [classes[j] for j in rng.choice(len(classes), size=k, replace=False)]
        picks = tuple(by_class[c][int(rng.integers(len(by_class[c])))] for c in chosen)
        if picks in seen:
            continue
        seen.add(picks)
        image = tile([samples[i].image for i in picks], grid, size)
        out.append(MosaicSample(name=f"mosaic-{len(out):03d}", image=image, cells=chosen, grid=(rows, cols),
                                sources=[samples[i].name for i in picks]))
    return out
