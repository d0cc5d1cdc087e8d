"""Image loading: files and the shipped sample photos, to ``[1,3,H,W]`` floats in [0,1].

Resize rule (default ``"shorter-crop"``): resize so that the shorter side equals
``size`` (bilinear, antialiased), then take the centre ``size x size`` crop; this
is the ImageNet evaluation convention. ``"plain"`` resizes straight to
``size x size`` (aspect ratio not kept); ``"none"`` keeps the image as it is.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InputError, UsageError

RESIZE_RULES = ("shorter-crop", "plain", "none")


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data as d

        out = getattr(d, name)()
        return out[0] if isinstance(out, tuple) else out

    return load


def _grace_hopper() -> np.ndarray:
    import matplotlib.cbook as cb

    with Image.open(cb.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        return np.asarray(im.convert("RGB"))


def _sklearn(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(name)

    return load


#: Photos that ship with installed packages (name -> loader, what it shows).
SAMPLES: Dict[str, Tuple[Callable[[], np.ndarray], str]] = {
    "chelsea": (_skimage("chelsea"), "a tabby cat (scikit-image)"),
    "coffee": (_skimage("coffee"), "a cup of espresso (scikit-image)"),
    "rocket": (_skimage("rocket"), "a rocket on its launch pad (scikit-image)"),
    "astronaut": (_skimage("astronaut"), "astronaut Eileen Collins (scikit-image)"),
    "motorcycle": (_skimage("stereo_motorcycle"), "a motorcycle, left stereo view (scikit-image)"),
    "grace_hopper": (_grace_hopper, "Grace Hopper in uniform (matplotlib)"),
}


def _optional_samples() -> Dict[str, Tuple[Callable[[], np.ndarray], str]]:
    try:
        import sklearn  # noqa: F401
    except Exception:  # noqa: BLE001
        return {}
    return {"china": (_sklearn("china.jpg"), "a Chinese temple (scikit-learn)"),
            "flower": (_sklearn("flower.jpg"), "a flower (scikit-learn)")}


def list_samples() -> Dict[str, str]:
    """Names of the sample photos available on this machine, with a description."""
    return {k: v[1] for k, v in {**SAMPLES, **_optional_samples()}.items()}


#: The photos the default jobs use (class ids under EfficientNet-Lite0 are checked in tests).
DEFAULT_SAMPLES: List[str] = list(SAMPLES)


def to_rgb_array(im: Image.Image) -> np.ndarray:
    """Any PIL image (grayscale, palette, RGBA, 16-bit, CMYK) -> uint8 RGB ``[H,W,3]``."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if a.max() > 255 else 255.0
        im = Image.fromarray(np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        im = Image.fromarray(np.clip(a * (255.0 if a.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8))
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))  # transparent -> white
        im = Image.alpha_composite(bg, im)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def array_to_pil(a: np.ndarray) -> Image.Image:
    a = np.asarray(a)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = np.clip(a.astype(np.float64) * (255.0 if a.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    return Image.fromarray(a)


def resize_pil(im: Image.Image, size: Optional[int | Tuple[int, int]], rule: str = "shorter-crop") -> Image.Image:
    """Apply the resize rule of this module to a PIL image."""
    if rule not in RESIZE_RULES:
        raise UsageError(f"unknown resize rule {rule!r}; choose one of {', '.join(RESIZE_RULES)}")
    if size is None or rule == "none":
        return im
    th, tw = (size, size) if isinstance(size, int) else size
    if rule == "plain":
        return im.resize((tw, th), Image.BILINEAR, reducing_gap=None)
    w, h = im.size
    scale = max(th / h, tw / w)
    nw, nh = max(tw, round(w * scale)), max(th, round(h * scale))
    im = im.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - tw) // 2, (nh - th) // 2
    return im.crop((left, top, left + tw, top + th))


def pil_to_tensor(im: Image.Image) -> torch.Tensor:
    a = to_rgb_array(im)
    return torch.from_numpy(a.copy()).permute(2, 0, 1).float().div_(255.0).unsqueeze(0)


def open_image_file(path: str | os.PathLike) -> Image.Image:
    """Open an image file with EXIF orientation applied; clear errors for bad files."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, not an image")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: empty file")
    try:
        im = Image.open(p)
        im.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise InputError(f"{p}: not a readable image ({e.__class__.__name__})") from None
    if im.size[0] == 0 or im.size[1] == 0:
        raise InputError(f"{p}: zero-size image")
    return ImageOps.exif_transpose(im)


def load_image(spec: str | os.PathLike, size: Optional[int | Tuple[int, int]] = 224,
               resize: str = "shorter-crop") -> torch.Tensor:
    """Load a path or a sample photo name as a ``[1,3,H,W]`` float tensor in [0,1].

    Example:
        >>> x = load_image("chelsea")
        >>> tuple(x.shape), float(x.min()) >= 0, float(x.max()) <= 1
        ((1, 3, 224, 224), True, True)
    """
    samples = {**SAMPLES, **_optional_samples()}
    key = str(spec)
    if key in samples and not Path(key).exists():
        im = array_to_pil(samples[key][0]())
    else:
        if not Path(key).exists() and os.sep not in key and "." not in key:
            raise InputError(f"{key!r} is neither a file nor a sample photo; samples: {', '.join(samples)}")
        im = open_image_file(key)
    return pil_to_tensor(resize_pil(Image.fromarray(to_rgb_array(im)), size, resize))


def image_name(spec: str | os.PathLike) -> str:
    """A short name for outputs: the sample name or the file stem."""
    return Path(str(spec)).stem
