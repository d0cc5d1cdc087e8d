"""AIC / SIC: performance information curves (Kapishnikov 2019; IDGI; EVALUATION.md).

For each image: a blurred *reference* (``"interp"``: keep a random 1% of the
pixels plus the four corners, fill the rest by linear interpolation with
:func:`scipy.interpolate.griddata`, mean colour of the kept pixels outside
their hull; ``"gaussian"``: PIL Gaussian blur of radius 20, IDGI's preset).
For each threshold (fraction of pixels kept) the *bokeh* image is the
reference with the top-ranked pixels (channel-summed map, ties by index)
restored (``reference`` may also be a callable ``[H,W,3] -> [H,W,3]``). Each bokeh image gets

- an information level: ``"entropy"`` = lossless WebP size, normalised between
  the reference (0) and the original (1), clipped to [0,1]; or ``"msssim"`` =
  MS-SSIM to the original normalised the same way (IDGI's variant); or any
  callable ``f(bokeh, original, reference) -> float`` (arrays ``[H,W,3]`` in [0,1]);
- a performance: SIC = target softmax probability normalised between the
  reference (0) and the original (1), clipped; AIC = 1 if top-1 is the target.

Curve of one image: points (0,0), (info_k, perf_k), (1,1) sorted by info
(stable), made monotone by a running maximum, linearly interpolated at
``n_points`` (1000) evenly spaced levels. Over images: median (SIC) or mean
(AIC) of the interpolated curves; AUC by trapezoid. Skips, counted by reason:
prediction below ``min_confidence`` (0.8) or not the target; reference not
strictly less informative than the original; for SIC a reference not strictly
less confident, for AIC a reference still classified as the target.
"""
from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
from PIL import Image, ImageFilter
from scipy.interpolate import griddata
from scipy.ndimage import gaussian_filter

from ..errors import UsageError
from ..methods.base import Target
from .common import Scorer, as_batch, pixel_map, rank_desc, targets_for, trapezoid

THRESHOLDS = (0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.07, 0.10, 0.13, 0.21, 0.34, 0.5, 0.75)
REFERENCES = ("interp", "gaussian")
INFORMATION = ("entropy", "msssim")
InfoFn = Callable[[np.ndarray, np.ndarray, np.ndarray], float]


# ------------------------------------------------------------------ references
def interpolated_reference(image: np.ndarray, fraction: float = 0.01, seed: int = 0) -> np.ndarray:
    """Keep ``fraction`` of the pixels (random, seeded) plus the corners; linear fill in between."""
    h, w, c = image.shape
    rng = np.random.default_rng(int(seed))
    n = max(1, int(round(fraction * h * w)))
    idx = rng.choice(h * w, size=min(n, h * w), replace=False)
    corners = np.array([0, w - 1, (h - 1) * w, h * w - 1])
    idx = np.unique(np.concatenate([idx, corners]))
    pts = np.stack([idx // w, idx % w], axis=1).astype(np.float64)
    vals = image.reshape(-1, c)[idx].astype(np.float64)
    yy, xx = np.mgrid[0:h, 0:w]
    out = griddata(pts, vals, (yy, xx), method="linear", fill_value=np.nan)
    fill = vals.mean(axis=0)
    bad = np.isnan(out)
    out[bad] = np.broadcast_to(fill, out.shape)[bad]
    return np.clip(out, 0.0, 1.0)


def gaussian_reference(image: np.ndarray, radius: float = 20.0) -> np.ndarray:
    """PIL Gaussian blur (IDGI's reference) of a ``[H,W,3]`` image in [0,1]."""
    im = Image.fromarray(to_uint8(image)).filter(ImageFilter.GaussianBlur(radius=radius))
    return np.asarray(im, dtype=np.float64) / 255.0


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(image) * 255.0 + 0.5, 0, 255).astype(np.uint8)


# ----------------------------------------------------------- information level
def webp_size(image: np.ndarray) -> int:
    """Bytes of the lossless WebP encoding of a ``[H,W,3]`` image in [0,1] (the entropy proxy)."""
    buf = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buf, format="WEBP", lossless=True, quality=100, method=4)
    return len(buf.getvalue())


def _ssim_terms(a: np.ndarray, b: np.ndarray, sigma: float = 1.5):
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_a, mu_b = gaussian_filter(a, sigma), gaussian_filter(b, sigma)
    va = gaussian_filter(a * a, sigma) - mu_a ** 2
    vb = gaussian_filter(b * b, sigma) - mu_b ** 2
    cov = gaussian_filter(a * b, sigma) - mu_a * mu_b
    lum = (2 * mu_a * mu_b + c1) / (mu_a ** 2 + mu_b ** 2 + c1)
    cs = (2 * cov + c2) / (va + vb + c2)
    return float(np.mean(lum * cs)), float(np.mean(cs))


