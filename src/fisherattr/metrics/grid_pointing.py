"""Grid pointing game (Boehle 2021, Rao 2022; docs/evaluation.md).

On a ``rows x cols`` mosaic of images of distinct classes, the attribution
towards the class of cell ``k`` should sit in cell ``k``:
``score = positive mass inside cell k / total positive mass`` (channel-summed
map; 0 if the map has no positive mass). Chance level is ``1/(rows*cols)``.
"""
from __future__ import annotations

from typing import Sequence, Tuple, Union

import torch

from ..errors import InputError
from .common import pixel_map


def cell_mask(height: int, width: int, cell: int, grid: Tuple[int, int] = (2, 2)) -> torch.Tensor:
    """``[H,W]`` bool mask of cell ``cell`` (row-major) of a ``grid`` mosaic.

    Example:
        >>> cell_mask(4, 4, 3).nonzero().tolist()
        [[2, 2], [2, 3], [3, 2], [3, 3]]
    """
    rows, cols = grid
    if not 0 <= cell < rows * cols:
        raise InputError(f"cell {cell} is outside a {rows}x{cols} grid")
    r, c = divmod(cell, cols)
    m = torch.zeros(height, width, dtype=torch.bool)
    y0, y1 = r * height // rows, (r + 1) * height // rows
    x0, x1 = c * width // cols, (c + 1) * width // cols
    m[y0:y1, x0:x1] = True
    return m


def grid_pointing(attributions: torch.Tensor, cells: Union[int, Sequence[int], torch.Tensor],
                  grid: Tuple[int, int] = (2, 2)) -> torch.Tensor:
    """Per map: positive mass inside its cell / total positive mass.

    ``attributions`` ``[B,C,H,W]``: map ``b`` explains the class of cell ``cells[b]``.

    Example:
        >>> a = torch.zeros(1, 1, 4, 4); a[0, 0, :2, :2] = 1
        >>> float(grid_pointing(a, [0])[0]), float(grid_pointing(a, [1])[0])
        (1.0, 0.0)
    """
    a = torch.as_tensor(attributions).detach().float().cpu()
    if a.dim() == 3:
        a = a.unsqueeze(1)
    if a.dim() != 4:
        raise InputError(f"attributions must be [B,C,H,W]; got shape {tuple(a.shape)}")
    b, h, w = a.shape[0], a.shape[2], a.shape[3]
    ks = torch.as_tensor(cells, dtype=torch.long).reshape(-1)
    ks = ks.expand(b) if ks.numel() == 1 else ks
    if ks.numel() != b:
        raise InputError(f"{ks.numel()} cells given for {b} maps")
    pos = pixel_map(a, "positive").double()
    out = torch.zeros(b, dtype=torch.float64)
    for i in range(b):
        total = pos[i].sum()
        if total > 0:
            out[i] = pos[i][cell_mask(h, w, int(ks[i]), grid)].sum() / total
    return out
