"""Shared machinery of the information-bottleneck methods (IBA, InputIBA).

One concept each:

- :func:`get_layer` / :func:`default_layer`: the hidden layer, by dotted name.
- :class:`WelfordEstimator`: running per-feature mean / std / activity of a layer.
- :class:`BottleneckEstimate`: the saved estimate (safetensors + JSON sidecar).
- :func:`bottleneck_kl`: the closed-form KL (the "capacity") of the bottleneck
  ``z = lam*r + (1-lam)*eps``, ``eps ~ N(mean, std^2)``, against a prior.
- :class:`GaussianSmoothing`: the depthwise Gaussian filter applied to ``lam``.
- :func:`capture_features` / :func:`replace_output`: forward hooks.
- :func:`estimate_layer` and :func:`load_or_estimate`: estimation over an image
  source (a folder or the shipped sample photos with random crops/flips) and
  the on-disk cache (``$FISHERATTR_CACHE`` or ``~/.cache/fisherattr``).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UsageError

#: Below this many samples the estimate is noisy; the paper uses >= 1000 (10 000 on ImageNet).
MIN_SAMPLES = 1000
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")

# --------------------------------------------------------------------------- layers


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The sub-module of ``model`` called ``name`` (dotted, e.g. ``net._blocks.7``)."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n][:12]
        raise UsageError(f"layer {name!r} not found in the model; e.g. {', '.join(names)}") from None


def default_layer(model: nn.Module, lite_block: int = 4, stride: int = 8) -> str:
    """The documented mid-level (stride 8-16) layer for the models we know, else a generic choice.

    - EfficientNet-Lite0 (``efficientnet-lite-pytorch``): ``net._blocks.<lite_block>``.
      IBA uses block 4 (the last block of the 40-channel stage, output stride 8,
      28x28 at 224, like the IBA paper's VGG16 layer); InputIBA uses block 7
      (mid 80-channel stage, stride 16, 14x14). Measured on this model (DifAUC,
      ``inputiba`` preset, chelsea / coffee): IBA block 4 0.234 / 0.533, block 7
      0.084 / 0.452, block 10 0.119 / 0.422; InputIBA block 7 0.273 / 0.475,
      block 4 0.127 / 0.443 (docs/baselines-info.md).
    - torchvision VGG16: ``net.features.17`` (conv4_1, 28x28), the IBA paper's layer.
    - torchvision ResNet-50: ``net.layer3`` (stride 16, 14x14).
    - any other convolutional model: :func:`generic_layer` with ``stride`` (the
      last module called once whose output has that stride, capped so the map
      keeps at least 8 cells per side).
    """
    net = getattr(model, "net", model)
    prefix = "net." if net is not model else ""
    if hasattr(net, "_blocks") and len(net._blocks) > lite_block:
        return prefix + f"_blocks.{lite_block}"
    feats = getattr(net, "features", None)
    if isinstance(feats, nn.Sequential) and len(feats) > 17 and isinstance(feats[17], nn.Conv2d):
        return prefix + "features.17"
    if hasattr(net, "layer3"):
        return prefix + "layer3"
    return generic_layer(model, stride)


def generic_layer(model: nn.Module, stride: int = 8, size: Optional[Tuple[int, int]] = None) -> str:
    """The last leaf module (called exactly once) whose ``[B,C,h,w]`` output has the wanted stride.

    A probe forward pass on a zero image at the model's ``input_size`` (or ``size``,
    else 224) records every module's output shape in call order. The stride is
    lowered until the map has at least 8 cells on its shorter side (e.g. a 64-pixel
    model gets stride 8 -> 8x8). Modules called more than once (re-used
    activations) are skipped: a hook on them would act at several depths.

    Example:
        >>> from fisherattr.models.small_cnn import build_small_cnn
        >>> generic_layer(build_small_cnn(), stride=8, size=(64, 64))
        'features.23'
    """
    if size is None:
        size = tuple(getattr(model, "input_size", None) or (224, 224))  # type: ignore[assignment]
    h, w = int(size[0]), int(size[1])
    while stride > 1 and min(h, w) // stride < 8:
        stride //= 2
    want = (math.ceil(h / stride), math.ceil(w / stride))
    calls: Dict[str, int] = {}
    shapes: Dict[str, Tuple[int, ...]] = {}
    order: List[str] = []
    handles = []

    def hook(name: str) -> Callable:
        def fn(_m: nn.Module, _i: object, out: object) -> None:
            calls[name] = calls.get(name, 0) + 1
            if isinstance(out, torch.Tensor):
                shapes[name] = tuple(out.shape)
                order.append(name)
        return fn

    for name, mod in model.named_modules():
        if name and next(mod.children(), None) is None:  # leaf modules only
            handles.append(mod.register_forward_hook(hook(name)))
    try:
        p = next(model.parameters(), None)
        x = torch.zeros(1, 3, h, w, device=p.device if p is not None else "cpu")
        with torch.no_grad():
            model(x)
    finally:
        for hd in handles:
            hd.remove()
    found = [n for n in order if calls[n] == 1 and len(shapes[n]) == 4 and tuple(shapes[n][2:]) == want]
    if not found:
        raise UsageError(f"no layer with a {want[0]}x{want[1]} output (stride {stride}) found for a default "
                         "bottleneck; pass layer='<dotted module name>'")
    return found[-1]


class _StopForward(Exception):
    """Raised by a hook to end a forward pass once the layer's output is known."""


