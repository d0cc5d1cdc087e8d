"""Localisation metrics against a ground-truth region (boxes or a mask; docs/evaluation.md).

Every function takes ``attributions`` ``[B,C,H,W]`` (or ``[B,1,H,W]``) and
``regions`` ``[B,H,W]`` bool and returns one score per image. Maps are
channel-summed; ``reduce`` chooses what counts as heat: ``"abs"`` (default,
signed methods such as IG count both signs), ``"positive"`` or ``"sum"`` (raw).

- :func:`ehr` effective heat ratio (Fisher paper): mean over quantiles
  q = 0, 0.1, ..., 1 of (heat >= q-th quantile inside the region) / (heat >= it).
- :func:`region_ratio` Box-Ratio / Segmentation-Ratio: fraction of the top-N
  features (channels separate; pixels for per-pixel maps) inside the region,
  N from MNIM.
- :func:`pointing_game` (Zhang 2018): 1 if the map's maximum (first in raster
  order on ties) is within ``tolerance`` pixels (15) of the region.
- :func:`wsl` weakly supervised localisation (IDGI Table 4): ROC-AUC of the
  map as a mask score (ranks, ties averaged), best F1 over all thresholds,
  and MAE of the min-max normalised map against the binary region.
"""
from __future__ import annotations

from typing import Dict, Sequence, Union

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt
from scipy.stats import rankdata

from ..errors import InputError, UsageError
from .common import pixel_map, rank_desc

QUANTILES = tuple(round(0.1 * k, 1) for k in range(11))


def _regions(regions: torch.Tensor, attributions: torch.Tensor) -> torch.Tensor:
    r = torch.as_tensor(regions).bool().cpu()
    if r.dim() == 2:
        r = r.unsqueeze(0)
    a = torch.as_tensor(attributions)
    if r.dim() != 3 or r.shape[0] != a.shape[0] or r.shape[-2:] != a.shape[-2:]:
        raise InputError(f"regions {tuple(r.shape)} do not match attributions {tuple(a.shape)}")
    return r


def _attr(attributions: torch.Tensor) -> torch.Tensor:
    a = torch.as_tensor(attributions).detach().float().cpu()
    if a.dim() == 3:
        a = a.unsqueeze(1)
    if a.dim() != 4:
        raise InputError(f"attributions must be [B,C,H,W]; got shape {tuple(a.shape)}")
    return a


def ehr(attributions: torch.Tensor, regions: torch.Tensor, quantiles: Sequence[float] = QUANTILES,
        reduce: str = "abs") -> torch.Tensor:
    """Effective heat ratio per image (1.0 when all heat lies in the region).

    Quantiles whose selected heat is zero are left out of the mean (NaN if all are).

    Example:
        >>> m = torch.zeros(1, 1, 4, 4); m[0, 0, :2] = 1
        >>> float(ehr(m, m[:, 0] > 0)[0])
        1.0
    """
    a = _attr(attributions)
    r = _regions(regions, a)
    maps = pixel_map(a, reduce)
    out = torch.full((a.shape[0],), float("nan"), dtype=torch.float64)
    for i in range(a.shape[0]):
        m, reg = maps[i].double().reshape(-1), r[i].reshape(-1)
        ratios = []
        for q in quantiles:
            sel = m >= torch.quantile(m, float(q))
            total = m[sel].sum()
            if total > 0:
                ratios.append(float(m[sel & reg].sum() / total))
        if ratios:
            out[i] = float(np.mean(ratios))
    return out


