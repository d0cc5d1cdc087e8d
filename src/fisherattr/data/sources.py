"""Data sources for evaluation: every loader yields :class:`~fisherattr.data.dataset.Sample` records.

Images are resized with the rule of :mod:`fisherattr.data.images` (default
``"shorter-crop"``: shorter side to ``size``, centre crop) and the ground truth
goes through the *same* geometry (:func:`geometry`): boxes are scaled and
shifted (then clipped; empty ones dropped), masks are resized with nearest
neighbour and cropped identically.

Layouts (``--data`` specs, :func:`parse_spec`):

- ``samples``: the shipped sample photos (no annotation).
- ``synthetic[:N]``: the procedural data set with exact masks (``fisherattr.data.synthetic``), default N=32.
- ``imagenet:IMGDIR[,XMLDIR]``: ImageNet validation JPEGs plus per-image Pascal VOC
  XML (``<stem>.xml``; default: next to the images). The label is the synset
  (``wnid``) of the first object mapped through the shipped
  ``imagenet_classes.tsv``; boxes are that synset's objects. VOC corners are
  read as pixel edges: ``(xmin, ymin, xmax, ymax)`` -> box ``[xmin, xmax)``.
- ``fss:DIR``: FSS-1000, one folder per class with ``N.jpg`` + ``N.png`` (mask).
- ``folder:DIR`` or a plain ``DIR``: any images, with optional sidecars
  ``<stem>.mask.png`` (non-zero = object) and ``<stem>.boxes.json``
  (``[[x0,y0,x1,y1], ...]`` or ``{"boxes": [...], "label": 3}``, original pixels).

Example:
    >>> kind, arg, n = parse_spec("synthetic:8")
    >>> kind, n
    ('synthetic', 8)
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image

from ..errors import InputError, UsageError
from .dataset import Box, Sample
from .images import DEFAULT_SAMPLES, load_image, open_image_file

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
KINDS = ("samples", "synthetic", "imagenet", "fss", "folder")
Size = Optional[int | Tuple[int, int]]


# ------------------------------------------------------------------ geometry
def geometry(w: int, h: int, size: Size, rule: str = "shorter-crop") -> Tuple[int, int, int, int, int, int]:
    """``(new_w, new_h, left, top, out_w, out_h)`` of the resize rule for a ``w x h`` image."""
    if size is None or rule == "none":
        return w, h, 0, 0, w, h
    th, tw = (size, size) if isinstance(size, int) else size
    if rule == "plain":
        return tw, th, 0, 0, tw, th
    if rule != "shorter-crop":
        raise UsageError(f"unknown resize rule {rule!r}")
    scale = max(th / h, tw / w)
    nw, nh = max(tw, round(w * scale)), max(th, round(h * scale))
    return nw, nh, (nw - tw) // 2, (nh - th) // 2, tw, th


def map_boxes(boxes: List[Box], w: int, h: int, size: Size, rule: str = "shorter-crop") -> List[Box]:
    """Boxes in original pixels -> boxes in the loaded image (scaled, shifted, clipped, empty ones dropped)."""
    nw, nh, left, top, ow, oh = geometry(w, h, size, rule)
    sx, sy = nw / w, nh / h
    out = []
    for x0, y0, x1, y1 in boxes:
        bx0 = int(np.clip(np.floor(x0 * sx) - left, 0, ow))
        by0 = int(np.clip(np.floor(y0 * sy) - top, 0, oh))
        bx1 = int(np.clip(np.ceil(x1 * sx) - left, 0, ow))
        by1 = int(np.clip(np.ceil(y1 * sy) - top, 0, oh))
        if bx1 > bx0 and by1 > by0:
            out.append((bx0, by0, bx1, by1))
    return out


def map_mask(mask: Image.Image | np.ndarray, size: Size, rule: str = "shorter-crop") -> torch.Tensor:
    """A mask (non-zero = object) in original pixels -> ``[H,W]`` bool aligned with the loaded image."""
    im = mask if isinstance(mask, Image.Image) else Image.fromarray((np.asarray(mask) > 0).astype(np.uint8) * 255)
    # palette / 1-bit masks hold indices (object > 0); grey or colour masks hold intensities
    a = np.asarray(im) > 0 if im.mode in ("1", "P") else np.asarray(im.convert("L")) > 127
    m = Image.fromarray(a.astype(np.uint8) * 255)
    nw, nh, left, top, ow, oh = geometry(m.size[0], m.size[1], size, rule)
    m = m.resize((nw, nh), Image.NEAREST).crop((left, top, left + ow, top + oh))
    return torch.from_numpy(np.asarray(m) > 127)


def _load(path: Path, size: Size, rule: str) -> Tuple[torch.Tensor, int, int]:
    im = open_image_file(path)
    w, h = im.size
    return load_image(str(path), size=size, resize=rule), w, h


# ------------------------------------------------------------------- sources
def load_sample_photos(names: Optional[List[str]] = None, size: Size = 224, rule: str = "shorter-crop") -> List[Sample]:
    """The shipped sample photos (no ground truth)."""
    return [Sample(n, load_image(n, size=size, resize=rule)) for n in (names or DEFAULT_SAMPLES)]


def _wnid_index() -> Dict[str, int]:
    from ..models.classifier import imagenet_classes

    return {w: i for i, w in enumerate(imagenet_classes()[1])}


def read_voc(path: Path) -> Tuple[Optional[str], List[Tuple[str, Box]]]:
    """(filename, [(name, (xmin, ymin, xmax, ymax)), ...]) of a Pascal VOC XML file."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise InputError(f"{path}: not a valid VOC XML file ({e})") from None
    objs = []
    for o in root.iter("object"):
        bb = o.find("bndbox")
        if bb is None:
            continue
        box = tuple(int(round(float(bb.findtext(k, "0")))) for k in ("xmin", "ymin", "xmax", "ymax"))
        objs.append(((o.findtext("name") or "").strip(), box))
    return root.findtext("filename"), objs