def capture_features(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Output of ``layer`` for input ``x`` (the rest of the forward pass is skipped)."""
    store: Dict[str, torch.Tensor] = {}

    def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> None:
        store["r"] = out
        raise _StopForward

    h = layer.register_forward_hook(hook)
    try:
        model(x)
    except _StopForward:
        pass
    finally:
        h.remove()
    r = store.get("r")
    if not isinstance(r, torch.Tensor) or r.dim() != 4:
        got = tuple(r.shape) if isinstance(r, torch.Tensor) else type(r).__name__
        raise UsageError(f"the bottleneck layer must output a [B,C,H,W] tensor; got {got}")
    return r


@contextlib.contextmanager
def replace_output(layer: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """While active, ``layer``'s output ``r`` is replaced by ``fn(r)``."""
    h = layer.register_forward_hook(lambda _m, _i, out: fn(out))
    try:
        yield
    finally:
        h.remove()


#: Lower bound on the estimated std (the official IBA package's ``min_std`` default).
MIN_STD = 0.01


# --------------------------------------------------------------------------- statistics


class WelfordEstimator:
    """Running per-feature mean and variance (Welford / Chan's parallel update).

    Also counts, per feature, how often the activation is non-zero (for the
    active-neuron mask).

    Example:
        >>> est = WelfordEstimator()
        >>> est.update(torch.tensor([[1.0], [3.0]])); est.update(torch.tensor([[5.0]]))
        >>> est.mean.item(), est.std.item(), est.n
        (3.0, 2.0, 3)
    """

    def __init__(self) -> None:
        self.n = 0
        self._mean: Optional[torch.Tensor] = None
        self._m2: Optional[torch.Tensor] = None
        self._active: Optional[torch.Tensor] = None

    def update(self, batch: torch.Tensor) -> None:
        """Add a batch ``[N, ...]`` of samples (float64 accumulation)."""
        b = batch.detach().to(torch.float64)
        nb = b.shape[0]
        if nb == 0:
            return
        bmean = b.mean(0)
        bm2 = ((b - bmean) ** 2).sum(0)
        active = (b != 0).sum(0).to(torch.float64)
        if self._mean is None:
            self._mean, self._m2, self._active, self.n = bmean, bm2, active, nb
            return
        if b.shape[1:] != self._mean.shape:
            raise UsageError(f"feature shape changed during estimation: {tuple(b.shape[1:])} vs "
                             f"{tuple(self._mean.shape)}")
        n = self.n + nb
        delta = bmean - self._mean
        self._mean = self._mean + delta * (nb / n)
        self._m2 = self._m2 + bm2 + delta ** 2 * (self.n * nb / n)
        self._active = self._active + active
        self.n = n

    def _need(self) -> None:
        if self._mean is None:
            raise UsageError("the estimator has seen no samples")

    @property
    def mean(self) -> torch.Tensor:
        self._need()
        return self._mean.float()

    @property
    def var(self) -> torch.Tensor:
        """Unbiased variance (divides by n-1; by 1 when n == 1)."""
        self._need()
        return (self._m2 / max(self.n - 1, 1)).float()

    @property
    def std(self) -> torch.Tensor:
        return self.var.sqrt()

    def active_fraction(self) -> torch.Tensor:
        """Per feature, the fraction of samples where it was non-zero."""
        self._need()
        return (self._active / self.n).float()

    def active_mask(self, threshold: float = 0.01) -> torch.Tensor:
        """1.0 where a feature was non-zero in more than ``threshold`` of the samples (IBA's rule)."""
        return (self.active_fraction() > threshold).float()


@dataclass
class BottleneckEstimate:
    """Per-feature statistics of one layer: what IBA needs to inject noise.

    ``mean``/``std``/``active`` have the layer's feature shape ``[C,h,w]``.
    Saved as ``<file>.safetensors`` (tensors + metadata) with a readable
    ``<file>.json`` sidecar.

    Example:
        >>> e = BottleneckEstimate(torch.zeros(2, 3, 3), torch.ones(2, 3, 3), torch.ones(2, 3, 3), 10,
        ...                        {"layer": "net.conv"})
        >>> e.feature_shape
        (2, 3, 3)
    """

    mean: torch.Tensor
    std: torch.Tensor
    active: torch.Tensor
    n: int
    meta: Dict[str, object] = field(default_factory=dict)

    @property
    def feature_shape(self) -> Tuple[int, ...]:
        return tuple(self.mean.shape)

    @classmethod
    def from_estimator(cls, est: WelfordEstimator, meta: Optional[Dict[str, object]] = None,
                       threshold: float = 0.01) -> "BottleneckEstimate":
        return cls(est.mean, est.std, est.active_mask(threshold), est.n, dict(meta or {}))

    def to(self, device: torch.device) -> "BottleneckEstimate":
        return BottleneckEstimate(self.mean.to(device), self.std.to(device), self.active.to(device), self.n,
                                  self.meta)

    def save(self, path: str | os.PathLike) -> Path:
        from safetensors.torch import save_file

        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_name(path.name + ".safetensors")
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {**self.meta, "n": self.n, "feature_shape": list(self.feature_shape)}
        tensors = {k: getattr(self, k).detach().cpu().float().contiguous() for k in ("mean", "std", "active")}
        tmp = path.with_name(path.name + ".tmp")
        save_file(tensors, str(tmp), metadata={"fisherattr": json.dumps(meta)})
        os.replace(tmp, path)
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BottleneckEstimate":
        from safetensors import safe_open

        path = Path(path)
        if not path.exists() and path.with_name(path.name + ".safetensors").exists():
            path = path.with_name(path.name + ".safetensors")
        if not path.is_file():
            raise UsageError(f"estimate file {path} does not exist")
        try:
            with safe_open(str(path), framework="pt") as f:
                tensors = {k: f.get_tensor(k) for k in ("mean", "std", "active")}
                meta = json.loads((f.metadata() or {}).get("fisherattr", "{}"))
        except UsageError:
            raise
        except Exception as e:  # noqa: BLE001 - any parse failure is a bad file
            raise UsageError(f"{path}: not a bottleneck estimate ({e.__class__.__name__}: {e})") from None
        return cls(tensors["mean"], tensors["std"], tensors["active"], int(meta.get("n", 0)), meta)


# --------------------------------------------------------------------------- the bottleneck maths


def bottleneck_kl(r: torch.Tensor, lam: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                  prior_lam: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Per-feature KL (nats) of ``Q(z|r) = N(lam*r + (1-lam)*mean, (1-lam)^2 std^2)`` to a prior.

    Without ``prior_lam`` the prior is the noise distribution ``N(mean, std^2)``
    (IBA: the standardised KL of ``N(lam*r_n, (1-lam)^2)`` to ``N(0,1)``, with
    ``r_n = (r-mean)/std``). With ``prior_lam = m*lam`` the prior is the bottleneck
    with the smaller mask ``m*lam`` (InputIBA's GAN-mask prior).
    """
    if prior_lam is None:
        mu = lam * (r - mean) / std
        var = (1 - lam) ** 2
    else:
        keep = 1 - prior_lam
        mu = (lam - prior_lam) * (r - mean) / (keep * std)
        var = ((1 - lam) / keep) ** 2
    return 0.5 * (mu ** 2 + var - 1 - torch.log(var))


def gaussian_kernel1d(sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian of size ``2*round(2*sigma)+1`` (IBA's kernel size)."""
    radius = int(round(2 * sigma))
    xs = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-xs ** 2 / (2 * sigma ** 2))
    return (k / k.sum()).float()


class GaussianSmoothing(nn.Module):
    """Depthwise 2-D Gaussian blur with reflect padding (output has the input's size).

    Example:
        >>> s = GaussianSmoothing(1.0)
        >>> s(torch.ones(1, 2, 6, 6)).allclose(torch.ones(1, 2, 6, 6))
        True
    """

    def __init__(self, sigma: float) -> None:
        super().__init__()
        if sigma <= 0:
            raise UsageError(f"sigma must be > 0, got {sigma}")
        k1 = gaussian_kernel1d(sigma)
        self.register_buffer("kernel", (k1[:, None] * k1[None, :])[None, None])
        self.pad = k1.numel() // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        h, w = x.shape[-2:]
        mode = "reflect" if min(h, w) > self.pad else "replicate"
        xp = F.pad(x, (self.pad,) * 4, mode=mode)
        return F.conv2d(xp, self.kernel.to(x).expand(c, 1, -1, -1), groups=c)


# --------------------------------------------------------------------------- image sources


def _sample_photos() -> List[torch.Tensor]:
    from ..data.images import list_samples, load_image

    return [load_image(name, size=None) for name in list_samples()]


def _folder_photos(folder: Path) -> List[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise UsageError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {folder}")
    return files


def _random_view(img: torch.Tensor, size: Tuple[int, int], rng: np.random.Generator) -> torch.Tensor:
    """A random crop (area 25-100%, aspect 3/4-4/3) with a random horizontal flip, resized to ``size``."""
    _, _, h, w = img.shape
    area = h * w * rng.uniform(0.25, 1.0)
    aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    ch = int(min(h, max(8, round(math.sqrt(area / aspect)))))
    cw = int(min(w, max(8, round(math.sqrt(area * aspect)))))
    y0 = int(rng.integers(0, h - ch + 1))
    x0 = int(rng.integers(0, w - cw + 1))
    crop = img[..., y0:y0 + ch, x0:x0 + cw]
    if rng.random() < 0.5:
        crop = crop.flip(-1)
    return F.interpolate(crop, size=size, mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)


def image_source(data: str, n: int, size: Tuple[int, int], seed: int = 0) -> Iterator[torch.Tensor]:
    """Yield ``n`` images ``[1,3,*size]`` in [0,1] from ``data`` ("samples", "synthetic" or a folder).

    A folder's files come first as centre crops (the evaluation convention);
    if more samples are asked for than there are files (always for
    "samples"), the rest are random crops/flips of the same photos.
    """
    from ..data.images import load_image

    rng = np.random.default_rng(seed)
    if data == "synthetic":  # the default world's train split (never the evaluated test split)
        from ..data.synthetic import make_batch

        for i in range(n):
            yield make_batch([i], size=tuple(size), split="train")[0]
        return
    if data == "samples":
        photos = _sample_photos()
    else:
        folder = Path(data).expanduser()
        if not folder.is_dir():
            raise UsageError(f"estimation data must be 'samples', 'synthetic' or a folder; {data!r} is none of them")
        files = _folder_photos(folder)
        for f in files[:n]:
            yield load_image(f, size=tuple(size))
        n -= min(n, len(files))
        if n == 0:
            return
        photos = [load_image(f, size=None) for f in files[:64]]
    for _ in range(n):
        yield _random_view(photos[int(rng.integers(len(photos)))], tuple(size), rng)


def estimate_layer(model: nn.Module, layer: str, data: str = "samples", samples: int = MIN_SAMPLES,
                   size: Tuple[int, int] = (224, 224), batch_size: int = 16, seed: int = 0,
                   progress: bool = True) -> BottleneckEstimate:
    """Estimate per-feature mean/std/active mask of ``layer`` over ``samples`` images of ``data``.

    Example:
        >>> est = estimate_layer(model, "net._blocks.4", "samples", 1000)   # doctest: +SKIP
        >>> est.save("lite0-blocks4.safetensors")                           # doctest: +SKIP
    """
    if samples < 2:
        raise UsageError(f"samples must be >= 2, got {samples}")
    if samples < MIN_SAMPLES:
        warnings.warn(f"estimating a bottleneck from {samples} samples (< {MIN_SAMPLES}): the statistics are "
                      "noisy", stacklevel=2)
    from ..progress import progress_bar

    module = get_layer(model, layer)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    est = WelfordEstimator()
    batch: List[torch.Tensor] = []
    was_training = model.training
    model.eval()
    bar = progress_bar(samples, f"estimating {layer}", unit="image", enabled=progress, min_interval=10)
    try:
        with torch.no_grad():
            for img in image_source(data, samples, size, seed):
                batch.append(img)
                if len(batch) == batch_size:
                    est.update(capture_features(model, module, torch.cat(batch).to(device)))
                    bar.update(len(batch))
                    batch = []
            if batch:
                est.update(capture_features(model, module, torch.cat(batch).to(device)))
                bar.update(len(batch))
    finally:
        bar.close()
        model.train(was_training)
    meta = {"model": getattr(model, "name", type(model).__name__), "layer": layer, "data": str(data),
            "size": list(size), "seed": seed, "fingerprint": model_fingerprint(model)}
    return BottleneckEstimate.from_estimator(est, meta)


# --------------------------------------------------------------------------- cache


def cache_dir() -> Path:
    """``$FISHERATTR_CACHE`` or ``~/.cache/fisherattr``."""
    root = os.environ.get("FISHERATTR_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "fisherattr"


def model_fingerprint(model: nn.Module) -> str:
    """Short SHA-1 of the model's parameters and buffers (so a cached estimate follows the weights)."""
    h = hashlib.sha1()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_")[:60] or "x"


def cache_path(model: nn.Module, layer: str, data: str, samples: int, size: Sequence[int]) -> Path:
    """Where the estimate for these settings is cached."""
    tag = "samples" if data == "samples" else "dir-" + hashlib.sha1(
        str(Path(data).expanduser().resolve()).encode()).hexdigest()[:10]
    name = "-".join([_slug(getattr(model, "name", type(model).__name__)), _slug(layer), f"{size[0]}x{size[1]}",
                     tag, str(samples), model_fingerprint(model)])
    return cache_dir() / "bottleneck" / f"{name}.safetensors"


def load_or_estimate(model: nn.Module, layer: str, size: Sequence[int], estimate: Optional[str] = None,
                     data: str = "samples", samples: int = MIN_SAMPLES, progress: bool = True,
                     batch_size: int = 16) -> BottleneckEstimate:
    """The estimate from ``estimate`` (a file) or the cache, estimating (and caching) it when missing."""
    if estimate is not None:
        est = BottleneckEstimate.load(estimate)
        if est.meta.get("layer") not in (None, layer):
            raise UsageError(f"estimate {estimate} is for layer {est.meta.get('layer')!r}, not {layer!r}")
        return est
    path = cache_path(model, layer, data, samples, size)
    if path.exists():
        return BottleneckEstimate.load(path)
    est = estimate_layer(model, layer, data, samples, (int(size[0]), int(size[1])), batch_size=batch_size,
                         progress=progress)
    try:
        est.save(path)
    except OSError as e:
        warnings.warn(f"could not cache the bottleneck estimate at {path}: {e}", stacklevel=2)
    return est
