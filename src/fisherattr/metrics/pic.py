"""AIC / SIC: performance information curves (Kapishnikov 2019; IDGI; docs/evaluation.md).

``reference="interp"`` (default) follows PAIR ``saliency`` 0.2.1
``compute_pic_metric`` (the XRAI authors' code) step by step:

- the image is taken as 8 bits (``round(255 x)``), as PAIR requires; every
  image passed to the model is an 8-bit image divided by 255;
- a random pixel mask keeps ``int(fraction * H * W)`` pixels (fraction 1%,
  seeded per image: :func:`random_pixel_mask`);
- every *bokeh* image, including the fully blurred reference, is re-interpolated
  from the kept pixels (:func:`interpolated_image`: the kept pixels plus the
  four corners are exact, the rest is :func:`scipy.interpolate.griddata` linear,
  the mean colour of the whole image outside the hull, rounded to 8 bits). The
  kept pixels at threshold ``t`` are the pixels whose channel-summed map value
  is ``>=`` the ``1 - t`` quantile (ties included) **united with** the random
  mask. Pasting sharp pixels into a fixed blurred image (this module before
  issue 17) made the WebP size saturate early and collapsed the curves.

``reference="gaussian"`` (IDGI's preset: PIL Gaussian blur, radius 20) and a
callable reference ``[H,W,3] -> [H,W,3]`` instead paste the top-ranked pixels
(rank order, ties by index, ``round(t * H * W)`` of them) onto the fixed
reference, in floating point.

Each bokeh image gets

- an information level: ``"entropy"`` = lossless WebP size, normalised between
  the reference (0) and the original (1), clipped to [0,1]; or ``"msssim"`` =
  MS-SSIM to the original normalised the same way (IDGI's variant); or any
  callable ``f(bokeh, original, reference) -> float`` (arrays ``[H,W,3]`` in [0,1]);
- a performance: SIC = target softmax probability normalised between the
  reference (0) and the original (1), clipped; AIC = 1 if top-1 is the target.

Curve of one image (:func:`pic_curve`, as PAIR): running maximum of the
performance *in threshold order*, points (info_k, max_k) plus (0,0) and (1,1),
sorted by info (stable), linear interpolation at ``n_points`` (1001) evenly
spaced levels ``k/1000``. Over images: median (SIC) or mean (AIC) of the
interpolated curves; AUC by trapezoid. Skips, counted by reason: prediction
below ``min_confidence`` (0.8) or not the target; reference not strictly less
informative than the original; for SIC a reference not strictly less
confident, for AIC a reference still classified as the target.

Example:
    >>> import numpy as np
    >>> m = random_pixel_mask(8, 8, fraction=0.1, seed=0)
    >>> int(m.sum())
    6
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
def random_pixel_mask(height: int, width: int, fraction: float = 0.01, seed: int = 0) -> np.ndarray:
    """``[H,W]`` bool mask with ``int(fraction * H * W)`` random pixels set (PAIR's count), seeded."""
    n = int(height * width * fraction)
    mask = np.zeros(height * width, dtype=bool)
    mask[np.random.default_rng(int(seed)).choice(height * width, size=n, replace=False)] = True
    return mask.reshape(height, width)


def interpolated_image(image: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Re-interpolate ``image`` ``[H,W,C]`` from the pixels in ``keep`` ``[H,W]`` (PAIR's ``create_blurred_image``).

    The kept pixels and the four corners are copied; the others are filled
    by linear interpolation (Delaunay, :func:`scipy.interpolate.griddata`)
    and, outside the hull, by the mean colour of the whole image. A uint8
    image gives a uint8 result (rounded); a float image a float64 one.

    Example:
        >>> im = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
        >>> bool((interpolated_image(im, np.zeros((2, 2), bool)) == im).all())   # corners only
        True
    """
    h, w, c = image.shape
    keep = np.array(keep, dtype=bool, copy=True)
    keep[[0, 0, h - 1, h - 1], [0, w - 1, 0, w - 1]] = True
    if keep.all():
        return image.copy()
    pts, unknown = np.argwhere(keep), np.argwhere(~keep)
    vals = image[keep].astype(np.float64)
    out = image.astype(np.float32 if image.dtype == np.uint8 else np.float64)
    mean = image.reshape(-1, c).astype(np.float64).mean(0)
    for ch in range(c):
        out[unknown[:, 0], unknown[:, 1], ch] = griddata(pts, vals[:, ch], unknown, method="linear",
                                                         fill_value=mean[ch])
    if image.dtype == np.uint8:
        return np.round(out).astype(np.uint8)
    return out


def interpolated_reference(image: np.ndarray, fraction: float = 0.01, seed: int = 0) -> np.ndarray:
    """The fully blurred image of ``reference="interp"``: :func:`interpolated_image` from a random mask."""
    h, w, _ = image.shape
    return interpolated_image(np.asarray(image), random_pixel_mask(h, w, fraction, seed))


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
N_POINTS = 1001


def pic_curve(info: Sequence[float], perf: Sequence[float], n_points: int = N_POINTS) -> np.ndarray:
    """One image's curve at ``n_points`` evenly spaced levels in [0,1], as PAIR builds it.

    ``info``/``perf`` are given in threshold order: the running maximum of the
    performance is taken in that order, then (0,0) and (1,1) are added, the
    points sorted by info (stable) and linearly interpolated.

    Example:
        >>> c = pic_curve([0.2, 0.6], [0.5, 0.3], n_points=5)   # levels 0, .25, .5, .75, 1
        >>> [round(float(v), 3) for v in c]
        [0.0, 0.5, 0.5, 0.688, 1.0]
    """
    x = np.concatenate([np.asarray(info, np.float64), [0.0, 1.0]])
    y = np.concatenate([np.maximum.accumulate(np.asarray(perf, np.float64)), [0.0, 1.0]])
    order = np.argsort(x, kind="stable")
    return np.interp(np.linspace(0.0, 1.0, n_points), x[order], y[order])


def aggregate_curves(curves: Sequence[np.ndarray], how: str = "median", n_points: int = N_POINTS) -> np.ndarray:
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
        thresholds: Sequence[float] = THRESHOLDS, min_confidence: float = 0.8, n_points: int = N_POINTS,
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
        if reference == "interp":
            orig, ref, bokeh = _interp_bokeh(orig, maps[i].double().numpy().reshape(h, w), ths, seed + i)
        else:
            ref = np.asarray(reference(orig), dtype=np.float64) if callable(reference) else gaussian_reference(orig)
            bokeh = _pasted_bokeh(orig, ref, maps[i], ths)
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


def _interp_bokeh(orig: np.ndarray, smap: np.ndarray, ths: Sequence[float], seed: int):
    """PAIR's images: (original, fully blurred, bokeh per threshold), 8-bit values in [0,1]."""
    img = to_uint8(orig)
    h, w, _ = img.shape
    rmask = random_pixel_mask(h, w, 0.01, seed)
    ref = interpolated_image(img, rmask)
    bokeh = [interpolated_image(img, (smap >= np.quantile(smap, 1.0 - th)) | rmask) for th in ths]
    return img / 255.0, ref / 255.0, [bk / 255.0 for bk in bokeh]


def _pasted_bokeh(orig: np.ndarray, ref: np.ndarray, smap: torch.Tensor, ths: Sequence[float]):
    """The top-ranked ``round(t*H*W)`` pixels (ties by index) pasted onto the fixed reference."""
    h, w, _ = orig.shape
    order = rank_desc(smap)
    out = []
    for th in ths:
        keep = np.zeros(h * w, dtype=bool)
        keep[order[: int(round(th * h * w))].numpy()] = True
        out.append(np.where(keep.reshape(h, w, 1), orig, ref))
    return out
