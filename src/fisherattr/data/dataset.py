"""The one record type every data source yields."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import torch

Box = Tuple[int, int, int, int]  # (x0, y0, x1, y1) in pixels of the loaded image, x1/y1 exclusive


@dataclass
class Sample:
    """One image with whatever ground truth its source has.

    Attributes:
        name: a short unique name (file stem, sample name, ``synthetic-000017``).
        image: ``[1,3,H,W]`` float in [0,1], already resized as the source was asked.
        label: the true class index, if known.
        mask: ``[H,W]`` bool object mask aligned with ``image``, if known.
        boxes: object boxes aligned with ``image`` (may be empty).

    Example:
        >>> s = Sample("x", torch.zeros(1, 3, 8, 8), label=3, boxes=[(0, 0, 4, 4)])
        >>> s.region().sum().item()
        16
    """

    name: str
    image: torch.Tensor
    label: Optional[int] = None
    mask: Optional[torch.Tensor] = None
    boxes: List[Box] = field(default_factory=list)

    def region(self) -> Optional[torch.Tensor]:
        """The ground-truth region as a ``[H,W]`` bool map: the mask, else the union of boxes, else None."""
        if self.mask is not None:
            return self.mask.bool()
        if not self.boxes:
            return None
        h, w = self.image.shape[-2:]
        out = torch.zeros(h, w, dtype=torch.bool)
        for x0, y0, x1, y1 in self.boxes:
            out[max(0, y0):min(h, y1), max(0, x0):min(w, x1)] = True
        return out
