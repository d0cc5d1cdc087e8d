"""Readable attribution maps: normalisation, overlays with a colour bar and a score, comparison grids.

In the spirit of pytorch-grad-cam's ``show_cam_on_image`` and Captum's
``visualize_image_attr``. A map becomes colours in four documented steps
(:func:`normalise`):

1. **one value per pixel**: the channel sum of ``[C,H,W]`` (``[1,H,W]`` maps as they are);
2. **sign** (Captum's modes): ``"absolute"`` |s| (default: the methods here mix
   signed and unsigned maps), ``"positive"`` max(s, 0), ``"negative"`` max(-s, 0)
   (the size of the negative part), or ``"all"`` s itself, on a diverging colour
   map centred on zero (``bwr``: blue < 0, white = 0, red > 0);
3. **floor** (one-signed modes only): subtract the map's minimum (``"min"``, default,
   as pytorch-grad-cam's min-max scaling), a low percentile (a number, e.g. ``1.0``)
   or nothing (``None``). Maps with a positive floor (FDA's information is at least
   about 0.76 nats/pixel everywhere) otherwise colour the whole image;
4. **scale**: divide by the ``percentile``-th percentile (default 99) of what is left
   and clip to [0, 1] (``"all"``: the percentile of |s|, mapped to [-1, 1] and
   shown as [0, 1] with 0.5 = zero), so a few extreme pixels do not wash the map out.

Colours: ``jet`` for one-signed maps, ``bwr`` for ``"all"``; the colour bar of
:func:`show_attribution` is labelled in the map's own units (``vmin``/``vmax`` of
:class:`Normalised`).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import matplotlib

matplotlib.use("Agg")  # files only, never a window (set before pyplot is imported)

import numpy as np  # noqa: E402

from .io_utils import save_figure, save_png  # noqa: E402

SIGNS = ("absolute", "positive", "negative", "all")
Floor = Union[None, str, float]
#: Smallest side, in screen pixels, of a map panel drawn by :func:`show_attribution` / :func:`comparison_grid`.
MIN_PANEL_PX = 224
_DPI = 100  # io_utils.save_figure's resolution


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


@dataclass(frozen=True)
class Normalised:
    """A map ready to colour: ``values`` ``[H,W]`` in [0,1]; colour 0 shows ``vmin``, colour 1 ``vmax``.

    ``vmin``/``vmax`` are in the map's units after the sign step (``"all"``: ``vmin = -vmax``).
    """

    values: np.ndarray
    vmin: float
    vmax: float
    sign: str


def _per_pixel(attribution) -> np.ndarray:
    a = _to_numpy(attribution)
    if a.ndim == 4:
        a = a[0]
    if a.ndim == 3:
        a = a.sum(axis=0)
    if a.ndim != 2:
        raise ValueError(f"attribution must be [C,H,W], [1,C,H,W] or [H,W]; got shape {a.shape}")
    return np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)


def normalise(attribution, sign: str = "absolute", percentile: float = 99.0, floor: Floor = "min") -> Normalised:
    """Channel sum, sign, floor and robust scale of a map (see the module docstring).

    Example:
        >>> n = normalise(np.array([[0.8, 0.8], [0.8, 1.8]]))        # a floor of 0.8 and one bump
        >>> n.values.round(2).tolist(), round(n.vmin, 2)
        ([[0.0, 0.0], [0.0, 1.0]], 0.8)
    """
    if sign not in SIGNS:
        raise ValueError(f"sign must be one of {', '.join(SIGNS)}, got {sign!r}")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    if not (floor is None or floor == "min" or (isinstance(floor, (int, float)) and 0 <= floor < percentile)):
        raise ValueError(f"floor must be None, 'min' or a percentile below {percentile}, got {floor!r}")
    s = _per_pixel(attribution)
    if sign == "all":
        scale = float(np.percentile(np.abs(s), percentile)) or float(np.abs(s).max())
        if scale <= 0:
            return Normalised(np.full(s.shape, 0.5), -1.0, 1.0, sign)
        return Normalised(np.clip(s / scale, -1.0, 1.0) * 0.5 + 0.5, -scale, scale, sign)
    kept = {"absolute": np.abs(s), "positive": np.maximum(s, 0.0), "negative": np.maximum(-s, 0.0)}[sign]
    lo = 0.0 if floor is None else float(kept.min() if floor == "min" else np.percentile(kept, floor))
    hi = float(np.percentile(kept, percentile))
    if hi <= lo:
        hi = float(kept.max())
    if hi <= lo:
        return Normalised(np.zeros(s.shape), lo, lo + 1.0, sign)
    return Normalised(np.clip((kept - lo) / (hi - lo), 0.0, 1.0), lo, hi, sign)


def heatmap(attribution, sign: str = "absolute", percentile: float = 99.0, floor: Floor = "min") -> np.ndarray:
    """:func:`normalise`'s values: one value per pixel in [0,1] (``sign='all'``: 0.5 = zero attribution)."""
    return normalise(attribution, sign, percentile, floor).values