def region_ratio(attributions: torch.Tensor, regions: torch.Tensor,
                 n: Union[int, Sequence[int], torch.Tensor]) -> torch.Tensor:
    """Fraction of the top-``n`` ranked units (features, or pixels of a per-pixel map) in the region.

    ``n`` is one count for all images or one per image (e.g. ``MNIMResult.n``).

    Example:
        >>> m = torch.zeros(1, 3, 4, 4); m[0, :, 0, 0] = 1
        >>> float(region_ratio(m, torch.zeros(1, 4, 4, dtype=torch.bool), 3)[0])
        0.0
    """
    a = _attr(attributions)
    r = _regions(regions, a)
    b, c = a.shape[:2]
    ns = torch.as_tensor(n, dtype=torch.long).reshape(-1)
    ns = ns.expand(b) if ns.numel() == 1 else ns
    out = torch.zeros(b, dtype=torch.float64)
    for i in range(b):
        k = int(ns[i])
        if k < 1:
            raise UsageError(f"region_ratio needs n >= 1, got {k}")
        order = rank_desc(a[i].reshape(-1))[:k]
        inside = r[i].unsqueeze(0).expand(c, -1, -1).reshape(-1)
        out[i] = inside[order].double().mean()
    return out


def pointing_game(attributions: torch.Tensor, regions: torch.Tensor, tolerance: float = 15.0,
                  reduce: str = "sum") -> torch.Tensor:
    """1.0 for a hit (maximum within ``tolerance`` px of the region), else 0.0; NaN for empty regions.

    Example:
        >>> m = torch.zeros(1, 1, 40, 40); m[0, 0, 5, 5] = 1
        >>> reg = torch.zeros(1, 40, 40, dtype=torch.bool); reg[0, 30:, 30:] = True
        >>> float(pointing_game(m, reg)[0]), float(pointing_game(m, reg, tolerance=40)[0])
        (0.0, 1.0)
    """
    a = _attr(attributions)
    r = _regions(regions, a)
    maps = pixel_map(a, reduce)
    out = torch.full((a.shape[0],), float("nan"), dtype=torch.float64)
    for i in range(a.shape[0]):
        reg = r[i].numpy()
        if not reg.any():
            continue
        dist = distance_transform_edt(~reg)
        j = int(torch.argmax(maps[i].reshape(-1)))
        out[i] = float(dist.reshape(-1)[j] <= tolerance)
    return out


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC-AUC by the rank-sum (Mann-Whitney) formula, ties averaged; NaN if one class is absent."""
    s, y = np.asarray(scores, np.float64).ravel(), np.asarray(labels, bool).ravel()
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def best_f1(scores: np.ndarray, labels: np.ndarray) -> float:
    """Best F1 over all thresholds ``score >= t`` (t running over the distinct scores)."""
    s, y = np.asarray(scores, np.float64).ravel(), np.asarray(labels, bool).ravel()
    pos = int(y.sum())
    if pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s_sorted, tp = s[order], np.cumsum(y[order])
    last = np.r_[s_sorted[1:] != s_sorted[:-1], True]  # cut only after the last of equal scores
    k = np.arange(1, len(s) + 1)
    f1 = 2 * tp / (k + pos)
    return float(f1[last].max())


def wsl(attributions: torch.Tensor, regions: torch.Tensor, reduce: str = "abs") -> Dict[str, torch.Tensor]:
    """Weakly supervised localisation scores: ``{"auc": [B], "f1": [B], "mae": [B]}``.

    Example:
        >>> m = torch.zeros(1, 1, 4, 4); m[0, 0, :2] = 1
        >>> {k: float(v[0]) for k, v in wsl(m, m[:, 0] > 0).items()}
        {'auc': 1.0, 'f1': 1.0, 'mae': 0.0}
    """
    a = _attr(attributions)
    r = _regions(regions, a)
    maps = pixel_map(a, reduce)
    b = a.shape[0]
    out = {k: torch.full((b,), float("nan"), dtype=torch.float64) for k in ("auc", "f1", "mae")}
    for i in range(b):
        m, reg = maps[i].double().numpy(), r[i].numpy()
        lo, hi = m.min(), m.max()
        norm = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
        out["auc"][i] = roc_auc(m, reg)
        out["f1"][i] = best_f1(m, reg)
        out["mae"][i] = float(np.abs(norm - reg).mean())
    return out
