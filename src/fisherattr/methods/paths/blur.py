"""Gaussian blur (separable torch convolution) and the Blur IG path (Xu et al. 2020)."""
from __future__ import annotations

import math
from typing import Iterator, List, Optional, Union

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ...errors import UsageError
from .core import Path, ScoreFunction, Segment, check_positive_int


def gaussian_kernel1d(sigma: float, radius: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Normalised samples of a Gaussian at ``-radius..radius`` (as scipy.ndimage builds them)."""
    x = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).to(dtype)


def delta_kernel(size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """``[size, size]`` kernel built as RISE's and ExplainAttr's ``gkern``: a centred delta through
    ``scipy.ndimage.gaussian_filter`` (mode ``'reflect'``, truncated at 4 sigma), float32.

    Example:
        >>> round(float(delta_kernel(11, 5.0).sum()), 6)
        1.0
    """
    import numpy as np
    from scipy.ndimage import gaussian_filter

    d = np.zeros((size, size))
    d[size // 2, size // 2] = 1.0
    return torch.from_numpy(gaussian_filter(d, sigma)).float()


def delta_kernel_blur(z: torch.Tensor, size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """Blur ``[B,C,H,W]`` per channel with :func:`delta_kernel`, zero padding (``conv2d(padding=size//2)``)."""
    c = z.shape[1]
    k = delta_kernel(size, sigma).to(z).expand(c, 1, size, size)
    return F.conv2d(z, k, padding=size // 2, groups=c)


def _band_matrix(k: torch.Tensor, n: int) -> torch.Tensor:
    """``[n, n]`` matrix of the zero-padded 1-D convolution with the centred kernel ``k``."""
    r = (k.numel() - 1) // 2
    i = torch.arange(n, device=k.device)
    off = i[None, :] - i[:, None]  # column - row
    inside = off.abs() <= r
    return torch.where(inside, k[(off + r).clamp(0, 2 * r)], torch.zeros((), dtype=k.dtype, device=k.device))


#: Kernels longer than this many taps are applied as a banded matrix product (same result, far faster).
MATMUL_TAPS = 9


def gaussian_blur(images: torch.Tensor, sigma: float, radius: Optional[int] = None,
                  fill: Union[float, torch.Tensor] = 0.0) -> torch.Tensor:
    """Blur ``[B,C,H,W]`` per channel with a Gaussian of std ``sigma`` pixels.

    The kernel is truncated at ``radius`` (default ``int(4*sigma + 0.5)``, as
    ``scipy.ndimage.gaussian_filter``) and normalised; outside the image the
    signal is the constant ``fill`` (a number or a ``[1,C,1,1]`` tensor), i.e.
    ``mode='constant'``. ``sigma <= 0`` returns a copy. Separable: rows then
    columns, each a 1-D convolution (``conv2d`` for short kernels, a banded
    matrix product for long ones).

    Example:
        >>> gaussian_blur(torch.rand(1, 3, 32, 32), sigma=2.0).shape
        torch.Size([1, 3, 32, 32])
    """
    if sigma <= 0:
        return images.clone()
    r = int(4.0 * sigma + 0.5) if radius is None else int(radius)
    if r <= 0:
        return images.clone()
    b, c, h, w = images.shape
    k = gaussian_kernel1d(sigma, r, device=images.device, dtype=images.dtype)
    rh, rw = min(r, h - 1), min(r, w - 1)  # taps further out never reach a pixel
    kh, kw = k[r - rh:r + rh + 1], k[r - rw:r + rw + 1]
    y = (images - fill).reshape(b * c, 1, h, w)
    if max(kh.numel(), kw.numel()) > MATMUL_TAPS:
        y = _band_matrix(kh, h) @ y @ _band_matrix(kw, w).t()
    else:
        if rw > 0:
            y = F.conv2d(y, kw.view(1, 1, 1, -1), padding=(0, rw))
        if rh > 0:
            y = F.conv2d(y, kh.view(1, 1, -1, 1), padding=(rh, 0))
    return y.view(b, c, h, w) + fill


class BlurPath(Path):
    """Blur IG's path: from ``blur(x, max_sigma)`` to ``x`` as sigma falls to 0.

    Sigmas ``s_i = max_sigma * i / steps`` (``sqrt=True``: PAIR's
    ``sqrt(i * max_sigma / steps)``, denser near the sharp image; note that it
    ends at ``sqrt(max_sigma)``, not ``max_sigma``, as in the authors' code). The path
    visits them from ``s_steps`` down to ``s_0 = 0`` (the image itself).
    As in the paper's code, each step from ``s_{i+1}`` to ``s_i`` pairs the
    gradient at the sharper point ``blur(x, s_i)`` with the displacement
    ``-(blur(x, s_i + grad_step) - blur(x, s_i)) / grad_step * (s_{i+1} - s_i)``.
    Blur is zero padded in [0,1] pixel space (``scipy`` ``mode='constant'``).
    ``steps + 1`` points are evaluated, batched over sigmas.

    Example:
        >>> path = BlurPath(max_sigma=50, steps=100)
        >>> path.sigmas()[:3]
        [50.0, 49.5, 49.0]
    """

    def __init__(self, max_sigma: float = 50.0, steps: int = 100, grad_step: float = 0.01, sqrt: bool = False) -> None:
        if not isinstance(max_sigma, (int, float)) or isinstance(max_sigma, bool) or not max_sigma > 0:
            raise UsageError(f"max_sigma must be a number > 0; got {max_sigma!r}")
        if not isinstance(grad_step, (int, float)) or isinstance(grad_step, bool) or not grad_step > 0:
            raise UsageError(f"grad_step must be a number > 0; got {grad_step!r}")
        self.max_sigma = float(max_sigma)
        self.steps = check_positive_int("steps", steps)
        self.grad_step = float(grad_step)
        self.sqrt = bool(sqrt)

    def sigmas(self) -> List[float]:
        """The sigmas in path order (from ``max_sigma`` down to 0)."""
        n = self.steps
        if self.sqrt:
            s = [math.sqrt(i * self.max_sigma / n) for i in range(n + 1)]
        else:
            s = [self.max_sigma * i / n for i in range(n + 1)]
        return s[::-1]

    def segments(self, images: torch.Tensor, score: ScoreFunction, progress: bool = False) -> Iterator[Segment]:
        sig = self.sigmas()
        per_call = max(1, score.batch_size // images.shape[0])
        prev = None  # (sigma, point, value, grad)
        bar = tqdm(total=len(sig), desc="blur path", disable=not progress, leave=False)
        for c in range(0, len(sig), per_call):
            chunk = sig[c:c + per_call]
            pts = torch.stack([images.clone() if s == 0 else gaussian_blur(images, s) for s in chunk])
            f, g = score(pts)
            bar.update(len(chunk))
            for i, s in enumerate(chunk):
                if prev is not None:
                    s_hi = prev[0]
                    tangent = (gaussian_blur(images, s + self.grad_step) - pts[i]) / self.grad_step
                    delta = -(s_hi - s) * tangent
                    yield Segment(prev[1], pts[i], prev[2], f[i], prev[3], g[i], delta, "end")
                prev = (s, pts[i], f[i], g[i])
        bar.close()