def default_cmap(sign: str) -> str:
    """``bwr`` (diverging) for ``sign='all'``, else ``jet``."""
    return "bwr" if sign == "all" else "jet"


def colorize(values: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """Values in [0,1] ``[H,W]`` -> uint8 RGB ``[H,W,3]`` with a matplotlib colormap."""
    rgba = matplotlib.colormaps[cmap](np.clip(values, 0.0, 1.0))
    return (rgba[..., :3] * 255.0 + 0.5).astype(np.uint8)


def blend(image, values: np.ndarray, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """``(1-alpha)*image + alpha*cmap(values)`` as uint8 ``[H,W,3]`` (``values``: ``[H,W]`` in [0,1])."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0,1], got {alpha}")
    img = to_hwc_image(image)
    if values.shape != img.shape[:2]:
        raise ValueError(f"attribution is {values.shape[0]}x{values.shape[1]} but the image is "
                         f"{img.shape[0]}x{img.shape[1]}")
    colour = colorize(values, cmap).astype(np.float64) / 255.0
    return (np.clip((1.0 - alpha) * img + alpha * colour, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def overlay(image, attribution, alpha: float = 0.5, cmap: Optional[str] = None, sign: str = "absolute",
            percentile: float = 99.0, floor: Floor = "min") -> np.ndarray:
    """The map's colours blended over ``image`` (uint8 ``[H,W,3]``, same height and width).

    ``cmap`` defaults to :func:`default_cmap` of ``sign``; see :func:`normalise` for the rest.
    """
    heat = normalise(attribution, sign=sign, percentile=percentile, floor=floor).values
    return blend(image, heat, alpha, cmap or default_cmap(sign))


def image_uint8(image) -> np.ndarray:
    """An image (tensor or array) as uint8 ``[H,W,3]``."""
    return (to_hwc_image(image) * 255.0 + 0.5).astype(np.uint8)


def save_overlay(path: str | os.PathLike, image, attribution, **kwargs) -> Path:
    """:func:`overlay` written to a PNG file (atomically)."""
    return save_png(path, overlay(image, attribution, **kwargs))


def _format_score(score: Any, label: str) -> str:
    if isinstance(score, str):
        return score
    return f"{label} {score:.3f}" if label else f"{score:.3f}"


def show_attribution(image, attribution, sign: str = "absolute", *, alpha: float = 0.5, cmap: Optional[str] = None,
                     percentile: float = 99.0, floor: Floor = "min", title: Optional[str] = None,
                     score: Any = None, score_label: str = "score", colorbar: bool = True, ax: Any = None,
                     path: Optional[str | os.PathLike] = None):
    """Draw a map over its image with a colour bar (in the map's units) and an optional score; return the figure.

    Like Captum's ``visualize_image_attr(..., method="blended_heat_map")`` and
    pytorch-grad-cam's ``show_cam_on_image``. Without ``ax`` a new figure is made
    whose image panel is at least 224 px; with ``path`` it is saved as PNG and closed.
    ``score``: a number (written as ``"{score_label} {score:.3f}"``) or a text, shown on the panel.

    Example:
        >>> import torch
        >>> img, attr = torch.rand(3, 64, 64), torch.randn(3, 64, 64)
        >>> fig = show_attribution(img, attr, sign="all", title="saliency", score=0.26, score_label="DifAUC")
        >>> [ax.get_title() for ax in fig.axes][:1]
        ['saliency']
    """
    import matplotlib.pyplot as plt

    norm = normalise(attribution, sign=sign, percentile=percentile, floor=floor)
    cmap = cmap or default_cmap(sign)
    panel = blend(image, norm.values, alpha, cmap)
    if ax is None:
        inches = MIN_PANEL_PX / _DPI * 1.25
        fig, ax = plt.subplots(figsize=(inches * (1.3 if colorbar else 1.0), inches * 1.12), dpi=_DPI)
    fig = ax.figure
    ax.imshow(panel, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    if score is not None and not (isinstance(score, float) and score != score):
        ax.text(0.02, 0.03, _format_score(score, score_label), transform=ax.transAxes, fontsize=8, color="white",
                va="bottom", ha="left", bbox=dict(facecolor="black", alpha=0.6, pad=2, linewidth=0))
    if colorbar:
        mappable = matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(norm.vmin, norm.vmax), cmap=cmap)
        cb = fig.colorbar(mappable, ax=ax, fraction=0.046, pad=0.02)
        ticks = [norm.vmin, 0.0, norm.vmax] if sign == "all" else [norm.vmin, norm.vmax]
        cb.set_ticks(ticks)
        cb.set_ticklabels([f"{t:.3g}" for t in ticks])
        cb.ax.tick_params(labelsize=7)
    if path is not None:
        save_figure(path, fig)
        plt.close(fig)
    return fig


def _is_rendered(panel: Any) -> bool:
    return isinstance(panel, np.ndarray) and panel.dtype == np.uint8 and panel.ndim == 3 and panel.shape[-1] == 3


def comparison_grid(images: Sequence, panels: Sequence[Sequence[Any]], column_titles: Sequence[str],
                    row_titles: Optional[Sequence[str]] = None, path: Optional[str | os.PathLike] = None,
                    cell_inches: Optional[float] = None, scores: Optional[Sequence[Sequence[Any]]] = None,
                    score_label: str = "score", **show_kwargs):
    """A figure with one row per image: the image, then one panel per column (method).

    ``panels[i][j]`` is an attribution map (drawn by :func:`show_attribution`, with a
    colour bar and ``scores[i][j]`` when given; ``show_kwargs`` such as ``sign`` and
    ``floor`` go to it), a ready uint8 ``[H,W,3]`` overlay (drawn as it is), or None
    for a failed cell (drawn empty, titled "failed"). Image panels are at least
    224 px. Returns the figure; with ``path`` it is also saved as PNG and closed.

    Example:
        >>> import numpy as np
        >>> im = np.zeros((8, 8, 3), np.uint8)
        >>> fig = comparison_grid([im], [[np.ones((8, 8)), None]], ["a", "b"], ["img"], scores=[[0.5, None]])
        >>> len(fig.axes)                                          # image, map, its colour bar, failed
        4
    """
    import matplotlib.pyplot as plt

    if len(panels) != len(images):
        raise ValueError(f"{len(images)} images but {len(panels)} rows of panels")
    rows, cols = len(images), len(column_titles) + 1
    cell = cell_inches or MIN_PANEL_PX / _DPI * 1.45
    fig, axes = plt.subplots(rows, cols, figsize=(cell * 1.25 * cols, cell * rows), squeeze=False, dpi=_DPI)
    for i, img in enumerate(images):
        if len(panels[i]) != cols - 1:
            raise ValueError(f"row {i} has {len(panels[i])} panels for {cols - 1} columns")
        axes[i][0].imshow(image_uint8(img), interpolation="nearest")
        axes[i][0].set_title(row_titles[i] if row_titles else "image", fontsize=9)
        for j, panel in enumerate(panels[i]):
            ax = axes[i][j + 1]
            score = scores[i][j] if scores is not None else None
            if panel is None:
                ax.set_title(f"{column_titles[j]}\n(failed)", fontsize=9)
            elif _is_rendered(panel):
                ax.imshow(panel, interpolation="nearest")
                ax.set_title(column_titles[j], fontsize=9)
            else:
                show_attribution(img, panel, ax=ax, title=column_titles[j], score=score, score_label=score_label,
                                 **show_kwargs)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    if path is not None:
        save_figure(path, fig)
        plt.close(fig)
    return fig


__all__ = ["MIN_PANEL_PX", "Normalised", "SIGNS", "blend", "colorize", "comparison_grid", "default_cmap", "heatmap",
           "image_uint8", "normalise", "overlay", "save_overlay", "show_attribution", "to_hwc_image"]