def _images_in(folder: Path) -> List[Path]:
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a directory")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS
                  and not p.name.lower().endswith(".mask.png"))


def load_imagenet(img_dir: str | Path, xml_dir: Optional[str | Path] = None, size: Size = 224,
                  rule: str = "shorter-crop", limit: Optional[int] = None) -> List[Sample]:
    """ImageNet validation images with their VOC box XML (images without XML get no boxes or label)."""
    img_dir = Path(img_dir)
    xml_dir = Path(xml_dir) if xml_dir else img_dir
    index = _wnid_index()
    out = []
    for p in _images_in(img_dir)[:limit]:
        x, w, h = _load(p, size, rule)
        label, boxes = None, []
        xml = xml_dir / f"{p.stem}.xml"
        if xml.exists():
            _, objs = read_voc(xml)
            if objs:
                wnid = objs[0][0]
                label = index.get(wnid)
                boxes = map_boxes([b for n, b in objs if n == wnid], w, h, size, rule)
        out.append(Sample(p.stem, x, label=label, boxes=boxes))
    return out


def load_fss(root: str | Path, size: Size = 224, rule: str = "shorter-crop",
             limit: Optional[int] = None) -> List[Sample]:
    """FSS-1000: ``root/<class>/<N>.jpg`` with mask ``<N>.png``; names ``<class>-<N>``."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root}: not a directory")
    out: List[Sample] = []
    for cls in sorted(d for d in root.iterdir() if d.is_dir()):
        for jpg in sorted(cls.glob("*.jpg"), key=lambda q: (len(q.stem), q.stem)):
            png = jpg.with_suffix(".png")
            if not png.exists():
                continue
            if limit is not None and len(out) >= limit:
                return out
            x, _, _ = _load(jpg, size, rule)
            with Image.open(png) as m:
                mask = map_mask(m.copy(), size, rule)
            out.append(Sample(f"{cls.name}-{jpg.stem}", x, mask=mask))
    return out


def _read_boxes_json(path: Path) -> Tuple[List[Box], Optional[int]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not readable JSON ({e})") from None
    label = None
    if isinstance(data, dict):
        label = data.get("label")
        data = data.get("boxes", [])
    boxes = []
    for b in data:
        if len(b) != 4:
            raise InputError(f"{path}: each box must be [x0, y0, x1, y1], got {b}")
        boxes.append(tuple(int(round(float(v))) for v in b))
    return boxes, (int(label) if label is not None else None)


def load_folder(folder: str | Path, size: Size = 224, rule: str = "shorter-crop",
                limit: Optional[int] = None) -> List[Sample]:
    """Any folder of images, with optional ``<stem>.mask.png`` and ``<stem>.boxes.json`` sidecars."""
    folder = Path(folder)
    out = []
    for p in _images_in(folder)[:limit]:
        x, w, h = _load(p, size, rule)
        s = Sample(p.stem, x)
        mpath = folder / f"{p.stem}.mask.png"
        if mpath.exists():
            with Image.open(mpath) as m:
                if m.size != (w, h):
                    raise InputError(f"{mpath}: mask size {m.size} differs from the image's {(w, h)}")
                s.mask = map_mask(m.copy(), size, rule)
        bpath = folder / f"{p.stem}.boxes.json"
        if bpath.exists():
            boxes, s.label = _read_boxes_json(bpath)
            s.boxes = map_boxes(boxes, w, h, size, rule)
        out.append(s)
    return out


def load_synthetic(n: int = 32, size: Size = 64, seed: int = 0) -> List[Sample]:
    """The procedural data set with exact masks (needs ``fisherattr.data.synthetic``)."""
    try:
        from . import synthetic
    except ImportError as e:
        raise UsageError(f"the synthetic data set is not available here ({e})") from None
    return synthetic.load_samples(n, size=size if size is not None else 64, seed=seed, split="test")


# ---------------------------------------------------------------------- specs
def parse_spec(spec: str) -> Tuple[str, Optional[str], Optional[int]]:
    """``--data`` spec -> ``(kind, argument, count)``; a plain existing directory means ``folder``."""
    s = str(spec).strip()
    if s == "samples":
        return "samples", None, None
    if s == "synthetic" or s.startswith("synthetic:"):
        _, _, n = s.partition(":")
        if n and not n.isdigit():
            raise UsageError(f"--data synthetic:N needs an integer N, got {n!r}")
        return "synthetic", None, int(n) if n else None
    for kind in ("imagenet", "fss", "folder"):
        if s.startswith(kind + ":"):
            arg = s[len(kind) + 1:]
            if not arg:
                raise UsageError(f"--data {kind}: needs a directory")
            return kind, arg, None
    if Path(s).is_dir():
        return "folder", s, None
    raise UsageError(f"unknown --data {spec!r}; use samples, synthetic[:N], imagenet:IMGDIR[,XMLDIR], "
                     "fss:DIR, folder:DIR or an existing directory")


def load_data(spec: str, size: Size = 224, rule: str = "shorter-crop", limit: Optional[int] = None,
              seed: int = 0) -> List[Sample]:
    """Load the samples a ``--data`` spec names (at most ``limit``).

    Example:
        >>> [s.name for s in load_data("samples", size=32, limit=2)]
        ['chelsea', 'coffee']
    """
    kind, arg, n = parse_spec(spec)
    if kind == "samples":
        out = load_sample_photos(size=size, rule=rule)
    elif kind == "synthetic":
        count = n if n is not None else 32
        out = load_synthetic(min(count, limit) if limit is not None else count, size=size, seed=seed)
    elif kind == "imagenet":
        img, _, xml = arg.partition(",")
        out = load_imagenet(img, xml or None, size, rule, limit)
    elif kind == "fss":
        out = load_fss(arg, size, rule, limit)
    else:
        out = load_folder(arg, size, rule, limit)
    if not out:
        raise UsageError(f"--data {spec!r}: no images found")
    return out[:limit] if limit is not None else out


__all__ = ["IMAGE_EXTENSIONS", "KINDS", "geometry", "load_data", "load_folder", "load_fss", "load_imagenet",
           "load_sample_photos", "load_synthetic", "map_boxes", "map_mask", "parse_spec", "read_voc"]
