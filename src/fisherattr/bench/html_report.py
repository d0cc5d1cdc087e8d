"""``report.html``: one self-contained page for an ``explain`` or an ``evaluate`` output folder.

The page (see :mod:`fisherattr.bench.html_page`) holds the ranked metrics table
(sortable; mean ± standard error, n, which way is better), a gallery (each image
with its class, and each method's overlay with a colour bar and its score; the
ground-truth outline in white when the folder has a mask), the curves and
sanity-check figures of an evaluation, and the run's settings, versions and wall
times. Everything is read back from the folder, so ``explain``, ``evaluate`` and
``fisherattr report DIR --html`` share this code; no server or network is needed
to view it (images are embedded as data URIs, CSS and JavaScript inline).

Example:
    >>> write_report("outputs")                      # doctest: +SKIP
    PosixPath('outputs/report.html')
"""
from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from ..errors import UsageError
from ..io_utils import save_png, write_text
from .html_page import Column, GalleryRow, Page, Panel, cmap_css, page

REPORT = "report.html"
MASKS = "masks"
_FIGURES = [("insertion_deletion.png", "Insertion / deletion curves"), ("pic_curves.png", "PIC curves (SIC, AIC)"),
            ("randomisation_ssim.png", "Sanity check: cascading parameter randomisation"),
            ("sensitivity_n.png", "Sensitivity-N")]


def mask_path(root: str | os.PathLike, image: str) -> Path:
    from .store import safe_name

    return Path(root) / MASKS / f"{safe_name(image)}.png"


def save_mask(root: str | os.PathLike, image: str, mask: Any) -> Optional[Path]:
    """Save a ``[H,W]`` ground-truth region (None: nothing) as ``root/masks/<image>.png`` for the gallery."""
    if mask is None:
        return None
    m = np.asarray(mask.detach().cpu() if hasattr(mask, "detach") else mask) > 0
    return save_png(mask_path(root, image), m.astype(np.uint8) * 255)


