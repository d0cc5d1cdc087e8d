"""Image loading: files and the shipped sample photos, to ``[1,3,H,W]`` floats in [0,1].

Resize rule (default ``"shorter-crop"``): resize so that the shorter side equals
``size`` (bilinear, antialiased), then take the centre ``size x size`` crop; this
is the ImageNet evaluation convention. ``"plain"`` resizes straight to
``size x size`` (aspect ratio not kept); ``"none"`` keeps the image as it is.
When the resized image would be larger than both the source and four output
images (extreme aspect ratios), only the source box of the crop is resampled, to
within one 8-bit level of the same pixels, without ever holding the upscaled image
(a 1 x 20000 strip at 224 would otherwise be 224 x 4,480,000 pixels).

Files larger than :func:`pixel_limit` pixels (``max_pixels``; default from the
environment variable ``FISHERATTR_MAX_PIXELS``, else PIL's ``Image.MAX_IMAGE_PIXELS``,
about 89 Mpixel) are refused with one line before they are decoded.
"""
from __future__ import annotations

import math
import os
import re
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InputError, UsageError

RESIZE_RULES = ("shorter-crop", "plain", "none")
#: Environment variable that sets the default pixel limit of image files.
MAX_PIXELS_ENV = "FISHERATTR_MAX_PIXELS"
_PIL_DEFAULT_LIMIT = 89_478_485  # PIL's own default of Image.MAX_IMAGE_PIXELS


def pixel_limit(max_pixels: Optional[int] = None) -> int:
    """The largest image (width x height) a file may have: ``max_pixels``, else ``$FISHERATTR_MAX_PIXELS``,
    else PIL's ``Image.MAX_IMAGE_PIXELS`` (about 89 Mpixel).

    Example:
        >>> pixel_limit(1000)
        1000
    """
    if max_pixels is None:
        env = os.environ.get(MAX_PIXELS_ENV, "").strip()
        if env:
            try:
                max_pixels = int(float(env))
            except (ValueError, OverflowError):
                raise UsageError(f"{MAX_PIXELS_ENV}={env!r}: expected a number of pixels") from None
        else:
            max_pixels = int(Image.MAX_IMAGE_PIXELS or _PIL_DEFAULT_LIMIT)
    if int(max_pixels) < 1:
        raise UsageError(f"max_pixels must be >= 1, got {max_pixels}")
    return int(max_pixels)


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
    return np.asarray(to_rgb_image(im), dtype=np.uint8)


def to_rgb_image(im: Image.Image) -> Image.Image:
    """Any PIL image (grayscale, palette, RGBA, 16-bit, CMYK) -> an 8-bit ``RGB`` PIL image.

    Transparent pixels become white; 16-bit and float images are scaled to 0..255.
    """
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
    return im if im.mode == "RGB" else im.convert("RGB")


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
    left, top = (nw - tw) // 2, (nh - th) // 2
    if nw * nh <= max(w * h, 4 * tw * th):  # the resized image costs no more than the source: the reference rule
        return im.resize((nw, nh), Image.BILINEAR).crop((left, top, left + tw, top + th))
    return _resize_crop_box(im, (nw, nh), (left, top, left + tw, top + th))


def _resize_crop_box(im: Image.Image, full: Tuple[int, int], crop: Tuple[int, int, int, int]) -> Image.Image:
    """``im.resize(full).crop(crop)`` without the resized image: resample only the source box of ``crop``.

    Used when ``full`` is far larger than the source (a 1 x 20000 strip at 224 would be
    224 x 4,480,000 pixels). The source is first cut (integer box, with the filter's support
    as margin) so that the fractional box handed to PIL stays small: PIL keeps box
    coordinates in single precision. The result equals the reference to within one
    8-bit level (same filter centres and weights up to rounding).
    """
    w, h = im.size
    sx, sy = w / full[0], h / full[1]
    x0, y0, x1, y1 = crop[0] * sx, crop[1] * sy, crop[2] * sx, crop[3] * sy
    mx, my = math.ceil(max(sx, 1.0)) + 1, math.ceil(max(sy, 1.0)) + 1  # bilinear support, widened when reducing
    cx0, cy0 = max(0, math.floor(x0) - mx), max(0, math.floor(y0) - my)
    cx1, cy1 = min(w, math.ceil(x1) + mx), min(h, math.ceil(y1) + my)
    part = im.crop((cx0, cy0, cx1, cy1))
    return part.resize((crop[2] - crop[0], crop[3] - crop[1]), Image.BILINEAR,
                       box=(x0 - cx0, y0 - cy0, x1 - cx0, y1 - cy0))


