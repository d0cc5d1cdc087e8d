"""A procedural ground-truth world: images whose class is decided by one object with an exact mask.

Each image is a class-independent background (smooth colour noise plus
distractors: thin line segments, small elongated ellipses and small ring
outlines, in any colour) with ONE foreground object drawn on top. The class is
the pair (shape, pattern) of that object: shapes ``disc``, ``square``,
``triangle``, ``cross``, ``star``; patterns ``solid`` (one saturated colour) and
``striped`` (two saturated colours alternating, any orientation). The object's
colours, size, position and rotation are random and class-independent, so a
model can only be right by looking at the object's outline and texture. The
object is drawn last and never occluded: its mask is exactly the set of pixels
it painted (pixel-centre sampling, no anti-aliasing), and its box is the mask's
bounding box.

Everything is deterministic: image ``index`` of split ``split`` under ``seed``
uses its own ``numpy.random.Generator`` seeded from ``(seed, split, index)``, so
it is the same whatever ``n`` is, and splits never share a stream. Geometry is
defined in normalised coordinates, so the same index renders the same scene at
any size. Labels cycle (``index % classes``), so any ``n`` that is a multiple of
the class count is exactly balanced.

Example:
    >>> img, label, mask = generate(3, size=64, seed=0)
    >>> img.shape, img.dtype, mask.shape, CLASS_NAMES[label]
    ((64, 64, 3), dtype('uint8'), (64, 64), 'cross-solid')
    >>> samples = load_samples(16, size=64, seed=0, split="test")
    >>> samples[0].image.shape, samples[0].mask.dtype
    (torch.Size([1, 3, 64, 64]), torch.bool)
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import List, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import UsageError
from .dataset import Sample

SHAPES: Tuple[str, ...] = ("disc", "square", "triangle", "cross", "star")
PATTERNS: Tuple[str, ...] = ("solid", "striped")
#: All class names, in index order; a world with ``K`` classes uses the first ``K``.
ALL_CLASS_NAMES: Tuple[str, ...] = tuple(f"{s}-{p}" for p in PATTERNS for s in SHAPES[:4]) + (
    "star-solid", "star-striped")
DEFAULT_CLASSES = 8
MIN_CLASSES, MAX_CLASSES = 6, 10
#: The default world's class names (8 classes: 4 shapes x 2 patterns).
CLASS_NAMES: Tuple[str, ...] = ALL_CLASS_NAMES[:DEFAULT_CLASSES]
SPLITS = {"train": 0, "val": 1, "test": 2}
#: Mean and std used to normalise images for the shipped classifier.
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)

Size = Union[int, Tuple[int, int]]


def class_names(classes: int = DEFAULT_CLASSES) -> List[str]:
    """The names of a world with ``classes`` classes (6..10)."""
    _check_classes(classes)
    return list(ALL_CLASS_NAMES[:classes])


def default_classifier_path() -> Path:
    """Folder of the shipped classifier trained on the default world (load with ``load_classifier``)."""
    return Path(str(resources.files("fisherattr").joinpath("assets", "synthetic", "classifier")))


def robust_classifier_path() -> Path:
    """Folder of the shipped classifier trained with VP-noise augmentation (``--noise-augment 0.5
    --noise-max-t 0.6``): as accurate as the default one, and it keeps its prediction when the
    background is noised, which the noise-level explainers (FDA, DiffIB) rely on."""
    return Path(str(resources.files("fisherattr").joinpath("assets", "synthetic", "classifier_robust")))


def default_diffusion_path() -> Path:
    """Folder of the shipped diffusers VP model (``UNet2DModel`` + DDPM scheduler) of the default world."""
    return Path(str(resources.files("fisherattr").joinpath("assets", "synthetic", "diffusers_vp")))


def default_denoiser_path() -> Path:
    """Folder of the shipped noise-map denoiser trained on the default world
    (load with ``fisherattr.scores.noise_map.load_noise_map_denoiser``)."""
    return Path(str(resources.files("fisherattr").joinpath("assets", "synthetic", "denoiser")))


def _check_classes(classes: int) -> None:
    if not (isinstance(classes, (int, np.integer)) and MIN_CLASSES <= classes <= MAX_CLASSES):
        raise UsageError(f"classes must be an integer in {MIN_CLASSES}..{MAX_CLASSES}, got {classes!r}")


def _hw(size: Size) -> Tuple[int, int]:
    h, w = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if int(h) < 8 or int(w) < 8:
        raise UsageError(f"size must be at least 8 pixels, got {size!r}")
    return int(h), int(w)


def _split_code(split: str) -> int:
    if split not in SPLITS:
        raise UsageError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return SPLITS[split]


def _rng(index: int, seed: int, split: str) -> np.random.Generator:
    if index < 0 or seed < 0:
        raise UsageError(f"index and seed must be >= 0, got index={index}, seed={seed}")
    return np.random.default_rng([int(seed), _split_code(split), int(index)])


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float64)


# --------------------------------------------------------------------------- geometry
def _grid(h: int, w: int) -> Tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [0,1]: (x [H,W], y [H,W])."""
    y = (np.arange(h) + 0.5) / h
    x = (np.arange(w) + 0.5) / w
    return np.broadcast_to(x[None, :], (h, w)), np.broadcast_to(y[:, None], (h, w))