def _mean_sem(values: List[Any]) -> Dict[str, Any]:
    v = np.asarray([x for x in values if isinstance(x, (int, float)) and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"mean": None, "sem": None, "n": 0}
    return {"mean": float(v.mean()), "sem": float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else None,
            "n": int(v.size)}


def _read_rgb(path: Path) -> Optional[np.ndarray]:
    from PIL import Image

    if not path.exists():
        return None
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _outline(image: np.ndarray, mask: Optional[np.ndarray], colour=(255, 255, 255)) -> np.ndarray:
    """``image`` with the border pixels of ``mask`` (inside pixels with a 4-neighbour outside) painted."""
    if mask is None or mask.shape != image.shape[:2]:
        return image
    m = np.pad(mask, 1, mode="constant")
    inner = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    out = image.copy()
    out[mask & ~inner] = colour
    return out


def _panel(method: str, image: np.ndarray, npy: Path, mask, score: str, **viz_kw) -> Panel:
    from ..viz import blend, default_cmap, normalise

    if not npy.exists():
        return Panel(method, note="no map")
    try:
        norm = normalise(np.load(npy, allow_pickle=False), **viz_kw)
        cmap = default_cmap(norm.sign)
        ov = _outline(blend(image, norm.values, 0.5, cmap), mask)
    except ValueError as e:
        return Panel(method, note=str(e))
    return Panel(method, ov, norm.vmin, norm.vmax, cmap_css(cmap), score)


def _fmt(v: Any, label: str) -> str:
    return f"{label} {v:.3f}" if isinstance(v, (int, float)) and math.isfinite(v) else ""


def _versions(extra: Dict[str, str]) -> Dict[str, str]:
    from importlib import metadata

    out = dict(extra)
    for lib in ("torch", "numpy", "matplotlib"):
        try:
            out.setdefault(lib, metadata.version(lib))
        except metadata.PackageNotFoundError:
            pass
    out.setdefault("python", platform.python_version())
    return out


# ------------------------------------------------------------------ explain
def explain_page(root: Path, max_images: int = 12, **viz_kw) -> Page:
    """The page of an ``explain`` folder (``summary.json`` and per-image folders)."""
    s = json.loads((root / "summary.json").read_text(encoding="utf-8"))
    methods = list(s.get("methods", {}))
    images = s.get("images", {})
    keys = [("difauc", "DifAUC", True), ("insertion", "Insertion", True), ("deletion", "Deletion", False),
            ("insertion_ratio", "Ins. ratio", True), ("seconds", "s / image", False)]
    present = {k for r in images.values() for m in r.get("methods", {}).values() for k in m}
    cols = [Column(k, lab, up) for k, lab, up in keys if k in present]
    rows = {m: {c.key: _mean_sem([r["methods"][m].get(c.key) for r in images.values() if m in r.get("methods", {})])
                for c in cols} for m in methods}
    score = "difauc" if "difauc" in present else "seconds"
    gallery = []
    for name, rec in list(images.items())[:max_images]:
        img = _read_rgb(root / name / "input.png")
        if img is None or "methods" not in rec:
            continue
        t, p = rec.get("target", {}), rec.get("predicted", {})
        cap = [f"target: {t.get('name')} (p = {t.get('probability', float('nan')):.2f})"]
        if p and p.get("index") != t.get("index"):
            cap.append(f"predicted: {p.get('name')} (p = {p.get('probability', float('nan')):.2f})")
        panels = []
        for m in methods:
            r = rec["methods"].get(m)
            if r is None:
                err = next((f["error"] for f in s.get("failures", []) if f.get("image") == name
                            and f.get("method") == m), "failed")
                panels.append(Panel(m, note=err))
                continue
            secs = r.get("seconds")
            txt = " · ".join(x for x in (_fmt(r.get("difauc"), "DifAUC"), "" if secs is None else f"{secs:.2f} s") if x)
            panels.append(_panel(m, img, root / r["attribution"], None, txt, **viz_kw))
        gallery.append(GalleryRow(name, img, cap, panels))
    settings = {k: s.get(k) for k in ("model", "device", "seed", "target_rule", "metric_preset", "status",
                                      "wall_seconds")}
    settings["methods"] = s.get("methods", {})
    wall = [(m, f"{v['mean_seconds']:.2f}" if v.get("mean_seconds") is not None else "-", "-")
            for m, v in s.get("per_method", {}).items()]
    notes = [f"Showing {len(gallery)} of {len(images)} images."] if len(images) > len(gallery) else []
    if s.get("status") in ("running", "interrupted"):
        notes.insert(0, f"The run is {s['status']}: this page shows the images finished so far.")
    return Page(f"fisherattr explain: {s.get('model', '?')}", f"{len(images)} image(s), {len(methods)} method(s); "
                f"DifAUC preset {s.get('metric_preset') or 'none'}; seed {s.get('seed')}", cols, rows, score,
                gallery, [], settings, _versions({"fisherattr": s.get("fisherattr_version", "?")}), wall, notes,
                [" / ".join(str(x) for x in (f.get("image"), f.get("method"), f.get("error")) if x)
                 for f in s.get("failures", [])])


# ----------------------------------------------------------------- evaluate
def evaluate_page(root: Path, max_images: int = 12, **viz_kw) -> Page:
    """The page of an ``evaluate`` folder (``results.json``, or the records of an unfinished run)."""
    from .report import LABELS, load_results
    from .store import safe_name

    res = load_results(root)
    st = res["settings"]
    methods = list(st["methods"])
    cols = [Column(c["column"], LABELS.get(c["column"], c["column"]), c["higher_is_better"]) for c in res["columns"]]
    rows: Dict[str, Dict[str, Any]] = {}
    for m in methods:
        rows[m] = {c.key: dict(res["summary"].get(m, {}).get(c.key, {})) for c in cols}
        for c in cols:  # the table's value (e.g. AUC of the median SIC curve) is what is ranked
            if c.key in rows[m]:
                rows[m][c.key]["mean"] = rows[m][c.key].get("value")
        att = [t["attribution"] for t in res["wall_times"].get(m, {}).values() if "attribution" in t]
        rows[m]["seconds"] = _mean_sem(att)
    cols.append(Column("seconds", "s / image", False))
    keys = [c.key for c in cols]
    score = next((k for k in ("difauc", "insertion", "ehr", "seg_ratio") if k in keys), keys[0])
    label = next(c.label for c in cols if c.key == score)
    gallery = []
    for d in [d for d in res["images"] if d["kind"] == "image"][:max_images]:
        n = d["name"]
        img = _read_rgb(root / "images" / f"{safe_name(n)}.png")
        if img is None:
            continue
        mp = mask_path(root, n)
        mask = _read_rgb(mp)[..., 0] > 127 if mp.exists() else None
        cap = [f"label: {d['label']}" if d.get("label") is not None else "label: -"]
        panels = [_panel(m, img, root / "attributions" / safe_name(m) / f"{safe_name(n)}.npy", mask,
                         _fmt(res["per_image"].get(m, {}).get(n, {}).get(score), label), **viz_kw) for m in methods]
        gallery.append(GalleryRow(n, _outline(img, mask), cap, panels))
    figures = [(t, (root / "figures" / f).read_bytes()) for f, t in _FIGURES if (root / "figures" / f).exists()]
    wall = []
    for m, per in res["wall_times"].items():
        att = [t["attribution"] for t in per.values() if "attribution" in t]
        met = [sum(v for k, v in t.items() if k != "attribution") for t in per.values()]
        wall.append((m, f"{np.mean(att):.2f}" if att else "-", f"{np.mean(met):.2f}" if met else "-"))
    n_img = sum(1 for d in res["images"] if d["kind"] == "image")
    notes = []
    if res.get("partial"):
        notes.append(f"Partial: the run has not finished; {res['partial']['images']} items every method has "
                     f"finished ({res['partial']['started']} started).")
    if n_img > len(gallery):
        notes.append(f"Gallery: the first {len(gallery)} of {n_img} images.")
    settings = dict(st, created=res.get("created"), wall_seconds_this_session=res.get("wall_seconds_this_session"))
    fails = [" / ".join(str(f.get(k)) for k in ("image", "method", "metric", "error")) for f in res.get("failures", [])]
    return Page(f"fisherattr evaluate: {st.get('model')} on {st.get('data')}",
                f"{n_img} image(s), {len(methods)} method(s); preset {st.get('preset')}; target rule "
                f"{st.get('target_rule')}; seed {st.get('seed')}", cols, rows, score, gallery, figures, settings,
                _versions(res.get("versions", {})), wall, notes, fails)


def build_report(root: str | os.PathLike, max_images: int = 12, **viz_kw) -> str:
    """The HTML of the report of folder ``root`` (an ``explain`` or an ``evaluate`` output folder).

    ``viz_kw`` (``sign``, ``floor``, ``percentile``) go to :func:`fisherattr.viz.normalise`.
    """
    root = Path(root)
    if (root / "results.json").exists() or any(root.glob("records*.jsonl")):
        return page(evaluate_page(root, max_images, **viz_kw))
    if (root / "summary.json").exists():
        return page(explain_page(root, max_images, **viz_kw))
    raise UsageError(f"{root}: neither an explain folder (summary.json) nor an evaluation (results.json)")


def write_report(root: str | os.PathLike, path: Optional[str | os.PathLike] = None, max_images: int = 12,
                 **viz_kw) -> Path:
    """Write :func:`build_report` to ``path`` (default ``root/report.html``, atomically); return the path."""
    return write_text(Path(path) if path else Path(root) / REPORT, build_report(root, max_images, **viz_kw))


__all__ = ["REPORT", "build_report", "evaluate_page", "explain_page", "mask_path", "save_mask", "write_report"]
