"""Analytic Gaussian score models: exact eps-MMSE denoisers, no training (METHODS.md 1.7-1.8).

- :class:`DiagonalGaussian`: ``x_0 ~ N(mean, diag(var))`` per feature; exact, accepts
  per-feature level maps; with closed forms for tests (:meth:`DiagonalGaussian.mutual_information`).
- :class:`GaussianPrior`: a stationary Gaussian image model, Fourier-diagonal per
  channel with power spectrum ``S_c(f) = A_c / (f^2 + f0^2)^(gamma_c / 2)`` (``f`` in
  cycles per pixel, so one prior serves every image size); the exact Wiener-filter
  eps-MMSE denoiser runs by FFT; one level per image. The default prior's power
  law was fitted (:func:`fit_power_law`) on scikit-image photos that are not the
  project's sample photos (``camera``, ``coins``, ``brick``, ``grass``, ``gravel``,
  ``clock``, ``immunohistochemistry``, ``retina``; grayscale ones count for every
  channel) and is stored below, so no fit runs at import.

Everything is in diffusion space ([-1, 1]) and the VP log-SNR parametrisation of
:class:`~fisherattr.scores.base.ScoreModel`:
``z = sqrt(sigmoid(lam)) x + sqrt(sigmoid(-lam)) eps``.
"""
from __future__ import annotations

import math
from typing import Dict, Iterable, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import UsageError
from .base import ScoreModel

#: The fitted default (see module docstring); refit with ``fit_power_law(default_fit_images())``.
DEFAULT_POWER_LAW: Dict[str, Sequence[float]] = {
    "amplitude": (7.4335e-4, 8.0535e-4, 7.7029e-4),
    "gamma": (2.46839, 2.40623, 2.44191),
    "mean": (0.04369, -0.06746, -0.10005),
}
DEFAULT_F0 = 1.0 / 256.0
FIT_IMAGES = ("camera", "coins", "brick", "grass", "gravel", "clock", "immunohistochemistry", "retina")


