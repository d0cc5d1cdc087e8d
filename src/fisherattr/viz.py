"""Heat maps, overlays and comparison grids for attribution maps (uint8 arrays, PNG files).

In the spirit of pytorch-grad-cam's ``show_cam_on_image``: reduce the map to
one value per pixel (channel sum), keep the sign you care about, normalise
robustly (divide by a high percentile instead of the maximum, so one hot pixel
does not wash out the rest), colour it, and alpha-blend it over the image.

Example:
    >>> import torch
    >>> img = torch.rand(3, 32, 32)
    >>> attr = torch.zeros(3, 32, 32); attr[:, :8, :8] = 1
    >>> out = overlay(img, attr)
    >>> out.shape, out.dtype.name
    ((32, 32, 3), 'uint8')
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # files only, never a window (set before pyplot is imported)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .io_utils import save_figure, save_png  # noqa: E402

SIGNS = ("absolute", "positive", "negative", "all")


def _to_numpy(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().float().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def to_hwc_image(image) -> np.ndarray:
    """An image as float ``[H,W,3]`` in [0,1].

    Tensors are channel-first (``[1,3,H,W]``, ``[3,H,W]``, in [0,1]); numpy
    arrays are ``[H,W,3]``/``[H,W]`` (uint8 is divided by 255) or channel-first.
    """
    is_tensor = hasattr(image, "detach")
    is_uint8 = not is_tensor and np.asarray(image).dtype == np.uint8
    a = _to_numpy(image)
    if a.ndim == 4:
        a = a[0]
    if a.ndim == 3 and (is_tensor or (a.shape[-1] not in (1, 3) and a.shape[0] in (1, 3))):
        a = a.transpose(1, 2, 0)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3):
        raise ValueError(f"cannot read an RGB image from shape {np.shape(image)}")
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    if is_uint8:
        a = a / 255.0
    return np.clip(a, 0.0, 1.0)


def heatmap(attribution, sign: str = "absolute", percentile: float = 99.0) -> np.ndarray:
    """One value per pixel in [0,1] (``sign='all'``: in [0,1] with 0.5 = zero attribution).

    ``attribution``: ``[C,H,W]``, ``[1,C,H,W]`` or ``[H,W]``; channels are summed.
    Values are divided by the ``percentile``-th percentile of the kept magnitudes
    and clipped (robust to a few extreme pixels).
    """
    if sign not in SIGNS:
        raise ValueError(f"sign must be one of {', '.join(SIGNS)}, got {sign!r}")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    a = _to_numpy(attribution)
    if a.ndim == 4:
        a = a[0]
    if a.ndim == 3:
        a = a.sum(axis=0)
    if a.ndim != 2:
        raise ValueError(f"attribution must be [C,H,W], [1,C,H,W] or [H,W]; got shape {a.shape}")
    a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    if sign == "absolute":
        a = np.abs(a)
    elif sign == "positive":
        a = np.maximum(a, 0.0)
    elif sign == "negative":
        a = np.maximum(-a, 0.0)
    scale = np.percentile(np.abs(a), percentile)
    if scale <= 0:
        scale = np.abs(a).max()
    if scale <= 0:
        return np.full(a.shape, 0.5 if sign == "all" else 0.0)
    if sign == "all":
        return np.clip(a / scale, -1.0, 1.0) * 0.5 + 0.5
    return np.clip(a / scale, 0.0, 1.0)


def colorize(values: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """Values in [0,1] ``[H,W]`` -> uint8 RGB ``[H,W,3]`` with a matplotlib colormap."""
    rgba = matplotlib.colormaps[cmap](np.clip(values, 0.0, 1.0))
    return (rgba[..., :3] * 255.0 + 0.5).astype(np.uint8)


def overlay(image, attribution, alpha: float = 0.5, cmap: Optional[str] = None, sign: str = "absolute",
            percentile: float = 99.0) -> np.ndarray:
    """Blend the heat map of ``attribution`` over ``image``: ``(1-alpha)*image + alpha*colour``, uint8 ``[H,W,3]``.

    ``cmap`` defaults to ``jet`` (``bwr`` for ``sign='all'``). The map must have
    the image's height and width.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0,1], got {alpha}")
    img = to_hwc_image(image)
    heat = heatmap(attribution, sign=sign, percentile=percentile)
    if heat.shape != img.shape[:2]:
        raise ValueError(f"attribution is {heat.shape[0]}x{heat.shape[1]} but the image is "
                         f"{img.shape[0]}x{img.shape[1]}")
    colour = colorize(heat, cmap or ("bwr" if sign == "all" else "jet")).astype(np.float64) / 255.0
    out = (1.0 - alpha) * img + alpha * colour
    return (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def image_uint8(image) -> np.ndarray:
    """An image (tensor or array) as uint8 ``[H,W,3]``."""
    return (to_hwc_image(image) * 255.0 + 0.5).astype(np.uint8)


def save_overlay(path: str | os.PathLike, image, attribution, **kwargs) -> Path:
    """:func:`overlay` written to a PNG file (atomically)."""
    return save_png(path, overlay(image, attribution, **kwargs))


def comparison_grid(images: Sequence, panels: Sequence[Sequence[Optional[np.ndarray]]],
                    column_titles: Sequence[str], row_titles: Optional[Sequence[str]] = None,
                    path: Optional[str | os.PathLike] = None, cell_inches: float = 2.0):
    """A figure with one row per image: the image, then one panel per column (method).

    ``panels[i][j]`` is a uint8 ``[H,W,3]`` overlay (e.g. from :func:`overlay`)
    or None for a failed cell (drawn empty, titled "failed"). Returns the
    matplotlib figure; with ``path`` it is also saved as PNG and closed.

    Example:
        >>> import numpy as np
        >>> im = np.zeros((8, 8, 3), np.uint8)
        >>> fig = comparison_grid([im], [[im, None]], ["a", "b"], ["img"])
        >>> len(fig.axes)
        3
    """
    if len(panels) != len(images):
        raise ValueError(f"{len(images)} images but {len(panels)} rows of panels")
    rows, cols = len(images), len(column_titles) + 1
    fig, axes = plt.subplots(rows, cols, figsize=(cell_inches * cols, cell_inches * rows), squeeze=False)
    for i, img in enumerate(images):
        if len(panels[i]) != cols - 1:
            raise ValueError(f"row {i} has {len(panels[i])} panels for {cols - 1} columns")
        axes[i][0].imshow(image_uint8(img))
        axes[i][0].set_title(row_titles[i] if row_titles else "image", fontsize=9)
        for j, panel in enumerate(panels[i]):
            ax = axes[i][j + 1]
            if panel is None:
                ax.set_title(f"{column_titles[j]}\n(failed)", fontsize=9)
            else:
                ax.imshow(panel)
                ax.set_title(column_titles[j], fontsize=9)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    if path is not None:
        save_figure(path, fig)
        plt.close(fig)
    return fig


__all__ = ["SIGNS", "colorize", "comparison_grid", "heatmap", "image_uint8", "overlay", "save_overlay",
           "to_hwc_image"]
