"""Figures of an evaluation (matplotlib, Agg backend): curves, the sanity check, a qualitative grid.

Every function reads the plain dictionaries of ``results.json`` (so ``fisherattr
report`` can redraw them without the model) and writes one PNG atomically;
functions return the path written, or None when there is nothing to draw.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..io_utils import save_figure  # noqa: E402


#: Up to this many methods the legend sits inside each axis; beyond it one shared
#: legend goes to the right of the figure, outside the curves.
INSIDE_LEGEND_MAX = 8
_LINESTYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def method_styles(methods: List[str]) -> Dict[str, Dict[str, Any]]:
    """A distinct (colour, line style, marker) per method, stable for a given method list.

    Colours come from the 20-colour ``tab20`` map (then ``tab20b``), so up to 40 methods
    get different colours; line styles and markers also vary, so curves stay apart in
    grey-scale print.

    Example:
        >>> s = method_styles(["fda", "ig", "saliency"])
        >>> s["fda"]["color"] != s["ig"]["color"]
        True
    """
    cmaps = [matplotlib.colormaps["tab20"], matplotlib.colormaps["tab20b"]]
    out: Dict[str, Dict[str, Any]] = {}
    for i, m in enumerate(sorted(methods)):
        cmap = cmaps[(i // 20) % 2]
        # tab20 pairs a dark and a light shade: take the dark ones first, then the light
        j = i % 20
        colour = cmap((2 * j) % 20 + (1 if j >= 10 else 0))
        out[m] = dict(color=colour, linestyle=_LINESTYLES[i % len(_LINESTYLES)],
                      marker=_MARKERS[(i // len(_LINESTYLES)) % len(_MARKERS)])
    return out


def _save(fig, path: Path) -> Path:
    labelled = [ax for ax in fig.axes if ax.get_legend_handles_labels()[0]]
    if labelled:
        handles, labels = labelled[0].get_legend_handles_labels()
        if len(labels) <= INSIDE_LEGEND_MAX:
            for ax in labelled:
                ax.legend(fontsize=8)
        else:  # one legend for the whole figure, outside the axes
            fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8,
                       ncol=1 if len(labels) <= 24 else 2, frameon=False)
    save_figure(path, fig)
    plt.close(fig)
    return path


def _line(ax, x, y, style: Dict[str, Any], label: str, markers: bool = False) -> None:
    kw = dict(style)
    if markers:
        kw["markersize"] = 4
    else:
        kw.pop("marker", None)
    ax.plot(x, y, label=label, linewidth=1.3, **kw)


def insdel_curves(results: Dict[str, Any], path: Path) -> Optional[Path]:
    """Mean insertion and deletion curves per method."""
    agg = {m: a["insdel"] for m, a in results["aggregates"].items() if a.get("insdel")}
    if not agg:
        return None
    has_del = any(a.get("deletion") for a in agg.values())
    fig, axes = plt.subplots(1, 2 if has_del else 1, figsize=(10 if has_del else 5, 4), squeeze=False)
    styles = method_styles(list(agg))
    for m, a in agg.items():
        x = a["fractions"]
        if a.get("insertion") and x:
            _line(axes[0][0], x, a["insertion"], styles[m], m)
        if has_del and a.get("deletion") and x:
            _line(axes[0][1], x, a["deletion"], styles[m], m)
    preset = results["settings"].get("preset", "")
    axes[0][0].set_title(f"insertion ({preset})")
    if has_del:
        axes[0][1].set_title(f"deletion ({preset})")
    for ax in axes[0]:
        ax.set_xlabel("fraction of pixels")
        ax.set_ylabel("score")
    return _save(fig, path)


def randomisation_plot(results: Dict[str, Any], path: Path) -> Optional[Path]:
    """SSIM to the original map after each cascading randomisation step (output -> input)."""
    agg = {m: a["randomisation"] for m, a in results["aggregates"].items() if a.get("randomisation")}
    if not agg:
        return None
    fig, ax = plt.subplots(figsize=(8, 4))
    labels: List[str] = []
    styles = method_styles(list(agg))
    for m, a in agg.items():
        if a.get("ssim"):
            _line(ax, range(len(a["ssim"])), a["ssim"], styles[m], m, markers=True)
            labels = a["layers"] if len(a["layers"]) > len(labels) else labels
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
    ax.set_ylim(-0.05, 1.05)
    ax.set_ylabel("SSIM to original map")
    ax.set_title("cascading parameter randomisation (output -> input; lower is better)")
    return _save(fig, path)


def pic_plot(results: Dict[str, Any], path: Path) -> Optional[Path]:
    """Aggregated SIC (median) and AIC (mean) curves per method."""
    agg = {m: a["pic"] for m, a in results["aggregates"].items() if a.get("pic")}
    if not agg:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    styles = method_styles(list(agg))
    for m, a in agg.items():
        for ax, key in zip(axes, ("sic_curve", "aic_curve")):
            y = np.asarray([np.nan if v is None else v for v in a[key]], dtype=float)
            if np.isfinite(y).any():
                _line(ax, np.linspace(0, 1, len(y)), y, styles[m], m)
    for ax, t in zip(axes, ("SIC (median)", "AIC (mean)")):
        ax.set_title(t)
        ax.set_xlabel("normalised information")
        ax.set_ylabel("normalised performance")
    return _save(fig, path)


def sensitivity_plot(results: Dict[str, Any], path: Path) -> Optional[Path]:
    agg = {m: a["sensitivity_n"] for m, a in results["aggregates"].items() if a.get("sensitivity_n")}
    if not agg:
        return None
    fig, ax = plt.subplots(figsize=(5, 4))
    styles = method_styles(list(agg))
    for m, a in agg.items():
        _line(ax, a["ns"], [np.nan if v is None else v for v in a["correlation"]], styles[m], m, markers=True)
    ax.set_xscale("log")
    ax.set_xlabel("N (features removed)")
    ax.set_ylabel("Pearson correlation")
    ax.set_title("Sensitivity-N")
    return _save(fig, path)


def qualitative_grid(results: Dict[str, Any], root: Path, path: Path, max_rows: int = 8) -> Optional[Path]:
    """Rows = images, columns = methods: heat-map overlays from the cached attributions."""
    from .store import safe_name

    methods = results["settings"]["methods"]
    names = [d["name"] for d in results["images"] if d["kind"] == "image"][:max_rows]
    names += [d["name"] for d in results["images"] if d["kind"] == "mosaic"][:max(0, max_rows - len(names))]
    rows = []
    for n in names:
        ip = root / "images" / f"{safe_name(n)}.png"
        if not ip.exists():
            continue
        from PIL import Image

        with Image.open(ip) as im:
            img = np.asarray(im.convert("RGB"))
        panels = []
        for m in methods:
            stem = safe_name(n) if (root / "attributions" / safe_name(m) / f"{safe_name(n)}.npy").exists() \
                else f"{safe_name(n)}__cell0"
            ap = root / "attributions" / safe_name(m) / f"{stem}.npy"
            panels.append(np.load(ap, allow_pickle=False) if ap.exists() else None)
        rows.append((n, img, panels))
    if not rows:
        return None
    try:
        from .. import viz
    except ImportError:  # pragma: no cover - viz is part of the package
        viz = None
    if viz is not None and hasattr(viz, "comparison_grid"):
        from .report import LABELS

        cols = [c["column"] for c in results.get("columns", [])]
        col = next((c for c in ("difauc", "insertion", "ehr", "seg_ratio") if c in cols), None)
        scores = [[results.get("per_image", {}).get(m, {}).get(n, {}).get(col) for m in methods] for n, _, _ in rows]
        fig = viz.comparison_grid([img for _, img, _ in rows], [panels for _, _, panels in rows], methods,
                                  [n for n, _, _ in rows], scores=scores if col else None,
                                  score_label=LABELS.get(col, col or ""))
        return _save(fig, path)
    fig, axes = plt.subplots(len(rows), len(methods) + 1, figsize=(2 * (len(methods) + 1), 2 * len(rows)),
                             squeeze=False)
    for i, (n, img, panels) in enumerate(rows):
        axes[i][0].imshow(img)
        axes[i][0].set_title(n, fontsize=8)
        for j, a in enumerate(panels):
            if a is not None:
                axes[i][j + 1].imshow(np.abs(a.sum(0)), cmap="jet")
            axes[i][j + 1].set_title(methods[j], fontsize=8)
        for ax in axes[i]:
            ax.axis("off")
    return _save(fig, path)


def all_figures(results: Dict[str, Any], root: str | os.PathLike) -> List[Path]:
    """Every figure this module knows, under ``root/figures``."""
    root = Path(root)
    fig_dir = root / "figures"
    jobs = [(insdel_curves, (results, fig_dir / "insertion_deletion.png")),
            (randomisation_plot, (results, fig_dir / "randomisation_ssim.png")),
            (pic_plot, (results, fig_dir / "pic_curves.png")),
            (sensitivity_plot, (results, fig_dir / "sensitivity_n.png")),
            (qualitative_grid, (results, root, fig_dir / "qualitative_grid.png"))]
    out = []
    for fn, args in jobs:
        try:  # one bad figure must not lose the others (or the tables)
            out.append(fn(*args))
        except Exception as e:  # noqa: BLE001
            plt.close("all")
            warnings.warn(f"figure {fn.__name__} failed: {type(e).__name__}: {e}", stacklevel=2)
    return [p for p in out if p is not None]