def _levels(lam: torch.Tensor, z: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    lam = torch.as_tensor(lam, dtype=z.dtype, device=z.device)
    if lam.dim() == 0:
        lam = lam.expand(z.shape[0])
    if lam.dim() == 1:
        lam = lam.view(-1, *([1] * (z.dim() - 1)))
    return torch.sqrt(torch.sigmoid(lam)), torch.sqrt(torch.sigmoid(-lam))


class DiagonalGaussian(ScoreModel):
    """Exact eps predictor for ``x_0 ~ N(mean, diag(var))`` (diffusion space).

    ``eps_hat = s (z - a m) / (a^2 v + s^2)`` with ``a^2 = sigmoid(lam)``, ``s^2 = sigmoid(-lam)``.

    Example:
        >>> g = DiagonalGaussian(mean=torch.zeros(3, 4, 4), var=torch.full((3, 4, 4), 0.25))
        >>> g.predict_eps(torch.zeros(2, 3, 4, 4), torch.zeros(2)).shape
        torch.Size([2, 3, 4, 4])
    """

    accepts_level_map = True

    def __init__(self, mean: torch.Tensor, var: torch.Tensor) -> None:
        super().__init__()
        mean, var = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(var, dtype=torch.float32)
        if (var <= 0).any():
            raise UsageError("DiagonalGaussian: var must be positive")
        mean, var = torch.broadcast_tensors(mean, var)
        self.register_buffer("mean", mean.clone())
        self.register_buffer("var", var.clone())
        if mean.dim() >= 3:
            self.channels = int(mean.shape[-3])
            self.resolution = (int(mean.shape[-2]), int(mean.shape[-1]))

    def predict_eps(self, z: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
        a, s = _levels(log_snr, z)
        m, v = self.mean.to(z.dtype), self.var.to(z.dtype)
        return s * (z - a * m) / (a * a * v + s * s)

    def mutual_information(self, log_snr: torch.Tensor) -> torch.Tensor:
        """Per-feature ``I(x_lam; x_0) = 1/2 log(1 + SNR v)`` (nats)."""
        lam = torch.as_tensor(log_snr, dtype=self.var.dtype, device=self.var.device)
        return 0.5 * torch.log1p(torch.exp(lam) * self.var)

    def mmse(self, log_snr: torch.Tensor) -> torch.Tensor:
        """Per-feature eps-MMSE ``SNR v / (1 + SNR v)``."""
        lam = torch.as_tensor(log_snr, dtype=self.var.dtype, device=self.var.device)
        sv = torch.exp(lam) * self.var
        return sv / (1 + sv)


def _radial_frequency(h: int, w: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    fy = torch.fft.fftfreq(h, dtype=torch.float64).view(-1, 1)
    fx = torch.fft.fftfreq(w, dtype=torch.float64).view(1, -1)
    return torch.sqrt(fy * fy + fx * fx).to(dtype=dtype, device=device)


class GaussianPrior(ScoreModel):
    """Stationary Gaussian image prior, diagonal in the Fourier domain, one spectrum per channel.

    The spectrum is ``S_c(f) = amplitude_c / (f^2 + f0^2)^(gamma_c/2)`` in units of
    the orthonormal 2-D DFT of diffusion-space images. The eps-MMSE denoiser is the
    Wiener filter ``eps_hat = s * IFFT[ FFT(z - a m) / (a^2 S + s^2) ]`` (exact for this prior).

    Args:
        amplitude, gamma, mean: per-channel power-law parameters and mean (diffusion space).
        f0: low-frequency cut-off (cycles/pixel): bounds the variance of the mean colour.
        spectrum: optional explicit ``[C,H,W]`` spectrum (then only that size is served).

    Example:
        >>> prior = GaussianPrior.default()
        >>> prior.predict_eps(torch.zeros(1, 3, 8, 8), torch.tensor([0.0])).shape
        torch.Size([1, 3, 8, 8])
    """

    def __init__(self, amplitude: Sequence[float] = DEFAULT_POWER_LAW["amplitude"],
                 gamma: Sequence[float] = DEFAULT_POWER_LAW["gamma"],
                 mean: Sequence[float] = DEFAULT_POWER_LAW["mean"], f0: float = DEFAULT_F0,
                 spectrum: Optional[torch.Tensor] = None) -> None:
        super().__init__()
        amp = torch.as_tensor(amplitude, dtype=torch.float64).reshape(-1)
        gam = torch.as_tensor(gamma, dtype=torch.float64).reshape(-1)
        mu = torch.as_tensor(mean, dtype=torch.float64).reshape(-1)
        if not (amp.numel() == gam.numel() == mu.numel()):
            raise UsageError("GaussianPrior: amplitude, gamma and mean need one value per channel")
        if (amp <= 0).any() or f0 <= 0:
            raise UsageError("GaussianPrior: amplitude and f0 must be positive")
        self.channels = int(amp.numel())
        self.register_buffer("amplitude", amp)
        self.register_buffer("gamma", gam)
        self.register_buffer("mean_colour", mu)
        self.f0 = float(f0)
        self._fixed = None
        if spectrum is not None:
            spectrum = torch.as_tensor(spectrum, dtype=torch.float64)
            if spectrum.dim() != 3 or spectrum.shape[0] != self.channels or (spectrum <= 0).any():
                raise UsageError("GaussianPrior: spectrum must be a positive [C,H,W] tensor")
            self._fixed = spectrum
            self.resolution = (int(spectrum.shape[1]), int(spectrum.shape[2]))
        self._cache: Dict[tuple, torch.Tensor] = {}

    @classmethod
    def default(cls) -> "GaussianPrior":
        """The training-free default prior (fitted power law, see module docstring)."""
        return cls()

    @classmethod
    def from_images(cls, images: torch.Tensor | Iterable[torch.Tensor], f0: float = DEFAULT_F0) -> "GaussianPrior":
        """Fit the per-channel power law on ``images`` (``[N,3,H,W]`` in [0,1], or a list of ``[1,3,H,W]``)."""
        fit = fit_power_law(images, f0=f0)
        return cls(fit["amplitude"], fit["gamma"], fit["mean"], f0=f0)

    def spectrum(self, h: int, w: int, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> torch.Tensor:
        """The ``[C, h, w]`` spectrum on the DFT grid of an ``h x w`` image."""
        if self._fixed is not None:
            if (h, w) != self.resolution:
                raise UsageError(f"GaussianPrior with a fixed spectrum serves {self.resolution}, got {(h, w)}")
            return self._fixed.to(dtype=dtype, device=device)
        key = (h, w, dtype, str(device))
        if key not in self._cache:
            f = _radial_frequency(h, w, torch.float64, torch.device("cpu"))
            amp = self.amplitude.cpu().view(-1, 1, 1)
            gam = self.gamma.cpu().view(-1, 1, 1)
            self._cache[key] = (amp / (f * f + self.f0 ** 2) ** (gam / 2)).to(dtype=dtype, device=device)
        return self._cache[key]

    def predict_eps(self, z: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
        lam = torch.as_tensor(log_snr, device=z.device)
        if lam.dim() > 1:
            raise UsageError("GaussianPrior takes one noise level per image; use integration='grid'")
        a, s = _levels(lam, z)
        h, w = z.shape[-2], z.shape[-1]
        # real FFT in the input's precision (float64 only if z is): the spectrum is symmetric,
        # so the half-plane of rfft2 carries everything; 3-4x faster than a float64 fft2
        dt = torch.float64 if z.dtype == torch.float64 else torch.float32
        spec = self.spectrum(h, w, dt, z.device)[..., : w // 2 + 1]
        mean = self.mean_colour.to(device=z.device, dtype=dt).view(1, -1, 1, 1)
        a, s = a.to(dt), s.to(dt)
        zf = torch.fft.rfft2(z.to(dt) - a * mean, norm="ortho")
        out = torch.fft.irfft2(zf / (a * a * spec + s * s), s=(h, w), norm="ortho") * s
        return out.to(z.dtype)

    def expected_eps_error(self, x: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
        """Exact per-feature ``E_eps[(eps_hat(a x + s eps) - eps)^2]`` (no noise draws).

        The Wiener filter ``L`` is linear, so the error is ``(I - s^2 L) eps - a s L(x - m)``:
        white noise through a stationary filter, whose variance at every pixel is the mean
        over frequencies of ``(a^2 S / (a^2 S + s^2))^2``, plus the square of the filtered
        image (the two are uncorrelated because ``eps`` has mean zero).
        """
        lam = torch.as_tensor(log_snr, device=x.device)
        if lam.dim() > 1:
            raise UsageError("GaussianPrior takes one noise level per image; use integration='grid'")
        h, w = x.shape[-2], x.shape[-1]
        dt = torch.float64 if x.dtype == torch.float64 else torch.float32
        a, s = _levels(lam, x.to(dt))
        full = self.spectrum(h, w, dt, x.device).unsqueeze(0)                  # [1,C,H,W]
        noise_part = ((a * a * full) / (a * a * full + s * s)).square().mean(dim=(-2, -1), keepdim=True)
        spec = full[..., : w // 2 + 1]
        mean = self.mean_colour.to(device=x.device, dtype=dt).view(1, -1, 1, 1)
        xf = torch.fft.rfft2(x.to(dt) - mean, norm="ortho")
        signal_part = torch.fft.irfft2(xf / (a * a * spec + s * s), s=(h, w), norm="ortho") * (a * s)
        return (noise_part + signal_part.square()).to(x.dtype)

    def pixel_variance(self, h: int, w: int) -> torch.Tensor:
        """Per-channel pixel variance of the prior at size ``h x w`` (diffusion space)."""
        return self.spectrum(h, w, torch.float64).mean(dim=(1, 2))


def default_fit_images(size: int = 256) -> torch.Tensor:
    """The photos the default prior is fitted on, ``[N,3,size,size]`` in [0,1] (grayscale replicated)."""
    import skimage.data as data
    import torch.nn.functional as F

    out = []
    for name in FIT_IMAGES:
        arr = np.asarray(getattr(data, name)(), dtype=np.float32) / 255.0
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        t = torch.from_numpy(arr[..., :3]).permute(2, 0, 1)[None]
        h, w = t.shape[-2:]
        scale = size / min(h, w)
        t = F.interpolate(t, size=(max(size, round(h * scale)), max(size, round(w * scale))), mode="bilinear",
                          antialias=True, align_corners=False)
        top, left = (t.shape[-2] - size) // 2, (t.shape[-1] - size) // 2
        out.append(t[..., top:top + size, left:left + size].clamp(0, 1))
    return torch.cat(out)


def fit_power_law(images: torch.Tensor | Iterable[torch.Tensor], f0: float = DEFAULT_F0,
                  f_range: Tuple[float, float] = (0.01, 0.45)) -> Dict[str, list]:
    """Per-channel ``amplitude``, ``gamma`` and ``mean`` of ``S(f) = A / (f^2 + f0^2)^(gamma/2)``.

    The periodogram (orthonormal DFT of each mean-subtracted diffusion-space image)
    is averaged over images and fitted in log-log by least squares on
    ``f_range`` cycles/pixel; the mean colour is the average pixel value.
    """
    imgs = list(images) if not isinstance(images, torch.Tensor) else [images]
    amps, gams, means = [], [], []
    per_channel: Dict[int, list] = {}
    mean_acc: Dict[int, list] = {}
    for batch in imgs:
        x = (2 * batch.double() - 1)
        if x.dim() == 3:
            x = x[None]
        for c in range(x.shape[1]):
            xc = x[:, c]
            mean_acc.setdefault(c, []).append(xc.mean())
            p = torch.fft.fft2(xc - xc.mean(dim=(-2, -1), keepdim=True), norm="ortho").abs() ** 2
            f = _radial_frequency(xc.shape[-2], xc.shape[-1], torch.float64, torch.device("cpu"))
            sel = (f >= f_range[0]) & (f <= f_range[1])
            per_channel.setdefault(c, []).append((f[sel].expand(p.shape[0], -1).reshape(-1),
                                                 p[:, sel].reshape(-1)))
    for c in sorted(per_channel):
        f = torch.cat([a for a, _ in per_channel[c]])
        p = torch.cat([b for _, b in per_channel[c]])
        # bin by log-frequency so every scale counts equally, then fit log S = log A - gamma/2 log(f^2+f0^2)
        edges = torch.logspace(math.log10(f_range[0]), math.log10(f_range[1]), 25, dtype=torch.float64)
        idx = torch.bucketize(f, edges).clamp(1, edges.numel() - 1)
        xs, ys = [], []
        for k in range(1, edges.numel()):
            sel = idx == k
            if sel.any():
                xs.append(torch.log(f[sel] ** 2 + f0 ** 2).mean())
                ys.append(torch.log(p[sel].mean()))
        xs_t, ys_t = torch.stack(xs), torch.stack(ys)
        design = torch.stack([torch.ones_like(xs_t), -0.5 * xs_t], 1)
        coef = torch.linalg.lstsq(design, ys_t[:, None]).solution[:, 0]
        amps.append(float(torch.exp(coef[0])))
        gams.append(float(coef[1]))
        means.append(float(torch.stack(mean_acc[c]).mean()))
    return {"amplitude": amps, "gamma": gams, "mean": means}


__all__ = ["DEFAULT_POWER_LAW", "DiagonalGaussian", "GaussianPrior", "default_fit_images", "fit_power_law"]