def pil_to_tensor(im: Image.Image) -> torch.Tensor:
    """A PIL image (any mode) -> ``[1,3,H,W]`` float in [0,1]."""
    a = to_rgb_array(im)
    return torch.from_numpy(a.copy()).permute(2, 0, 1).float().div_(255.0).unsqueeze(0)


def _too_large(p: Path, pixels: Optional[int], limit: int) -> InputError:
    size = f"{pixels:,} pixels" if pixels else "more pixels than PIL allows"
    return InputError(f"{p}: image too large ({size}; limit {limit:,}); raise the limit with max_pixels= "
                      f"or {MAX_PIXELS_ENV} if you trust this file")


def open_image_file(path: str | os.PathLike, max_pixels: Optional[int] = None) -> Image.Image:
    """Open an image file with EXIF orientation applied; clear errors for bad files.

    Images of more than :func:`pixel_limit` pixels are refused from their header,
    before any pixel is decoded (PIL's decompression-bomb warning becomes this error).
    """
    p = Path(path)
    limit = pixel_limit(max_pixels)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, not an image")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: empty file")
    with warnings.catch_warnings():
        # our own limit decides; PIL's warning would only print a raw line
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(p)
        except Image.DecompressionBombError as e:  # beyond twice PIL's own limit
            found = re.search(r"\((\d+) pixels\)", str(e))
            raise _too_large(p, int(found.group(1)) if found else None, limit) from None
        except (UnidentifiedImageError, OSError, SyntaxError) as e:
            raise InputError(f"{p}: not a readable image ({e.__class__.__name__})") from None
        if im.size[0] * im.size[1] > limit:
            im.close()
            raise _too_large(p, im.size[0] * im.size[1], limit)
        try:
            im.load()
        except (OSError, SyntaxError, ValueError) as e:
            raise InputError(f"{p}: not a readable image ({e.__class__.__name__})") from None
    if im.size[0] == 0 or im.size[1] == 0:
        raise InputError(f"{p}: zero-size image")
    return ImageOps.exif_transpose(im)


def load_image(spec: str | os.PathLike, size: Optional[int | Tuple[int, int]] = 224,
               resize: str = "shorter-crop", max_pixels: Optional[int] = None) -> torch.Tensor:
    """Load a path or a sample photo name as a ``[1,3,H,W]`` float tensor in [0,1].

    ``max_pixels``: the largest file accepted (see :func:`pixel_limit`).

    Example:
        >>> x = load_image("chelsea")
        >>> tuple(x.shape), float(x.min()) >= 0, float(x.max()) <= 1
        ((1, 3, 224, 224), True, True)
    """
    key = str(spec)
    if Path(key).exists():
        im = open_image_file(key, max_pixels=max_pixels)
    else:  # a sample name (the optional samples import scikit-learn: only looked up when needed)
        samples = SAMPLES if key in SAMPLES else {**SAMPLES, **_optional_samples()}
        if key in samples:
            im = array_to_pil(samples[key][0]())
        elif os.sep not in key and "." not in key:
            raise InputError(f"{key!r} is neither a file nor a sample photo; samples: {', '.join(samples)}")
        else:
            im = open_image_file(key, max_pixels=max_pixels)
    return pil_to_tensor(resize_pil(to_rgb_image(im), size, resize))


def image_name(spec: str | os.PathLike) -> str:
    """A short name for outputs: the sample name or the file stem."""
    return Path(str(spec)).stem