def _polygon_inside(u: np.ndarray, v: np.ndarray, verts: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test of points (u, v) against vertices [N,2]."""
    inside = np.zeros(u.shape, dtype=bool)
    n = len(verts)
    for k in range(n):
        x0, y0 = verts[k]
        x1, y1 = verts[(k + 1) % n]
        crosses = (y0 > v) != (y1 > v)
        with np.errstate(divide="ignore", invalid="ignore"):
            xint = x0 + (v - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (u < xint)
    return inside


_TRIANGLE = np.array([[np.cos(a), np.sin(a)] for a in -np.pi / 2 + 2 * np.pi * np.arange(3) / 3])
_STAR = np.array([[r * np.cos(a), r * np.sin(a)] for k in range(10)
                  for a, r in [(-np.pi / 2 + np.pi * k / 5, 1.0 if k % 2 == 0 else 0.42)]])


def shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test of a unit-radius ``shape`` at object-local coordinates (u, v)."""
    if shape == "disc":
        return u * u + v * v <= 0.85 ** 2
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.68
    if shape == "triangle":
        return _polygon_inside(u, v, _TRIANGLE)
    if shape == "cross":
        au, av = np.abs(u), np.abs(v)
        return ((au <= 0.3) & (av <= 0.95)) | ((av <= 0.3) & (au <= 0.95))
    if shape == "star":
        return _polygon_inside(u, v, _STAR)
    raise UsageError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


# --------------------------------------------------------------------------- scene parameters
@dataclass(frozen=True)
class ObjectSpec:
    """The deciding object, in normalised image coordinates."""

    shape: str
    pattern: str
    cx: float
    cy: float
    radius: float
    angle: float
    colors: Tuple[Tuple[float, float, float], Tuple[float, float, float]]
    stripe_period: float
    stripe_angle: float
    stripe_phase: float


def _object_spec(rng: np.random.Generator, label: int) -> ObjectSpec:
    shape, pattern = ALL_CLASS_NAMES[label].split("-")
    radius = rng.uniform(0.16, 0.27)
    cx, cy = rng.uniform(radius, 1 - radius, size=2)
    hue = rng.uniform()
    c1 = _hsv(hue, rng.uniform(0.75, 1.0), rng.uniform(0.8, 1.0))
    c2 = _hsv(hue + rng.uniform(0.33, 0.67), rng.uniform(0.75, 1.0), rng.uniform(0.8, 1.0))
    return ObjectSpec(shape, pattern, float(cx), float(cy), float(radius), float(rng.uniform(0, 2 * np.pi)),
                      (tuple(c1), tuple(c2)), float(radius * rng.uniform(0.45, 0.6)),
                      float(rng.uniform(0, np.pi)), float(rng.uniform()))


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Class-independent clutter: smooth low-saturation colour noise, then distractors. Float [H,W,3]."""
    x, y = _grid(h, w)
    # smooth colour field: a random 5x5 lattice of muted colours, bilinear in normalised coordinates
    k = 5
    lattice = np.stack([_hsv(rng.uniform(), rng.uniform(0.0, 0.35), rng.uniform(0.3, 0.75))
                        for _ in range(k * k)]).reshape(k, k, 3)
    gx, gy = x * (k - 1), y * (k - 1)
    i0, j0 = np.minimum(gy.astype(int), k - 2), np.minimum(gx.astype(int), k - 2)
    fy, fx = (gy - i0)[..., None], (gx - j0)[..., None]
    img = ((1 - fy) * (1 - fx) * lattice[i0, j0] + (1 - fy) * fx * lattice[i0, j0 + 1]
           + fy * (1 - fx) * lattice[i0 + 1, j0] + fy * fx * lattice[i0 + 1, j0 + 1])
    for _ in range(int(rng.integers(4, 9))):
        kind = rng.integers(3)
        color = _hsv(rng.uniform(), rng.uniform(0.2, 1.0), rng.uniform(0.3, 1.0))
        px, py = rng.uniform(0, 1, size=2)
        ang = rng.uniform(0, np.pi)
        ca, sa = np.cos(ang), np.sin(ang)
        du, dv = (x - px) * ca + (y - py) * sa, -(x - px) * sa + (y - py) * ca
        if kind == 0:  # line segment
            m = (np.abs(du) <= rng.uniform(0.08, 0.2)) & (np.abs(dv) <= rng.uniform(0.008, 0.02))
        elif kind == 1:  # small elongated ellipse (never a disc)
            a = rng.uniform(0.03, 0.07)
            m = (du / a) ** 2 + (dv / (a / rng.uniform(1.8, 3.0))) ** 2 <= 1
        else:  # small ring outline
            r = np.hypot(du, dv)
            rad = rng.uniform(0.04, 0.08)
            m = np.abs(r - rad) <= 0.012
        img[m] = color
    return img


def _render_object(spec: ObjectSpec, h: int, w: int) -> Tuple[np.ndarray, np.ndarray]:
    """(object colours float [H,W,3] (zero outside), mask bool [H,W])."""
    x, y = _grid(h, w)
    ca, sa = np.cos(spec.angle), np.sin(spec.angle)
    dx, dy = x - spec.cx, y - spec.cy
    u, v = (dx * ca + dy * sa) / spec.radius, (-dx * sa + dy * ca) / spec.radius
    mask = shape_mask(spec.shape, u, v)
    c1, c2 = np.asarray(spec.colors[0]), np.asarray(spec.colors[1])
    if spec.pattern == "striped":
        t = (dx * np.cos(spec.stripe_angle) + dy * np.sin(spec.stripe_angle)) / spec.stripe_period
        first = ((t + spec.stripe_phase) % 1.0) < 0.5
        colors = np.where(first[..., None], c1, c2)
    else:
        colors = np.broadcast_to(c1, (h, w, 3))
    return np.where(mask[..., None], colors, 0.0), mask


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


@dataclass
class Scene:
    """One image's parts: swap ``background`` between scenes and the label stays, by construction.

    Attributes:
        background: uint8 ``[H,W,3]`` clutter without the object.
        object: uint8 ``[H,W,3]`` the object's colours (black outside the mask).
        mask: bool ``[H,W]`` exact object mask.
        label: class index (decided by ``spec`` alone).
        spec: the object's parameters.
    """

    background: np.ndarray
    object: np.ndarray
    mask: np.ndarray
    label: int
    spec: ObjectSpec

    def compose(self, background: np.ndarray | None = None) -> np.ndarray:
        """The image: the object pasted over ``background`` (default: its own)."""
        bg = self.background if background is None else background
        return np.where(self.mask[..., None], self.object, bg)

    @property
    def box(self) -> Tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the mask, x1/y1 exclusive."""
        return mask_box(self.mask)


def mask_box(mask: np.ndarray) -> Tuple[int, int, int, int]:
    """Bounding box (x0, y0, x1, y1), x1/y1 exclusive, of a non-empty bool mask."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def scene(index: int, size: Size = 64, seed: int = 0, split: str = "test",
          classes: int = DEFAULT_CLASSES) -> Scene:
    """Render image ``index`` as separate parts (background, object, mask, label)."""
    _check_classes(classes)
    h, w = _hw(size)
    rng = _rng(index, seed, split)
    label = int(index % classes)
    spec = _object_spec(rng, label)
    obj, mask = _render_object(spec, h, w)
    bg = _background(rng, h, w)
    return Scene(_to_uint8(bg), _to_uint8(obj), mask, label, spec)


def generate(index: int, size: Size = 64, seed: int = 0, split: str = "test",
             classes: int = DEFAULT_CLASSES) -> Tuple[np.ndarray, int, np.ndarray]:
    """Image ``index``: (uint8 ``[H,W,3]``, label, bool mask ``[H,W]``)."""
    s = scene(index, size, seed, split, classes)
    return s.compose(), s.label, s.mask


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)


def load_samples(n: int, size: Size = 64, seed: int = 0, split: str = "test",
                 classes: int = DEFAULT_CLASSES, start: int = 0) -> List[Sample]:
    """The first ``n`` images (from ``start``) of a split as :class:`~fisherattr.data.dataset.Sample` records."""
    if n < 0:
        raise UsageError(f"n must be >= 0, got {n}")
    out = []
    for i in range(start, start + n):
        s = scene(i, size, seed, split, classes)
        out.append(Sample(name=f"synthetic-{split}-{i:06d}", image=_to_tensor(s.compose()).unsqueeze(0),
                          label=s.label, mask=torch.from_numpy(s.mask.copy()), boxes=[s.box]))
    return out


def make_batch(indices: Sequence[int], size: Size = 64, seed: int = 0, split: str = "train",
               classes: int = DEFAULT_CLASSES) -> Tuple[torch.Tensor, torch.Tensor]:
    """(images ``[N,3,H,W]`` in [0,1], labels ``[N]``) for the given indices."""
    imgs, labels = [], []
    for i in indices:
        img, label, _ = generate(int(i), size, seed, split, classes)
        imgs.append(_to_tensor(img))
        labels.append(label)
    return torch.stack(imgs), torch.tensor(labels, dtype=torch.long)


class SyntheticDataset(Dataset):
    """A torch ``Dataset`` of ``n`` generated images: ``(image [3,H,W] in [0,1], label)``.

    Images are rendered on demand (deterministic, so no caching is needed for
    correctness); set ``cache=True`` to keep them in memory after the first read.

    Example:
        >>> ds = SyntheticDataset(32, size=64, split="train")
        >>> x, y = ds[5]
        >>> x.shape, int(y)
        (torch.Size([3, 64, 64]), 5)
    """

    def __init__(self, n: int, size: Size = 64, seed: int = 0, split: str = "train",
                 classes: int = DEFAULT_CLASSES, cache: bool = False) -> None:
        _check_classes(classes)
        _split_code(split)
        self.n, self.size, self.seed, self.split, self.classes = int(n), size, int(seed), split, int(classes)
        self._cache: dict[int, Tuple[torch.Tensor, int]] | None = {} if cache else None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        if not 0 <= index < self.n:
            raise IndexError(index)
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        img, label, _ = generate(index, self.size, self.seed, self.split, self.classes)
        item = (_to_tensor(img), label)
        if self._cache is not None:
            self._cache[index] = item
        return item