def ms_ssim(a: np.ndarray, b: np.ndarray, scales: int = 5) -> float:
    """Multi-scale SSIM (Wang 2003; weights 0.0448..0.1333) of two ``[H,W(,C)]`` images in [0,1].

    Per channel, averaged; 2x2 average pooling between scales; fewer scales for
    small images (at least 8 px at the coarsest); negative terms clipped to 0.
    """
    weights = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    m = 1
    while m < scales and min(a.shape[:2]) // (2 ** m) >= 8:
        m += 1
    w = weights[:m] / weights[:m].sum()
    vals = []
    for ch in range(a.shape[2]):
        x, y, total = a[..., ch], b[..., ch], 1.0
        for s in range(m):
            ssim, cs = _ssim_terms(x, y)
            total *= max(ssim if s == m - 1 else cs, 0.0) ** w[s]
            if s < m - 1:
                h2, w2 = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
                x = x[:h2, :w2].reshape(h2 // 2, 2, w2 // 2, 2).mean((1, 3))
                y = y[:h2, :w2].reshape(h2 // 2, 2, w2 // 2, 2).mean((1, 3))
        vals.append(total)
    return float(np.mean(vals))


def _normalised(v: float, lo: float, hi: float) -> float:
    return float(np.clip((v - lo) / (hi - lo), 0.0, 1.0))


# ------------------------------------------------------------------ the curve
def pic_curve(info: Sequence[float], perf: Sequence[float], n_points: int = 1000) -> np.ndarray:
    """One image's curve at ``n_points`` levels in [0,1]: add (0,0) and (1,1), sort by info
    (stable), running max of performance, linear interpolation.

    Example:
        >>> c = pic_curve([0.2, 0.6], [0.5, 0.3], n_points=5)   # levels 0, .25, .5, .75, 1
        >>> [round(float(v), 3) for v in c]
        [0.0, 0.5, 0.5, 0.688, 1.0]
    """
    x = np.concatenate([[0.0], np.asarray(info, np.float64), [1.0]])
    y = np.concatenate([[0.0], np.asarray(perf, np.float64), [1.0]])
    order = np.argsort(x, kind="stable")
    x, y = x[order], np.maximum.accumulate(y[order])
    return np.interp(np.linspace(0.0, 1.0, n_points), x, y)


def aggregate_curves(curves: Sequence[np.ndarray], how: str = "median", n_points: int = 1000) -> np.ndarray:
    """Pointwise median or mean of the finite per-image curves (NaN if there are none)."""
    arr = np.asarray([c for c in curves if c is not None and np.all(np.isfinite(c))], dtype=np.float64)
    if arr.size == 0:
        return np.full(n_points, np.nan)
    return np.median(arr, axis=0) if how == "median" else arr.mean(axis=0)


def curve_auc(curve: np.ndarray) -> float:
    """Trapezoid AUC of a curve sampled evenly on [0,1]."""
    return trapezoid(curve)


@dataclass
class PICResult:
    """Per-image raw points (``info`` [B,T], ``sic_points``/``aic_points`` [B,T]), skip reasons
    (None = used), interpolated curves (rows NaN when skipped), the aggregated ``sic_curve``
    (median) / ``aic_curve`` (mean) and their AUCs, and ``model_calls``."""

    thresholds: List[float]
    info: np.ndarray
    sic_points: np.ndarray
    aic_points: np.ndarray
    sic_skip: List[Optional[str]]
    aic_skip: List[Optional[str]]
    sic_curves: np.ndarray
    aic_curves: np.ndarray
    model_calls: int
    sic_curve: np.ndarray = field(default=None)
    aic_curve: np.ndarray = field(default=None)
    sic_auc: float = float("nan")
    aic_auc: float = float("nan")

    def skips(self) -> Dict[str, Dict[str, int]]:
        """Skipped images per reason, for SIC and AIC."""
        return {"sic": dict(Counter(r for r in self.sic_skip if r)),
                "aic": dict(Counter(r for r in self.aic_skip if r))}


def pic(model: nn.Module, images: torch.Tensor, attributions: torch.Tensor, target: Target = None,
        reference: Union[str, Callable[[np.ndarray], np.ndarray]] = "interp",
        information: Union[str, InfoFn] = "entropy",
        thresholds: Sequence[float] = THRESHOLDS, min_confidence: float = 0.8, n_points: int = 1000,
        batch_size: Optional[int] = None, seed: int = 0) -> PICResult:
    """AIC and SIC for a batch of images.

    Example:
        >>> r = pic(model, images, maps)              # doctest: +SKIP
        >>> r.sic_auc, r.aic_auc, r.skips()           # doctest: +SKIP
    """
    if not callable(reference) and reference not in REFERENCES:
        raise UsageError(f"reference must be one of {', '.join(REFERENCES)}, got {reference!r}")
    if not callable(information) and information not in INFORMATION:
        raise UsageError(f"information must be one of {', '.join(INFORMATION)} or a callable, got {information!r}")
    ths = [float(t) for t in thresholds]
    if not ths or min(ths) <= 0 or max(ths) >= 1:
        raise UsageError("thresholds must be fractions strictly between 0 and 1")
    images = images.detach().float().cpu()
    attr = as_batch(attributions, images)
    t = targets_for(model, images, target)
    scorer = Scorer(model, batch_size, "prob")
    b, (h, w) = images.shape[0], images.shape[-2:]
    info = np.full((b, len(ths)), np.nan)
    sic_pts, aic_pts = np.full_like(info, np.nan), np.full_like(info, np.nan)
    sic_skip: List[Optional[str]] = [None] * b
    aic_skip: List[Optional[str]] = [None] * b
    sic_curves, aic_curves = np.full((b, n_points), np.nan), np.full((b, n_points), np.nan)
    maps = pixel_map(attr, "sum").reshape(b, -1)
    for i in range(b):
        orig = images[i].permute(1, 2, 0).double().numpy()
        if callable(reference):
            ref = np.asarray(reference(orig), dtype=np.float64)
        else:
            ref = interpolated_reference(orig, seed=seed + i) if reference == "interp" else gaussian_reference(orig)
        order = rank_desc(maps[i])
        bokeh = []
        for th in ths:
            keep = np.zeros(h * w, dtype=bool)
            keep[order[: int(round(th * h * w))].numpy()] = True
            keep = keep.reshape(h, w, 1)
            bokeh.append(np.where(keep, orig, ref))
        stack = np.stack([ref] + bokeh + [orig])
        x = torch.from_numpy(stack).permute(0, 3, 1, 2).float()
        logits = scorer.logits(x)
        probs = logits.softmax(1)[:, int(t[i])].double().numpy()
        top1 = logits.argmax(1).numpy() == int(t[i])
        p_ref, p_orig = probs[0], probs[-1]
        if p_orig < min_confidence or not top1[-1]:
            sic_skip[i] = aic_skip[i] = f"prediction below {min_confidence:g} or not the target"
            continue
        if callable(information):
            levels = [float(information(bk, orig, ref)) for bk in bokeh]
        elif information == "entropy":
            s_ref, s_orig = webp_size(ref), webp_size(orig)
            if s_ref >= s_orig:
                sic_skip[i] = aic_skip[i] = "reference not less informative"
                continue
            levels = [_normalised(webp_size(bk), s_ref, s_orig) for bk in bokeh]
        else:
            m_ref = ms_ssim(ref, orig)
            if m_ref >= 1.0:
                sic_skip[i] = aic_skip[i] = "reference not less informative"
                continue
            levels = [_normalised(ms_ssim(bk, orig), m_ref, 1.0) for bk in bokeh]
        info[i] = levels
        if p_ref >= p_orig:
            sic_skip[i] = "reference not less confident"
        else:
            sic_pts[i] = [_normalised(p, p_ref, p_orig) for p in probs[1:-1]]
            sic_curves[i] = pic_curve(info[i], sic_pts[i], n_points)
        if top1[0]:
            aic_skip[i] = "reference still classified as the target"
        else:
            aic_pts[i] = top1[1:-1].astype(np.float64)
            aic_curves[i] = pic_curve(info[i], aic_pts[i], n_points)
    res = PICResult(ths, info, sic_pts, aic_pts, sic_skip, aic_skip, sic_curves, aic_curves, scorer.calls)
    res.sic_curve = aggregate_curves(list(sic_curves), "median", n_points)
    res.aic_curve = aggregate_curves(list(aic_curves), "mean", n_points)
    res.sic_auc, res.aic_auc = curve_auc(res.sic_curve), curve_auc(res.aic_curve)
    return res
